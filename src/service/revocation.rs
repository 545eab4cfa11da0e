//! RFC 7009 token revocation.

use super::{Origin, unix_now};
use crate::authn::sha256_hex;
use crate::authn::tokens::{self, TokenError};
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::session::EndReason;

/// RFC 7009: revokes a refresh token (its family and session) or an access
/// token (its `jti`). Unknown or foreign tokens are ignored, as the RFC asks.
pub async fn revoke(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    token: &str,
    origin: &Origin,
) -> AppResult<()> {
    let hash = sha256_hex(token);
    if let Some(entry) = state.sessions.get_refresh(&tenant.slug, &hash).await? {
        if entry.record.client_id == client.client_id {
            state
                .sessions
                .revoke_family(&tenant.slug, &entry.record.family_id)
                .await?;
            state
                .sessions
                .end_session(
                    &tenant.slug,
                    &entry.record.session_id,
                    EndReason::Revoked,
                    state.linger(tenant),
                )
                .await?;
            super::audit::record(
                state,
                &tenant.slug,
                "token.revoke",
                "success",
                Some(&entry.record.user_id),
                origin,
            )
            .await;
        }
        return Ok(());
    }
    match tokens::verify(
        &state.keys,
        &state.public_url,
        &tenant.slug,
        token,
        state.config.clock_leeway_seconds,
    )
    .await
    {
        Ok(claims) if claims.azp == client.client_id => {
            let ttl = (claims.exp - unix_now()).max(0) as u64 + state.config.clock_leeway_seconds;
            state
                .sessions
                .deny_jti(&tenant.slug, &claims.jti, ttl)
                .await?;
            Ok(())
        }
        Err(TokenError::Store(e)) => Err(e.into()),
        _ => Ok(()),
    }
}
