//! The OAuth token endpoint (RFC 6749): client authentication, one module
//! per grant, and what the grants share (signing access tokens, scopes).

mod client_auth;
mod client_credentials;
mod code_grant;
pub(crate) mod id_tokens;
mod password_grant;
mod refresh_grant;
pub(crate) mod signin;

use serde::{Deserialize, Serialize};

pub use self::client_auth::authenticate_client;
use super::{Origin, unix_now};
use crate::authn::tokens::{self, AccessClaims, Audience};
use crate::config::Secret;
use crate::domain::{GrantType, TenantStatus, UserStatus};
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users;

/// How a client presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    Basic,
    Post,
    None,
}

/// Client credentials from a token, revoke or introspect request.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub secret: Option<Secret>,
    pub method: ClientAuthMethod,
}

/// RFC 6749 §5.1 success body. Also what the grace window replays.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the scope holds `openid` (OIDC Core §3.1.3.3, §12.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub scope: String,
}

/// Leaves the tokens out.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("id_token", &self.id_token.as_ref().map(|_| "***"))
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Scopes a user token may carry.
pub(crate) const USER_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
pub(crate) const DEFAULT_USER_SCOPE: &str = "openid profile email";

pub(crate) const WRONG_CREDENTIALS: &str = "The e-mail or password is wrong.";
/// The failed-login counter of e-mails that name no user.
pub(crate) const UNKNOWN_USER: &str = "-";
pub(crate) const BAD_REFRESH: &str = "The refresh token is invalid, expired or revoked.";

pub(crate) fn oauth(code: ErrorCode, description: &str) -> AppError {
    AppError::oauth(code, description)
}

/// Checks a requested scope against what may be granted; `None` means the default.
pub(crate) fn grant_scope(
    requested: Option<&str>,
    allowed: &[&str],
    default: &str,
) -> AppResult<String> {
    let Some(requested) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default.to_owned());
    };
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&s) {
            return Err(oauth(
                ErrorCode::InvalidScope,
                "The requested scope is not available to this client.",
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

/// What the token endpoint was asked.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    /// Grant `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.5).
    pub code: Option<Secret>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<Secret>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
}

/// The token endpoint: every error is already OAuth-shaped.
pub async fn token(
    state: &AppState,
    tenant: &Tenant,
    creds: &ClientCredentials,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let grant = match req.grant_type.as_deref() {
        None | Some("") => {
            return Err(oauth(ErrorCode::InvalidRequest, "grant_type is required."));
        }
        Some("authorization_code") => GrantType::AuthorizationCode,
        Some("password") => GrantType::Password,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some(_) => {
            return Err(oauth(
                ErrorCode::UnsupportedGrantType,
                "The grant type is not supported.",
            ));
        }
    };
    let client = authenticate_client(state, &tenant.slug, creds).await?;
    if !client.allows(grant) {
        return Err(oauth(
            ErrorCode::UnauthorizedClient,
            "The client may not use this grant type.",
        ));
    }
    if tenant.status == TenantStatus::Suspended {
        return Err(oauth(ErrorCode::InvalidGrant, "The tenant is suspended."));
    }
    let result = match grant {
        GrantType::AuthorizationCode => code_grant::grant(state, tenant, &client, req).await,
        GrantType::Password => password_grant::grant(state, tenant, &client, req, origin).await,
        GrantType::RefreshToken => refresh_grant::grant(state, tenant, &client, req, origin).await,
        GrantType::ClientCredentials => {
            client_credentials::grant(state, tenant, &client, req).await
        }
    };
    result.map_err(|e| e.in_flavor(Flavor::OAuth))
}

/// A signed access token.
pub(crate) struct Minted {
    pub token: String,
    /// Seconds.
    pub expires_in: u64,
}

/// What an access token says (RFC 9068 §2.2).
pub(crate) struct AccessFor<'a> {
    pub sub: &'a str,
    /// The session of a user token.
    pub sid: Option<&'a str>,
    pub scope: &'a str,
    pub roles: Vec<String>,
    /// Chosen here unless given.
    pub jti: Option<String>,
}

/// Signs an access token through `client`.
pub(crate) async fn mint_access(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    what: AccessFor<'_>,
) -> AppResult<Minted> {
    let AccessFor {
        sub,
        sid,
        scope,
        roles,
        jti,
    } = what;
    let keys = state.keys.keys(&tenant.slug).await?;
    let signing = keys.signing.as_ref().ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "tenant {} has no active signing key",
            tenant.slug
        ))
    })?;
    let now = unix_now();
    let ttl = tenant.settings.access_token_ttl_seconds;
    let audience = if client.audience.is_empty() {
        vec![client.client_id.clone()]
    } else {
        client.audience.clone()
    };
    let claims = AccessClaims {
        iss: state.issuer(&tenant.slug),
        sub: sub.to_owned(),
        aud: Audience::from_list(audience),
        azp: client.client_id.clone(),
        client_id: client.client_id.clone(),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: jti.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        tid: tenant.slug.clone(),
        sid: sid.map(str::to_owned),
        scope: scope.to_owned(),
        roles,
        cgen: client.generation.clone(),
    };
    let token = tokens::sign(signing, &claims).map_err(AppError::internal)?;
    Ok(Minted {
        token,
        expires_in: ttl,
    })
}

/// The user's roles, from the policy snapshot (never more than a second
/// behind a change, SPEC §6).
pub(crate) async fn roles_of(
    state: &AppState,
    tenant: &str,
    user_id: &str,
) -> AppResult<Vec<String>> {
    Ok(state.authz.roles_of(tenant, user_id).await?)
}

/// The user if it exists and is active, from this instance's view of the
/// database (a change anywhere reaches it within a second; a disable also
/// ends the user's sessions in the store at once).
pub(crate) async fn active_user(
    state: &AppState,
    tenant: &str,
    user_id: &str,
) -> AppResult<Option<std::sync::Arc<users::User>>> {
    Ok(state
        .user(tenant, user_id)
        .await?
        .filter(|u| u.status == UserStatus::Active))
}

/// Whether the user is active and still has the password hash a sign-in
/// checked, as the database says now.
pub(crate) async fn user_unchanged(
    state: &AppState,
    tenant: &str,
    user_id: &str,
    password_hash: &str,
) -> AppResult<bool> {
    let (t, id) = (tenant.to_owned(), user_id.to_owned());
    Ok(state
        .db
        .run(move |c| users::find(c, &t, &id))
        .await?
        .is_some_and(|u| {
            u.status == UserStatus::Active
                && bool::from(subtle::ConstantTimeEq::ct_eq(
                    u.password_hash.as_bytes(),
                    password_hash.as_bytes(),
                ))
        }))
}

/// How long a session record lives: its longest refresh family, or its
/// access token when the client gets no refresh token.
pub(crate) fn session_ttl(state: &AppState, tenant: &Tenant, with_refresh: bool) -> u64 {
    let s = &tenant.settings;
    let base = if with_refresh {
        s.refresh_token_ttl_seconds.max(s.access_token_ttl_seconds)
    } else {
        s.access_token_ttl_seconds
    };
    base + state.config.clock_leeway_seconds
}
