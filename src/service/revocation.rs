//! RFC 7009 token revocation, and the deny-list of access tokens revoked
//! before they expire: recorded in the database first, then in the session
//! store, which is refilled from the database whenever it lost its data.

use super::{Origin, unix_now};
use crate::authn::tokens::{self, TokenError};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::revoked_tokens;
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
    let (hash, family) = crate::authn::refresh_tokens::fingerprint(token);
    let presented = crate::store::session::PresentedRefresh {
        hash: &hash,
        family_id: family.as_deref(),
    };
    if let Some(entry) = state.sessions.get_refresh(&tenant.slug, presented).await? {
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
            deny_access_token(state, &tenant.slug, &claims.jti, claims.exp).await
        }
        Err(TokenError::Store(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Denies one access token (`jti`, expiring at `exp`, Unix seconds) until it
/// would have expired: durably, then in the store every check reads.
pub async fn deny_access_token(
    state: &AppState,
    tenant: &str,
    jti: &str,
    exp: i64,
) -> AppResult<()> {
    let leeway = state.config.clock_leeway_seconds;
    let until = exp.saturating_add(leeway as i64);
    let expires_at = chrono::DateTime::from_timestamp(until, 0)
        .map(|d| d.naive_utc())
        .ok_or_else(|| {
            AppError::new(ErrorCode::InvalidRequest, "The token's exp is out of range")
        })?;
    let (t, j) = (tenant.to_owned(), jti.to_owned());
    state
        .db
        .run(move |c| revoked_tokens::record(c, &t, &j, expires_at))
        .await?;
    let ttl = (exp - unix_now()).max(0) as u64 + leeway;
    state.sessions.deny_jti(tenant, jti, ttl).await?;
    Ok(())
}

/// Copies a tenant's unexpired denials into a session store that lost them,
/// then marks it synced. One refill at a time; a caller that waited finds
/// the work done.
pub async fn refill_store(state: &AppState, tenant: &str) -> AppResult<()> {
    let _one_at_a_time = state.refill_lock.lock().await;
    if state.sessions.is_synced(tenant).await? {
        return Ok(());
    }
    let t = tenant.to_owned();
    let denied = state
        .db
        .run(move |c| revoked_tokens::unexpired(c, &t))
        .await?;
    let now = unix_now();
    for (jti, expires_at) in &denied {
        let ttl = (expires_at.and_utc().timestamp() - now).max(1) as u64;
        state.sessions.deny_jti(tenant, jti, ttl).await?;
    }
    state.sessions.mark_synced(tenant).await?;
    if !denied.is_empty() {
        tracing::warn!(
            tenant,
            denied = denied.len(),
            "the session store had lost this tenant's revoked tokens; refilled"
        );
    }
    Ok(())
}
