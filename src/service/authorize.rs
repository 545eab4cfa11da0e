//! The authorization endpoint's rules (SPEC §9; RFC 6749 §4.1, RFC 7636,
//! OIDC Core §3.1.2, RFC 9207, RFC 9700): which requests are refused
//! without a redirect, which are answered at the client's redirect URI,
//! sign-in transactions, browser sessions and authorization codes.

use serde::{Deserialize, Serialize};

use crate::authn::{random_token, sha256_hex};
use crate::domain::{GrantType, TenantStatus, redirect_uri_matches};
use crate::error::AppResult;
use crate::service::oauth::id_tokens::wants_id_token;
use crate::service::unix_now;
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::session::Ephemeral;

/// How long a sign-in transaction (the authorize parameters) is kept: 10 minutes.
pub const SIGN_IN_TTL: u64 = 600;
/// How long an authorization code is valid: 60 seconds (SPEC §9).
pub const CODE_TTL: u64 = 60;
/// Longest `state` accepted (it is kept with the sign-in and sent back).
pub const MAX_STATE: usize = 1024;

/// Scopes the authorization endpoint grants (SPEC §9); others are dropped.
pub const KNOWN_SCOPES: &[&str] = &["openid", "email", "offline_access"];

/// The query of an authorization request, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

/// A checked authorization request: what a sign-in transaction keeps and
/// what its code is bound to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Authorization {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub login_hint: Option<String>,
    /// Seconds; `None` when not asked.
    pub max_age: Option<u64>,
    pub prompt_none: bool,
    pub prompt_login: bool,
}

/// Why an authorization request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The client or the redirect URI cannot be trusted: never redirect
    /// (RFC 6749 §4.1.2.1); a 400 page says what is wrong.
    NoRedirect(String),
    /// Answered at the redirect URI with `error` (RFC 6749 §4.1.2.1, OIDC
    /// Core §3.1.2.6).
    Redirect(ErrorRedirect),
}

/// An error answered at the client's redirect URI.
#[derive(Debug, Clone)]
pub struct ErrorRedirect {
    pub redirect_uri: String,
    pub error: &'static str,
    pub description: String,
    pub state: Option<String>,
}

/// Text that can be kept and sent back as it came: no control character,
/// and no U+FFFD (what bytes that are not UTF-8 were read as).
fn sendable(s: &str) -> bool {
    !s.chars()
        .any(|c| c.is_control() || c == char::REPLACEMENT_CHARACTER)
}

/// A parameter of at most `max` bytes that can be kept as it came.
fn bounded(value: Option<String>, max: usize, name: &str) -> Result<Option<String>, String> {
    match value {
        Some(v) if v.len() > max => Err(format!("{name} is longer than {max} characters.")),
        Some(v) if !sendable(&v) => Err(format!(
            "{name} must be UTF-8 text without control characters."
        )),
        other => Ok(other),
    }
}

/// RFC 7636 §4.1/§4.2: 43 to 128 unreserved characters.
pub fn pkce_value_ok(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636
/// §4.3, OIDC Core §3.1.2.1); others are ignored (RFC 6749 §3.1).
pub const PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "request",
    "request_uri",
];

