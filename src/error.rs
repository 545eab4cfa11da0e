//! One error type at the HTTP edge.
//!
//! Every failure leaves latchkey as either an RFC 9457 problem document or, on
//! the OAuth endpoints, an RFC 6749 §5.2 body. Both carry a stable `code` that
//! clients may switch on; the list is fixed by SPEC §5 and must not change.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::telemetry;

/// The stable error codes of SPEC §3 and §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    TokenMissing,
    TokenMalformed,
    InvalidRequest,
    TokenInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenWrongAudience,
    SessionRevoked,
    AccountDisabled,
    Forbidden,
    InsufficientScope,
    RateLimited,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    NotFound,
    Conflict,
    ValidationFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    SignupDisabled,
    WeakPassword,
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::InvalidRequest => "invalid_request",
            Self::TokenInvalid => "token_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenWrongAudience => "token_wrong_audience",
            Self::SessionRevoked => "session_revoked",
            Self::AccountDisabled => "account_disabled",
            Self::Forbidden => "forbidden",
            Self::InsufficientScope => "insufficient_scope",
            Self::RateLimited => "rate_limited",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::ValidationFailed => "validation_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::SignupDisabled => "signup_disabled",
            Self::WeakPassword => "weak_password",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::TokenMissing
            | Self::TokenMalformed
            | Self::TokenInvalid
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenWrongAudience
            | Self::SessionRevoked
            | Self::AccountDisabled
            | Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::InsufficientScope | Self::SignupDisabled => {
                StatusCode::FORBIDDEN
            }
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::InvalidRequest
            | Self::InvalidGrant
            | Self::UnauthorizedClient
            | Self::UnsupportedGrantType
            | Self::InvalidScope
            | Self::ValidationFailed
            | Self::WeakPassword => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::TokenMissing => "Authentication required",
            Self::TokenMalformed => "Malformed access token",
            Self::InvalidRequest => "Invalid request",
            Self::TokenInvalid => "Invalid access token",
            Self::TokenExpired => "Access token expired",
            Self::TokenNotYetValid => "Access token not yet valid",
            Self::TokenWrongAudience => "Access token issued for another tenant",
            Self::SessionRevoked => "Session revoked",
            Self::AccountDisabled => "Account disabled",
            Self::Forbidden => "Forbidden",
            Self::InsufficientScope => "Insufficient scope",
            Self::RateLimited => "Too many requests",
            Self::InvalidClient => "Invalid client",
            Self::InvalidGrant => "Invalid grant",
            Self::UnauthorizedClient => "Unauthorized client",
            Self::UnsupportedGrantType => "Unsupported grant type",
            Self::InvalidScope => "Invalid scope",
            Self::NotFound => "Not found",
            Self::Conflict => "Conflict",
            Self::ValidationFailed => "Validation failed",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::MethodNotAllowed => "Method not allowed",
            Self::SignupDisabled => "Sign-up disabled",
            Self::WeakPassword => "Weak password",
            Self::StoreUnavailable => "Service unavailable",
            Self::Internal => "Internal error",
        }
    }

    /// The codes that answer a bearer-token problem with `error="invalid_token"`.
    fn is_invalid_token(self) -> bool {
        matches!(
            self,
            Self::TokenMalformed
                | Self::TokenInvalid
                | Self::TokenExpired
                | Self::TokenNotYetValid
                | Self::TokenWrongAudience
                | Self::SessionRevoked
                | Self::AccountDisabled
        )
    }

    /// The RFC 6749 `error` value used when this code leaves an OAuth endpoint.
    fn oauth_error(self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::RateLimited | Self::StoreUnavailable => "temporarily_unavailable",
            Self::Internal => "server_error",
            _ => "invalid_request",
        }
    }
}

/// Which body an error is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `application/problem+json` (RFC 9457).
    Problem,
    /// RFC 6749 §5.2 JSON, for `/oauth/token`, `/oauth/revoke`, `/oauth/introspect`.
    OAuth,
    /// An HTML page, for the hosted pages of SPEC §9 (login, authorize, end_session).
    Html,
}

/// The page an error becomes on the hosted pages.
#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    detail: &'a str,
    /// The tenant's page path, for the stylesheet.
    base: Option<String>,
}

