//! The RFC 6749 token endpoint, RFC 7009 revocation and RFC 7662
//! introspection. Every error here is an RFC 6749 §5.2 body with `code`.

use crate::api::responses::{
    OAuthBadRequest, OAuthInvalidClient, OAuthNotFound, OAuthPayloadTooLarge, OAuthUnavailable,
    OAuthUnsupportedMediaType,
};
use crate::service::introspection::{self, Introspection};
use crate::service::oauth::TokenResponse;
use actix_web::post;
use std::collections::HashMap;
use utoipa_actix_web::service_config::ServiceConfig;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::extract::{app_state, load_tenant, origin, realm};
use super::read_form_body;
use crate::config::Secret;
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::service::oauth::{self as grants, ClientAuthMethod, ClientCredentials, TokenRequest};
use crate::service::revocation;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(token);
    cfg.service(revoke);
    cfg.service(introspect);
}

/// The token endpoint's form (RFC 6749 §4.3, §4.4, §6). Client credentials
/// go in HTTP Basic (`client_secret_basic`) or here (`client_secret_post`);
/// public clients send `client_id` alone.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenForm {
    /// `authorization_code`, `password`, `refresh_token` or `client_credentials`.
    grant_type: String,
    /// Grant `authorization_code`: the code the redirect carried.
    #[schema(format = Password)]
    code: Option<String>,
    /// Grant `authorization_code`: the same `redirect_uri` as the authorization request.
    redirect_uri: Option<String>,
    /// Grant `authorization_code`: the PKCE verifier (RFC 7636 §4.5).
    #[schema(format = Password)]
    code_verifier: Option<String>,
    client_id: Option<String>,
    #[schema(format = Password)]
    client_secret: Option<String>,
    /// The e-mail (grant `password`).
    username: Option<String>,
    #[schema(format = Password)]
    password: Option<String>,
    /// Grant `refresh_token`.
    #[schema(format = Password)]
    refresh_token: Option<String>,
    /// Space-separated; `openid profile email offline_access` for users.
    scope: Option<String>,
}

/// RFC 7009 request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct RevokeForm {
    /// A refresh token (its family and session end) or an access token.
    #[schema(format = Password)]
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    #[schema(format = Password)]
    client_secret: Option<String>,
}

/// RFC 7662 request (confidential clients).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IntrospectForm {
    #[schema(format = Password)]
    token: String,
    token_type_hint: Option<String>,
    client_id: Option<String>,
    #[schema(format = Password)]
    client_secret: Option<String>,
}

fn invalid_request(detail: &str) -> AppError {
    AppError::oauth(ErrorCode::InvalidRequest, detail)
}

/// The form parameters the OAuth endpoints read.
const KNOWN_PARAMETERS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "username",
    "password",
    "refresh_token",
    "scope",
    "token",
    "token_type_hint",
    "code",
    "redirect_uri",
    "code_verifier",
];

/// Reads a form-encoded body (at most `LATCHKEY_MAX_BODY_BYTES`); a parameter
/// given twice is refused (RFC 6749 §3.2).
async fn read_form(req: &HttpRequest, payload: web::Payload) -> AppResult<HashMap<String, String>> {
    let body = read_form_body(req, payload)
        .await
        .map_err(|e| e.in_flavor(Flavor::OAuth))?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| invalid_request("The body is not valid form encoding"))?;
    let mut form = HashMap::new();
    for (k, v) in pairs {
        // RFC 6749 §3.1: unrecognised parameters are ignored; ours may appear once.
        if !KNOWN_PARAMETERS.contains(&k.as_str()) {
            continue;
        }
        if form.insert(k.clone(), v).is_some() {
            return Err(invalid_request(&format!("The parameter {k} is repeated")));
        }
    }
    Ok(form)
}

/// Client credentials from HTTP Basic or the body (never both).
fn client_credentials(
    req: &HttpRequest,
    form: &mut HashMap<String, String>,
) -> AppResult<ClientCredentials> {
    let body_id = form.remove("client_id");
    let body_secret = form.remove("client_secret").map(Secret::new);
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        let method = if body_secret.is_some() {
            ClientAuthMethod::Post
        } else {
            ClientAuthMethod::None
        };
        return Ok(ClientCredentials {
            client_id: body_id,
            secret: body_secret,
            method,
        });
    };
    let bad_basic = || {
        AppError::oauth(
            ErrorCode::InvalidClient,
            "The Basic credentials are malformed.",
        )
        .with_realm(&realm(req))
        .basic_challenge()
    };
    let value = value.to_str().map_err(|_| bad_basic())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad_basic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad_basic());
    }
    if body_secret.is_some() {
        return Err(invalid_request(
            "Use one client authentication method, not several.",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad_basic)?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad_basic)?;
    // RFC 6749 §2.3.1: both parts are form-encoded.
    let decode = |s: &str| -> Option<String> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|mut v| v.pop())
            .map(|(_, v)| v)
    };
    let id = decode(id).ok_or_else(bad_basic)?;
    let secret = decode(secret).ok_or_else(bad_basic)?;
    if body_id.as_ref().is_some_and(|b| b != &id) {
        return Err(invalid_request(
            "client_id differs from the Basic credentials.",
        ));
    }
    Ok(ClientCredentials {
        client_id: Some(id),
        secret: Some(Secret::new(secret)),
        method: ClientAuthMethod::Basic,
    })
}