/// Checks an authorization request against the tenant and its client.
/// `repeated` names the parameters of [`PARAMETERS`] sent more than once
/// (RFC 6749 §3.1: each at most once).
pub async fn check(
    state: &AppState,
    tenant: &Tenant,
    params: AuthorizeParams,
    repeated: &[String],
) -> AppResult<Result<(std::sync::Arc<Client>, Authorization), Refusal>> {
    let no_redirect = |why: &str| Ok(Err(Refusal::NoRedirect(why.to_owned())));
    if let Some(name) = repeated
        .iter()
        .find(|n| *n == "client_id" || *n == "redirect_uri")
    {
        return no_redirect(&format!("The parameter {name} is repeated."));
    }
    let repeated = repeated.first();
    let Some(client_id) = params.client_id.filter(|c| !c.is_empty()) else {
        return no_redirect("The request names no client (client_id is missing).");
    };
    let client = if crate::service::clients::valid_client_id(&client_id) {
        state.client(&tenant.slug, &client_id).await?
    } else {
        None
    };
    let Some(client) = client.filter(|c| c.enabled) else {
        return no_redirect("The application (client_id) is not known to this organization.");
    };
    let Some(redirect_uri) = params.redirect_uri.filter(|r| !r.is_empty()) else {
        return no_redirect("The request has no redirect_uri.");
    };
    if !client
        .redirect_uris
        .iter()
        .any(|registered| redirect_uri_matches(registered, &redirect_uri))
    {
        return no_redirect("The redirect_uri is not registered for this application.");
    }
    // From here on, errors go back to the application.
    let refuse = |error: &'static str, description: &str, st: &Option<String>| {
        Ok(Err(Refusal::Redirect(ErrorRedirect {
            redirect_uri: redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: st.clone(),
        })))
    };
    // State is sent back exactly: what could not be (bytes that are not
    // UTF-8, read as U+FFFD) or what has no place in a URL parameter
    // (control characters, outside RFC 6749's VSCHAR) is refused.
    let st = params
        .state
        .clone()
        .filter(|s| s.len() <= MAX_STATE && sendable(s));
    if params.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
        return refuse(
            "invalid_request",
            &format!("state is longer than {MAX_STATE} characters."),
            &st,
        );
    }
    if params.state.as_ref().is_some_and(|s| !sendable(s)) {
        return refuse(
            "invalid_request",
            "state must be UTF-8 text without control characters.",
            &st,
        );
    }
    if let Some(name) = repeated {
        return refuse(
            "invalid_request",
            &format!("The parameter {name} is repeated."),
            &st,
        );
    }
    match params.response_type.as_deref() {
        None | Some("") => return refuse("invalid_request", "response_type is required.", &st),
        Some("code") => {}
        Some(_) => {
            return refuse(
                "unsupported_response_type",
                "Only response_type=code is supported.",
                &st,
            );
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return refuse(
            "unauthorized_client",
            "The application may not use the authorization code flow.",
            &st,
        );
    }
    if params.request.is_some() || params.request_uri.is_some() {
        return refuse(
            "invalid_request",
            "Request objects (request, request_uri) are not supported.",
            &st,
        );
    }
    if tenant.status == TenantStatus::Suspended {
        return refuse("access_denied", "The organization is suspended.", &st);
    }
    let Some(code_challenge) = params.code_challenge.filter(|c| !c.is_empty()) else {
        return refuse(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256.",
            &st,
        );
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return refuse(
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted).",
            &st,
        );
    }
    if !pkce_value_ok(&code_challenge) {
        return refuse("invalid_request", "code_challenge is malformed.", &st);
    }
    let (mut prompt_none, mut prompt_login) = (false, false);
    for p in params
        .prompt
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|p| !p.is_empty())
    {
        match p {
            "none" => prompt_none = true,
            "login" => prompt_login = true,
            // First-party clients: there is no consent or account choice to show.
            "consent" | "select_account" => {}
            _ => return refuse("invalid_request", "prompt has an unknown value.", &st),
        }
    }
    if prompt_none && (prompt_login || params.prompt.as_deref() != Some("none")) {
        return refuse(
            "invalid_request",
            "prompt=none cannot be combined with other values.",
            &st,
        );
    }
    let max_age = match params.max_age.as_deref() {
        None | Some("") => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n.min(i64::MAX as u64)),
            Err(_) => {
                return refuse(
                    "invalid_request",
                    "max_age must be a whole number of seconds.",
                    &st,
                );
            }
        },
    };
    let (nonce, login_hint) = match (
        bounded(params.nonce, 256, "nonce"),
        bounded(params.login_hint, 254, "login_hint"),
    ) {
        (Ok(n), Ok(h)) => (n, h),
        (Err(e), _) | (_, Err(e)) => return refuse("invalid_request", &e, &st),
    };
    let scope = match params.scope.as_deref() {
        None => "openid".to_owned(),
        Some(requested) => {
            let mut granted: Vec<&str> = Vec::new();
            for s in requested.split(' ') {
                if KNOWN_SCOPES.contains(&s) && !granted.contains(&s) {
                    granted.push(s);
                }
            }
            granted.join(" ")
        }
    };
    Ok(Ok((
        client,
        Authorization {
            client_id,
            redirect_uri,
            scope,
            state: st,
            nonce,
            code_challenge,
            login_hint,
            max_age,
            prompt_none,
            prompt_login,
        },
    )))
}

/// The redirect URI with response parameters added to its query (RFC 6749
/// §4.1.2, RFC 9207 `iss`).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{query}")
}

/// Where an error goes back to the application.
pub fn error_location(state: &AppState, tenant: &str, e: &ErrorRedirect) -> String {
    let issuer = state.issuer(tenant);
    let mut params = vec![
        ("error", e.error),
        ("error_description", e.description.as_str()),
    ];
    if let Some(s) = &e.state {
        params.push(("state", s));
    }
    params.push(("iss", &issuer));
    redirect_with(&e.redirect_uri, &params)
}

/// A sign-in waiting for the user: the request, and the browser it was
/// started in (SHA-256 of that browser's binding cookie).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignIn {
    pub authorization: Authorization,
    pub browser: String,
}

/// Keeps a sign-in transaction for 10 minutes; answers its id.
pub async fn start_sign_in(state: &AppState, tenant: &str, sign_in: &SignIn) -> AppResult<String> {
    let id = random_token();
    let value = serde_json::to_string(sign_in).map_err(crate::error::AppError::internal)?;
    state
        .sessions
        .put_ephemeral(tenant, Ephemeral::SignIn, &id, &value, SIGN_IN_TTL)
        .await?;
    Ok(id)
}

