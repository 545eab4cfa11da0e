//! ID tokens of the code exchange and of refreshes (SPEC §9, OIDC Core
//! §3.1.3.6 and §12.2).

use super::oauth;
use crate::authn::id_token::{self, IdClaims};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::unix_now;
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users::User;

/// Whether a granted scope asks for an ID token.
pub(crate) fn wants_id_token(scope: &str) -> bool {
    scope.split(' ').any(|s| s == "openid")
}

/// What an ID token says about one sign-in.
pub(crate) struct IdTokenFor<'a> {
    pub user: &'a User,
    pub sid: &'a str,
    /// Unix seconds.
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
    pub scope: &'a str,
}

/// Signs an ID token for `client` with the tenant's active key; it lives as
/// long as the access token it comes with.
pub(crate) async fn mint(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    what: IdTokenFor<'_>,
) -> AppResult<String> {
    let keys = state.keys.keys(&tenant.slug).await?;
    let signing = keys.signing.as_ref().ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "tenant {} has no active signing key",
            tenant.slug
        ))
    })?;
    let now = unix_now();
    let with_email = what.scope.split(' ').any(|s| s == "email");
    let claims = IdClaims {
        iss: state.issuer(&tenant.slug),
        sub: what.user.id.clone(),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        exp: now + tenant.settings.access_token_ttl_seconds as i64,
        iat: now,
        auth_time: what.auth_time,
        nonce: what.nonce.map(str::to_owned),
        sid: what.sid.to_owned(),
        at_hash: Some(id_token::at_hash(signing.alg, what.access_token)),
        amr: vec!["pwd".to_owned()],
        email: with_email.then(|| what.user.email.clone()),
        email_verified: with_email.then_some(what.user.email_verified),
    };
    id_token::sign(signing, &claims).map_err(AppError::internal)
}

/// The session's sign-in time, for an ID token on refresh; the session
/// ended meanwhile is the refresh token's `invalid_grant`.
pub(crate) async fn auth_time_of(state: &AppState, tenant: &str, sid: &str) -> AppResult<i64> {
    match state.sessions.get_session(tenant, sid).await? {
        Some(session) => Ok(session.created_at),
        None => Err(oauth(ErrorCode::InvalidGrant, super::BAD_REFRESH)),
    }
}