fn no_store(mut res: HttpResponse) -> HttpResponse {
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    res.headers_mut()
        .insert(header::PRAGMA, header::HeaderValue::from_static("no-cache"));
    res
}

/// Runs an OAuth handler body: errors become RFC 6749 bodies in the path's realm.
async fn oauth_endpoint<F>(req: &HttpRequest, body: F) -> Result<HttpResponse, AppError>
where
    F: Future<Output = AppResult<HttpResponse>>,
{
    let realm = realm(req);
    body.await
        .map(no_store)
        .map_err(|e| e.in_flavor(Flavor::OAuth).with_realm(&realm))
}

/// POST /tenants/{t}/oauth/token
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens (RFC 6749 §5.1), `Cache-Control: no-store`", body = TokenResponse),
        OAuthBadRequest,
        OAuthInvalidClient,
        OAuthNotFound,
        OAuthPayloadTooLarge,
        OAuthUnsupportedMediaType,
        OAuthUnavailable
    ),
    security((), ("client_basic" = []))
)]
#[post("/tenants/{t}/oauth/token")]
pub async fn token(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, AppError> {
    oauth_endpoint(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        let mut form = read_form(&req, payload).await?;
        let creds = client_credentials(&req, &mut form)?;
        let request = TokenRequest {
            grant_type: form.remove("grant_type"),
            code: form.remove("code").map(Secret::new),
            redirect_uri: form.remove("redirect_uri"),
            code_verifier: form.remove("code_verifier").map(Secret::new),
            username: form.remove("username"),
            password: form.remove("password").map(Secret::new),
            refresh_token: form.remove("refresh_token").map(Secret::new),
            scope: form.remove("scope"),
        };
        let response = grants::token(&state, &tenant, &creds, request, &origin(&req, None)).await?;
        Ok(HttpResponse::Ok().json(response))
    })
    .await
}

/// POST /tenants/{t}/oauth/revoke
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = RevokeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or unknown (RFC 7009 §2.2)"),
        OAuthBadRequest,
        OAuthInvalidClient,
        OAuthNotFound,
        OAuthPayloadTooLarge,
        OAuthUnsupportedMediaType,
        OAuthUnavailable
    ),
    security((), ("client_basic" = []))
)]
#[post("/tenants/{t}/oauth/revoke")]
pub async fn revoke(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, AppError> {
    oauth_endpoint(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        let mut form = read_form(&req, payload).await?;
        let creds = client_credentials(&req, &mut form)?;
        let client = grants::authenticate_client(&state, &tenant.slug, &creds).await?;
        let presented = form
            .remove("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid_request("token is required."))?;
        let origin = origin(&req, Some(&format!("client:{}", client.client_id)));
        revocation::revoke(&state, &tenant, &client, &presented, &origin).await?;
        Ok(HttpResponse::Ok().finish())
    })
    .await
}

/// POST /tenants/{t}/oauth/introspect (confidential clients only)
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 7662 answer; `{\"active\": false}` for unknown, revoked or foreign tokens", body = Introspection),
        OAuthBadRequest,
        OAuthInvalidClient,
        OAuthNotFound,
        OAuthPayloadTooLarge,
        OAuthUnsupportedMediaType,
        OAuthUnavailable
    ),
    security(("client_basic" = []), ())
)]
#[post("/tenants/{t}/oauth/introspect")]
pub async fn introspect(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, AppError> {
    oauth_endpoint(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        let mut form = read_form(&req, payload).await?;
        let creds = client_credentials(&req, &mut form)?;
        if creds.secret.is_none() {
            return Err(AppError::oauth(
                ErrorCode::InvalidClient,
                "Introspection needs a confidential client.",
            ));
        }
        let client = grants::authenticate_client(&state, &tenant.slug, &creds).await?;
        let presented = form
            .remove("token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid_request("token is required."))?;
        let hint = form.remove("token_type_hint");
        let answer =
            introspection::introspect(&state, &tenant, &client, &presented, hint.as_deref())
                .await?;
        Ok(HttpResponse::Ok().json(answer))
    })
    .await
}