/// A sign-in transaction still open (not expired or finished).
pub async fn sign_in(state: &AppState, tenant: &str, id: &str) -> AppResult<Option<SignIn>> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let stored = state
        .sessions
        .get_ephemeral(tenant, Ephemeral::SignIn, id)
        .await?;
    Ok(stored.and_then(|v| serde_json::from_str(&v).ok()))
}

/// Ends a sign-in transaction atomically: true for the one caller that
/// ends it, false for every other (a form posted twice at once signs in once).
pub async fn finish_sign_in(state: &AppState, tenant: &str, id: &str) -> AppResult<bool> {
    let taken = state
        .sessions
        .take_ephemeral(
            tenant,
            Ephemeral::SignIn,
            id,
            &format!("done {}", uuid::Uuid::new_v4()),
            60,
        )
        .await?;
    Ok(matches!(taken, crate::store::session::Taken::Fresh(_)))
}

/// A browser's sign-in (the SSO cookie's record).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrowserSession {
    pub sid: String,
    pub user_id: String,
    /// Unix seconds.
    pub auth_time: i64,
}

/// Records a browser session; answers the cookie's secret (256 bits; only
/// its SHA-256 is stored).
pub async fn start_browser_session(
    state: &AppState,
    tenant: &Tenant,
    session: &BrowserSession,
) -> AppResult<String> {
    let secret = random_token();
    let value = serde_json::to_string(session).map_err(crate::error::AppError::internal)?;
    let ttl = crate::service::oauth::session_ttl(state, tenant, true);
    state
        .sessions
        .put_ephemeral(
            &tenant.slug,
            Ephemeral::Browser,
            &sha256_hex(&secret),
            &value,
            ttl,
        )
        .await?;
    Ok(secret)
}

/// The browser session a cookie names, if its §4 session is still active
/// (ending the session in any way ends the browser sign-in).
pub async fn browser_session(
    state: &AppState,
    tenant: &str,
    cookie: &str,
) -> AppResult<Option<BrowserSession>> {
    if cookie.is_empty() || cookie.len() > 64 {
        return Ok(None);
    }
    let hash = sha256_hex(cookie);
    let Some(stored) = state
        .sessions
        .get_ephemeral(tenant, Ephemeral::Browser, &hash)
        .await?
    else {
        return Ok(None);
    };
    let Ok(session) = serde_json::from_str::<BrowserSession>(&stored) else {
        return Ok(None);
    };
    match state.sessions.get_session(tenant, &session.sid).await? {
        Some(live) if live.user_id == session.user_id => Ok(Some(session)),
        _ => {
            state
                .sessions
                .delete_ephemeral(tenant, Ephemeral::Browser, &hash)
                .await?;
            Ok(None)
        }
    }
}

/// Forgets a browser session's record (its §4 session is ended apart).
pub async fn forget_browser_session(state: &AppState, tenant: &str, cookie: &str) -> AppResult<()> {
    Ok(state
        .sessions
        .delete_ephemeral(tenant, Ephemeral::Browser, &sha256_hex(cookie))
        .await?)
}

/// Whether a browser session satisfies a request, or the user must sign in
/// (again): `prompt=login`, or a sign-in older than `max_age`.
pub fn session_satisfies(session: &BrowserSession, authorization: &Authorization) -> bool {
    if authorization.prompt_login {
        return false;
    }
    match authorization.max_age {
        Some(max_age) => {
            unix_now().saturating_sub(session.auth_time)
                <= i64::try_from(max_age).unwrap_or(i64::MAX)
        }
        None => true,
    }
}

/// What an authorization code is bound to (SPEC §9).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub sid: String,
    pub user_id: String,
    /// Unix seconds.
    pub auth_time: i64,
}

/// Issues a code for a signed-in browser; answers the success redirect
/// (`code`, `state`, `iss`).
pub async fn issue_code(
    state: &AppState,
    tenant: &str,
    authorization: &Authorization,
    session: &BrowserSession,
) -> AppResult<String> {
    let code = random_token();
    let grant = CodeGrant {
        client_id: authorization.client_id.clone(),
        redirect_uri: authorization.redirect_uri.clone(),
        code_challenge: authorization.code_challenge.clone(),
        scope: authorization.scope.clone(),
        nonce: authorization
            .nonce
            .clone()
            .filter(|_| wants_id_token(&authorization.scope)),
        sid: session.sid.clone(),
        user_id: session.user_id.clone(),
        auth_time: session.auth_time,
    };
    let value = serde_json::to_string(&grant).map_err(crate::error::AppError::internal)?;
    state
        .sessions
        .put_ephemeral(
            tenant,
            Ephemeral::Code,
            &sha256_hex(&code),
            &value,
            CODE_TTL,
        )
        .await?;
    let issuer = state.issuer(tenant);
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = &authorization.state {
        params.push(("state", s));
    }
    params.push(("iss", &issuer));
    Ok(redirect_with(&authorization.redirect_uri, &params))
}
