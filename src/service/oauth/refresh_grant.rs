//! The `refresh_token` grant: atomic rotation, the grace window that answers
//! a just-rotated token with the same successor pair, and reuse detection
//! (SPEC §4).

use super::id_tokens::{self, IdTokenFor};
use super::{
    AccessFor, BAD_REFRESH, TokenRequest, TokenResponse, active_user, grant_scope, mint_access,
    oauth, roles_of,
};
use crate::authn::keys::MasterKey;
use crate::authn::{refresh_tokens, sha256_hex};
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::service::{Origin, unix_now};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::session::{
    EndReason, PresentedRefresh, RefreshRecord, RefreshState, RotateOutcome, Rotation,
};

/// The key that seals a successor pair: derived from the predecessor token,
/// which only its holder knows.
fn grace_key(refresh_token: &str) -> MasterKey {
    MasterKey::derived("latchkey refresh grace", refresh_token)
}

pub(super) async fn grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let Some(presented) = req.refresh_token else {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "refresh_token is required.",
        ));
    };
    let presented = presented.expose();
    let (hash, family) = refresh_tokens::fingerprint(presented);
    let lookup = PresentedRefresh {
        hash: &hash,
        family_id: family.as_deref(),
    };
    // A lost race is retried once the winner's rotation is visible.
    for _ in 0..3 {
        let Some(entry) = state.sessions.get_refresh(&tenant.slug, lookup).await? else {
            return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
        };
        let record = &entry.record;
        if record.client_id != client.client_id
            || record.client_generation != client.generation
            || !entry.family_active
            || !entry.session_active
        {
            return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
        }
        let now = unix_now();
        match entry.state {
            RefreshState::Rotated {
                rotated_at,
                successor_is_current,
                sealed_successor,
            } => {
                // A grace of 0 is none at all (not "the same second").
                let grace = tenant.settings.refresh_grace_seconds as i64;
                let in_grace = grace > 0 && now - rotated_at <= grace;
                if successor_is_current
                    && in_grace
                    && let Some(sealed) = sealed_successor
                    && let Ok(plain) = grace_key(presented).open(&sealed, &hash)
                    && let Ok(pair) = serde_json::from_slice::<TokenResponse>(&plain)
                {
                    return Ok(pair);
                }
                return Err(reuse_detected(state, tenant, record, origin).await);
            }
            RefreshState::Current => {
                if now > record.expires_at || now > record.family_expires_at {
                    return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                }
                let scope = match req.scope.as_deref() {
                    None => record.scope.clone(),
                    Some(requested) => {
                        let allowed: Vec<&str> = record.scope.split(' ').collect();
                        grant_scope(Some(requested), &allowed, &record.scope)?
                    }
                };
                let Some(user) = active_user(state, &tenant.slug, &record.user_id).await? else {
                    return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                };
                let roles = roles_of(state, &tenant.slug, &record.user_id).await?;
                let minted = mint_access(
                    state,
                    tenant,
                    client,
                    AccessFor {
                        sub: &record.user_id,
                        sid: Some(&record.session_id),
                        scope: &scope,
                        roles,
                        jti: None,
                    },
                )
                .await?;
                let successor = refresh_tokens::issue(&record.family_id).ok_or_else(|| {
                    AppError::internal(anyhow::anyhow!("family id is not a UUID"))
                })?;
                // OIDC Core §12.2: a new ID token for the same sign-in, no nonce.
                let id_token = if id_tokens::wants_id_token(&scope) {
                    let auth_time =
                        id_tokens::auth_time_of(state, &tenant.slug, &record.session_id).await?;
                    let what = IdTokenFor {
                        user: &user,
                        sid: &record.session_id,
                        auth_time,
                        nonce: None,
                        access_token: &minted.token,
                        scope: &scope,
                    };
                    Some(id_tokens::mint(state, tenant, client, what).await?)
                } else {
                    None
                };
                let pair = TokenResponse {
                    access_token: minted.token,
                    token_type: "Bearer".to_owned(),
                    expires_in: minted.expires_in,
                    refresh_token: Some(successor.clone()),
                    id_token,
                    scope,
                };
                let sealed = grace_key(presented)
                    .seal(
                        &serde_json::to_vec(&pair).map_err(AppError::internal)?,
                        &hash,
                    )
                    .map_err(|e| AppError::internal(anyhow::anyhow!(e)))?;
                let new_record = RefreshRecord {
                    expires_at: (now + tenant.settings.refresh_idle_timeout_seconds as i64)
                        .min(record.family_expires_at),
                    // RFC 6749 §6: the family keeps the scope granted at
                    // sign-in; a narrower `scope` shapes this access token only.
                    scope: record.scope.clone(),
                    ..record.clone()
                };
                let new_hash = sha256_hex(&successor);
                let outcome = state
                    .sessions
                    .rotate_refresh(
                        &tenant.slug,
                        Rotation {
                            old_hash: &hash,
                            new_hash: &new_hash,
                            new_record: &new_record,
                            sealed_successor: &sealed,
                            now,
                            grace_seconds: tenant.settings.refresh_grace_seconds,
                        },
                    )
                    .await?;
                match outcome {
                    RotateOutcome::Rotated => {
                        crate::metrics::token_issued("refresh_token");
                        return Ok(pair);
                    }
                    RotateOutcome::LostRace => continue,
                    RotateOutcome::Revoked => {
                        return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                    }
                }
            }
        }
    }
    Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH))
}

/// A rotated token came back outside the grace window: revoke the family and
/// its session, and record it.
async fn reuse_detected(
    state: &AppState,
    tenant: &Tenant,
    record: &RefreshRecord,
    origin: &Origin,
) -> AppError {
    let revoke = async {
        state
            .sessions
            .revoke_family(&tenant.slug, &record.family_id)
            .await?;
        state
            .sessions
            .end_session(
                &tenant.slug,
                &record.session_id,
                EndReason::Revoked,
                state.linger(tenant),
            )
            .await
    };
    if let Err(e) = revoke.await {
        return AppError::from(e).in_flavor(Flavor::OAuth);
    }
    crate::metrics::reuse_detected();
    tracing::warn!(
        tenant = %tenant.slug,
        user = %record.user_id,
        family = %record.family_id,
        "refresh token reuse detected; family and session revoked"
    );
    crate::service::audit::record(
        state,
        &tenant.slug,
        "refresh_token.reuse_detected",
        "failure",
        Some(&record.user_id),
        origin,
    )
    .await;
    oauth(ErrorCode::InvalidGrant, BAD_REFRESH)
}
