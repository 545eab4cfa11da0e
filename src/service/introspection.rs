//! RFC 7662 token introspection.

use serde::Serialize;

use super::token_check::authenticate_bearer;
use super::unix_now;
use crate::authn::tokens::{AccessClaims, Audience};
use crate::error::{AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::session::RefreshState;

/// RFC 7662 answer.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// Which kind of token the caller says it presents (`token_type_hint`,
/// RFC 7662 §2.1): only the order of the lookups depends on it.
fn access_token_first(hint: Option<&str>, token: &str) -> bool {
    match hint {
        Some("access_token") => true,
        Some("refresh_token") => false,
        // Refresh tokens are opaque; access tokens are JWTs (three parts).
        _ => token.split('.').count() == 3,
    }
}

/// Whether `caller` may learn about an access token (RFC 7662 §4): it is
/// the token's audience (its `client_id` or one of its `audience` values)
/// or its authorized party.
fn may_see_access_token(caller: &Client, claims: &AccessClaims) -> bool {
    if claims.azp == caller.client_id {
        return true;
    }
    let audience: &[String] = match &claims.aud {
        Audience::One(a) => std::slice::from_ref(a),
        Audience::Many(list) => list,
    };
    audience
        .iter()
        .any(|a| *a == caller.client_id || caller.audience.contains(a))
}

/// RFC 7662: whether a token of this tenant is active, and what it says, as
/// far as `caller` may know. A client learns about its own refresh tokens
/// and about access tokens meant for it (see `may_see_access_token`);
/// anything else is `{"active": false}`, like an unknown token.
pub async fn introspect(
    state: &AppState,
    tenant: &Tenant,
    caller: &Client,
    token: &str,
    hint: Option<&str>,
) -> AppResult<Introspection> {
    if access_token_first(hint, token) {
        if let Some(answer) = access_token(state, tenant, caller, token).await? {
            return Ok(answer);
        }
        Ok(refresh_token(state, tenant, caller, token)
            .await?
            .unwrap_or_default())
    } else {
        if let Some(answer) = refresh_token(state, tenant, caller, token).await? {
            return Ok(answer);
        }
        Ok(access_token(state, tenant, caller, token)
            .await?
            .unwrap_or_default())
    }
}

/// The answer for a refresh token of this tenant, or `None` when the token
/// is not one.
async fn refresh_token(
    state: &AppState,
    tenant: &Tenant,
    caller: &Client,
    token: &str,
) -> AppResult<Option<Introspection>> {
    let (hash, family) = crate::authn::refresh_tokens::fingerprint(token);
    let presented = crate::store::session::PresentedRefresh {
        hash: &hash,
        family_id: family.as_deref(),
    };
    let Some(entry) = state.sessions.get_refresh(&tenant.slug, presented).await? else {
        return Ok(None);
    };
    let now = unix_now();
    let r = &entry.record;
    if r.client_id != caller.client_id {
        return Ok(Some(Introspection::default()));
    }
    let active = entry.state == RefreshState::Current
        && entry.family_active
        && entry.session_active
        && caller.enabled
        && caller.generation == r.client_generation
        && now <= r.expires_at
        && now <= r.family_expires_at;
    if !active {
        return Ok(Some(Introspection::default()));
    }
    Ok(Some(Introspection {
        active: true,
        scope: Some(r.scope.clone()),
        client_id: Some(r.client_id.clone()),
        sub: Some(r.user_id.clone()),
        token_type: Some("refresh_token".to_owned()),
        exp: Some(r.expires_at.min(r.family_expires_at)),
        iss: Some(state.issuer(&tenant.slug)),
        tid: Some(tenant.slug.clone()),
        sid: Some(r.session_id.clone()),
        ..Introspection::default()
    }))
}

/// The answer for an access token of this tenant, or `None` when the token
/// does not verify as one.
async fn access_token(
    state: &AppState,
    tenant: &Tenant,
    caller: &Client,
    token: &str,
) -> AppResult<Option<Introspection>> {
    let claims = match authenticate_bearer(state, &tenant.slug, token).await {
        Ok(c) => c,
        Err(e) if e.code() == ErrorCode::StoreUnavailable => return Err(e),
        Err(e)
            if e.code() == ErrorCode::SessionRevoked || e.code() == ErrorCode::AccountDisabled =>
        {
            return Ok(Some(Introspection::default()));
        }
        Err(_) => return Ok(None),
    };
    if !may_see_access_token(caller, &claims) {
        return Ok(Some(Introspection::default()));
    }
    Ok(Some(Introspection {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        sub: Some(claims.sub),
        token_type: Some("Bearer".to_owned()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        iss: Some(claims.iss),
        aud: Some(claims.aud),
        jti: Some(claims.jti),
        tid: Some(claims.tid),
        sid: claims.sid,
        roles: Some(claims.roles),
    }))
}
