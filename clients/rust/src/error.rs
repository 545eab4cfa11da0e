//! Why a request was refused, with latchkey's stable `code` (SPEC §5), and
//! the problem+json answer a protected API gives for it (RFC 9457, RFC 6750 §3).

use serde::Serialize;

/// Why a bearer token was not accepted, or a request not allowed.
///
/// Each variant is one row of latchkey's 401/403 table; [`AuthError::code`]
/// gives its stable `code`, [`AuthError::status`] the HTTP status and
/// [`AuthError::www_authenticate`] the RFC 6750 §3 challenge an API answers
/// with. The `String`s are human-readable details, never token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header (401 `token_missing`, RFC 6750 §3.1: no
    /// error attribute).
    #[error("An access token is required")]
    TokenMissing,
    /// A scheme other than Bearer, or an empty or malformed token (401
    /// `token_malformed`).
    #[error("{0}")]
    TokenMalformed(String),
    /// Two `Authorization` headers, or a token in the query string (400
    /// `invalid_request`, RFC 6750 §2; the extractors do not read request
    /// bodies, so a token in a form body is not seen).
    #[error("{0}")]
    InvalidRequest(String),
    /// Bad signature, unknown `kid`, wrong `alg`, not an access token (401
    /// `token_invalid`).
    #[error("{0}")]
    TokenInvalid(String),
    /// `exp` is past, beyond the leeway (401 `token_expired`).
    #[error("The access token expired")]
    TokenExpired,
    /// `nbf` is ahead, beyond the leeway (401 `token_not_yet_valid`).
    #[error("The access token is not yet valid")]
    TokenNotYetValid,
    /// Issued by another tenant, or for another audience (401
    /// `token_wrong_audience`). A token naming another issuer is refused
    /// so without a signature check (the verifier holds only its own
    /// tenant's keys), where latchkey itself answers `token_invalid` to a
    /// forgery of that kind.
    #[error("{0}")]
    TokenWrongAudience(String),
    /// The token or its session was revoked: a logout, a password change, an
    /// admin revoke (401 `session_revoked`; revocation-aware mode only).
    /// Introspection answers only `active: false`, so a disabled user or a
    /// suspended tenant is refused with this code too.
    #[error("The session of this token has ended")]
    SessionRevoked,
    /// The user is disabled or the tenant suspended (401 `account_disabled`;
    /// read from latchkey's answers, never produced by the verifier).
    #[error("The account or tenant is disabled")]
    AccountDisabled,
    /// Authenticated, but the role or permission is missing (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// The token lacks the OAuth scope named (403 `insufficient_scope`).
    #[error("The access token lacks the scope {0}")]
    InsufficientScope(String),
    /// latchkey could not be asked (introspection or `/authz/check`
    /// unreachable, 429 or 5xx): 503 `store_unavailable` with
    /// `Retry-After`, fail closed. (A JWKS that cannot be refreshed keeps
    /// the keys held.)
    #[error("latchkey cannot be asked right now: {0}")]
    Unavailable(String),
    /// The application is misconfigured (a permission check without a
    /// client, a client latchkey refuses): 500 `internal`. The cause is
    /// logged, never answered.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// latchkey's stable `code` for this refusal (SPEC §5).
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::TokenMissing => "token_missing",
            AuthError::TokenMalformed(_) => "token_malformed",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::TokenInvalid(_) => "token_invalid",
            AuthError::TokenExpired => "token_expired",
            AuthError::TokenNotYetValid => "token_not_yet_valid",
            AuthError::TokenWrongAudience(_) => "token_wrong_audience",
            AuthError::SessionRevoked => "session_revoked",
            AuthError::AccountDisabled => "account_disabled",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::Unavailable(_) => "store_unavailable",
            AuthError::Internal(_) => "internal",
        }
    }

    /// The HTTP status an API answers with: 400, 401, 403 or 503.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::InvalidRequest(_) => 400,
            AuthError::Forbidden(_) | AuthError::InsufficientScope(_) => 403,
            AuthError::Unavailable(_) => 503,
            AuthError::Internal(_) => 500,
            _ => 401,
        }
    }

    /// A short title for the problem document.
    pub fn title(&self) -> &'static str {
        match self {
            AuthError::TokenMissing => "Authentication required",
            AuthError::TokenMalformed(_) => "Malformed access token",
            AuthError::InvalidRequest(_) => "Invalid request",
            AuthError::TokenInvalid(_) => "Invalid access token",
            AuthError::TokenExpired => "Access token expired",
            AuthError::TokenNotYetValid => "Access token not yet valid",
            AuthError::TokenWrongAudience(_) => "Access token issued for another tenant",
            AuthError::SessionRevoked => "Session revoked",
            AuthError::AccountDisabled => "Account disabled",
            AuthError::Forbidden(_) => "Forbidden",
            AuthError::InsufficientScope(_) => "Insufficient scope",
            AuthError::Unavailable(_) => "Service unavailable",
            AuthError::Internal(_) => "Internal error",
        }
    }

    /// The `WWW-Authenticate` challenge of SPEC §5 for `realm` (RFC 6750
    /// §3), or `None` where none is sent (500, 503).
    pub fn www_authenticate(&self, realm: &str) -> Option<String> {
        let realm = quote_safe(realm);
        Some(match self {
            AuthError::TokenMissing => format!("Bearer realm=\"{realm}\""),
            AuthError::InvalidRequest(_) => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")
            }
            AuthError::Forbidden(_) => {
                format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")
            }
            AuthError::InsufficientScope(scope) => format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{}\"",
                quote_safe(scope)
            ),
            AuthError::TokenExpired => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"The access token expired\""
            ),
            AuthError::Unavailable(_) | AuthError::Internal(_) => return None,
            other => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                quote_safe(&other.detail())
            ),
        })
    }

    /// The human-readable detail, as latchkey words it.
    pub fn detail(&self) -> String {
        match self {
            // The cause stays in the logs of the application.
            AuthError::Unavailable(_) => {
                "The service is unavailable for a moment. Try again shortly.".to_owned()
            }
            AuthError::Internal(_) => {
                "Something went wrong on our side. Try again later.".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The RFC 9457 problem document an API answers with, in latchkey's shape:
    /// `{"type","title","status","detail","code","request_id"}`.
    pub fn problem(&self, request_id: &str) -> Problem {
        Problem {
            kind: format!("https://latchkey.dev/problems/{}", self.code()),
            title: self.title().to_owned(),
            status: self.status(),
            detail: self.detail(),
            code: self.code().to_owned(),
            request_id: request_id.to_owned(),
        }
    }

    /// Everything a framework needs to answer this refusal: status, headers
    /// and a serialized problem document quoting `request_id`.
    pub fn to_response_parts(&self, realm: &str, request_id: &str) -> ResponseParts {
        let body = serde_json::to_vec(&self.problem(request_id)).unwrap_or_default();
        ResponseParts {
            status: self.status(),
            www_authenticate: self.www_authenticate(realm),
            retry_after: matches!(self, AuthError::Unavailable(_)).then_some(1),
            body,
        }
    }
}

/// An RFC 9457 problem document, as latchkey and the extractors answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for a person.
    pub detail: String,
    /// latchkey's stable code (SPEC §5).
    pub code: String,
    /// Quote it when reporting a problem.
    pub request_id: String,
}

/// A refusal as HTTP: what the framework glue turns into a response.
#[derive(Debug, Clone)]
pub struct ResponseParts {
    /// 400, 401, 403 or 503.
    pub status: u16,
    /// The `WWW-Authenticate` value, when one is sent.
    pub www_authenticate: Option<String>,
    /// `Retry-After` in seconds (503 only), as latchkey answers.
    pub retry_after: Option<u32>,
    /// The `application/problem+json` body.
    pub body: Vec<u8>,
}

/// Removes characters that may not appear inside a quoted header parameter.
fn quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
        .collect()
}

/// A failure while setting a [`crate::Verifier`] up: discovery or the first
/// JWKS could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer is not a usable URL.
    #[error("the issuer {0:?} is not an http(s) URL")]
    Issuer(String),
    /// latchkey could not be reached or answered an error.
    #[error("{what}: {cause}")]
    Http {
        /// The document being read.
        what: &'static str,
        /// Why it failed.
        cause: String,
    },
    /// The discovery document names another issuer (OpenID Connect
    /// Discovery §4.3).
    #[error("discovery names the issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The issuer the verifier was built for.
        expected: String,
        /// The issuer discovery names.
        found: String,
    },
}