/// How the `WWW-Authenticate` header is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    None,
    /// A bearer challenge, shaped by the error code.
    Bearer,
    /// `Basic realm=...`, after a failed HTTP Basic client authentication.
    Basic,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    detail: String,
    realm: String,
    flavor: Flavor,
    challenge: Challenge,
    scope: Option<String>,
    retry_after: Option<u32>,
    allow: Option<String>,
    /// A status other than the code's own (431 for oversized headers).
    status: Option<StatusCode>,
    cause: Option<anyhow::Error>,
}

pub type AppResult<T> = Result<T, AppError>;

const DEFAULT_REALM: &str = "latchkey";

impl AppError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        let challenge = if code.is_invalid_token()
            || matches!(
                code,
                ErrorCode::TokenMissing | ErrorCode::Forbidden | ErrorCode::InsufficientScope
            ) {
            Challenge::Bearer
        } else {
            Challenge::None
        };
        Self {
            code,
            detail: detail.into(),
            realm: DEFAULT_REALM.to_owned(),
            flavor: Flavor::Problem,
            challenge,
            scope: None,
            retry_after: None,
            allow: None,
            status: None,
            cause: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// A 500 that answers an opaque body and logs the cause chain.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(ErrorCode::Internal, "An internal error occurred.");
        e.cause = Some(cause.into());
        e
    }

    /// A 503 naming the component that is unreachable.
    pub fn unavailable(component: &str, cause: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(
            ErrorCode::StoreUnavailable,
            format!("The {component} is unavailable; try again shortly."),
        );
        e.retry_after = Some(1);
        e.cause = Some(cause.into());
        e
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} was not found."))
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, detail)
    }

    /// 400 `validation_failed` naming the offending field.
    pub fn validation(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {problem}"))
    }

    pub fn forbidden(permission: &str) -> Self {
        Self::new(
            ErrorCode::Forbidden,
            format!("This call needs the permission {permission}."),
        )
    }

    /// 403 naming the OAuth scope the token lacks.
    pub fn insufficient_scope(scope: &str, detail: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::InsufficientScope, detail);
        e.scope = Some(scope.to_owned());
        e
    }

    pub fn oauth(code: ErrorCode, description: impl Into<String>) -> Self {
        Self::new(code, description).in_flavor(Flavor::OAuth)
    }

    /// A bearer-token `invalid_request` (token sent twice or outside the header).
    pub fn bearer_invalid_request(detail: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::InvalidRequest, detail);
        e.challenge = Challenge::Bearer;
        e
    }

    pub fn with_realm(mut self, realm: &str) -> Self {
        self.realm = realm.to_owned();
        self
    }

    pub fn in_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }

    /// Marks an `invalid_client` as answering an HTTP Basic attempt.
    pub fn basic_challenge(mut self) -> Self {
        self.challenge = Challenge::Basic;
        self
    }

    /// The methods a 405 names in `Allow`.
    pub fn with_allow(mut self, methods: &str) -> Self {
        self.allow = Some(methods.to_owned());
        self
    }

    /// Request headers over the limit: 431 with the `payload_too_large` code.
    pub fn headers_too_large(detail: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::PayloadTooLarge, detail);
        e.status = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        e
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    fn www_authenticate(&self) -> Option<String> {
        let realm = quote_safe(&self.realm);
        match self.challenge {
            Challenge::None => None,
            Challenge::Basic => Some(format!("Basic realm=\"{realm}\"")),
            Challenge::Bearer => Some(match self.code {
                ErrorCode::TokenMissing => format!("Bearer realm=\"{realm}\""),
                ErrorCode::InvalidRequest => {
                    format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")
                }
                ErrorCode::Forbidden => {
                    format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")
                }
                ErrorCode::InsufficientScope => format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                    quote_safe(self.scope.as_deref().unwrap_or_default())
                ),
                ErrorCode::TokenExpired => format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"The access token expired\""
                ),
                _ => format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                    quote_safe(&self.detail)
                ),
            }),
        }
    }
}

/// Removes characters that may not appear inside a quoted header parameter.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for AppError {}

/// An RFC 9457 problem document, as every non-OAuth error is answered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// Quote it when reporting a problem.
    pub request_id: String,
}

