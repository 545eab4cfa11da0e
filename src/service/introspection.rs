//! RFC 7662 token introspection.

use serde::Serialize;

use super::token_check::authenticate_bearer;
use super::unix_now;
use crate::authn::sha256_hex;
use crate::authn::tokens::Audience;
use crate::error::{AppResult, ErrorCode};
use crate::state::AppState;
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

/// RFC 7662: whether a token of this tenant is active, and what it says.
pub async fn introspect(
    state: &AppState,
    tenant: &Tenant,
    token: &str,
) -> AppResult<Introspection> {
    let hash = sha256_hex(token);
    if let Some(entry) = state.sessions.get_refresh(&tenant.slug, &hash).await? {
        let now = unix_now();
        let r = &entry.record;
        let current_generation = state
            .client(&tenant.slug, &r.client_id)
            .await?
            .filter(|c| c.enabled)
            .map(|c| c.generation.clone());
        let active = entry.state == RefreshState::Current
            && entry.family_active
            && entry.session_active
            && current_generation.as_deref() == Some(r.client_generation.as_str())
            && now <= r.expires_at
            && now <= r.family_expires_at;
        if !active {
            return Ok(Introspection::default());
        }
        return Ok(Introspection {
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
        });
    }
    let claims = match authenticate_bearer(state, &tenant.slug, token).await {
        Ok(c) => c,
        Err(e) if e.code() == ErrorCode::StoreUnavailable => return Err(e),
        Err(_) => return Ok(Introspection::default()),
    };
    Ok(Introspection {
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
    })
}