/// The RFC 6749 §5.2 error of the OAuth endpoints, with the stable `code`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthError {
    /// The RFC 6749 error (`invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
    /// `temporarily_unavailable`, `server_error`).
    pub error: String,
    pub error_description: String,
    pub code: ErrorCode,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
    }

    fn error_response(&self) -> HttpResponse {
        let ctx = telemetry::current_request();
        let status = self.status_code();
        match self.code {
            ErrorCode::Internal | ErrorCode::StoreUnavailable => {
                let cause = self
                    .cause
                    .as_ref()
                    .map(|c| format!("{c:#}"))
                    .unwrap_or_default();
                tracing::error!(
                    code = self.code.as_str(),
                    request_id = %ctx.id,
                    route = %ctx.route,
                    cause = %cause,
                    "request failed"
                );
            }
            c if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
                crate::metrics::auth_failure(status.as_u16(), c.as_str());
                tracing::info!(
                    code = c.as_str(),
                    tenant = %self.realm,
                    request_id = %ctx.id,
                    route = %ctx.route,
                    "request refused"
                );
            }
            _ => {}
        }

        let mut builder = HttpResponse::build(status);
        if let Some(www) = self.www_authenticate()
            && let Ok(value) = HeaderValue::from_str(&www)
        {
            builder.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let Some(allow) = &self.allow {
            builder.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(seconds) = self.retry_after {
            builder.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        match self.flavor {
            Flavor::OAuth => builder.json(OAuthError {
                error: self.code.oauth_error().to_owned(),
                error_description: self.detail.clone(),
                code: self.code,
            }),
            Flavor::Html => {
                use askama::Template;
                let detail = match self.code {
                    ErrorCode::Internal => "Something went wrong on our side. Try again later.",
                    ErrorCode::StoreUnavailable => {
                        "The service is unavailable for a moment. Try again shortly."
                    }
                    _ => self.detail.as_str(),
                };
                let page = ErrorPage {
                    title: self.code.title(),
                    detail,
                    base: (self.realm != DEFAULT_REALM).then(|| format!("/tenants/{}", self.realm)),
                };
                builder
                    .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
                    .insert_header((header::CONTENT_SECURITY_POLICY, crate::telemetry::PAGE_CSP))
                    .body(page.render().unwrap_or_default())
            }
            Flavor::Problem => {
                let body = Problem {
                    kind: format!("https://latchkey.dev/problems/{}", self.code.as_str()),
                    title: self.code.title().to_owned(),
                    status: status.as_u16(),
                    detail: self.detail.clone(),
                    code: self.code,
                    request_id: ctx.id,
                };
                let json = serde_json::to_vec(&body).unwrap_or_default();
                builder
                    .insert_header((header::CONTENT_TYPE, "application/problem+json"))
                    .body(json)
            }
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NotFound(what) => AppError::not_found(what),
            StoreError::Conflict(what) => AppError::conflict(what),
            StoreError::InvalidCursor => {
                AppError::validation("cursor", "is not a next_cursor this list answered")
            }
            StoreError::Unavailable(component, cause) => AppError::unavailable(component, cause),
            StoreError::Other(cause) => AppError::internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AppError, ErrorCode};

    #[test]
    fn expired_token_challenge_has_the_fixed_description() {
        let e = AppError::new(ErrorCode::TokenExpired, "whatever").with_realm("acme");
        assert_eq!(
            e.www_authenticate().as_deref(),
            Some(
                "Bearer realm=\"acme\", error=\"invalid_token\", error_description=\"The access token expired\""
            )
        );
    }

    #[test]
    fn missing_token_challenge_has_no_error_attribute() {
        let e = AppError::new(ErrorCode::TokenMissing, "x").with_realm("acme");
        assert_eq!(
            e.www_authenticate().as_deref(),
            Some("Bearer realm=\"acme\"")
        );
    }

    #[test]
    fn challenge_parameters_cannot_be_broken_by_quotes() {
        let e = AppError::new(ErrorCode::TokenInvalid, "bad \"kid\"\n").with_realm("a\"b");
        let www = e.www_authenticate().unwrap_or_default();
        assert_eq!(
            www,
            "Bearer realm=\"ab\", error=\"invalid_token\", error_description=\"bad kid\""
        );
    }
}
