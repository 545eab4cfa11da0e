//! Signing-key listing and rotation, by hand and on a schedule.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Origin;
use crate::authn::keys;
use crate::domain::SigningAlg;
use crate::domain::rfc3339;
use crate::error::{AppError, AppResult};
use crate::state::{AppState, Change};
use crate::store::db::keys as key_rows;
use crate::store::db::tenants::Tenant;

/// A signing key as the admin API shows it (never the private part).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    /// `pending` (published, not yet signing), `active` (signing),
    /// `retired` (verifying until `expires_at`) or `expired`.
    pub status: &'static str,
    pub created_at: String,
    pub activates_at: String,
    pub retired_at: Option<String>,
    pub expires_at: Option<String>,
}

pub async fn list(state: &AppState, tenant: &str) -> AppResult<Vec<KeyView>> {
    let t = tenant.to_owned();
    let rows = state.db.run(move |c| key_rows::all(c, &t)).await?;
    let now = crate::store::db::now();
    Ok(rows
        .into_iter()
        .map(|r| KeyView {
            status: if r.expires_at.is_some_and(|e| e <= now) {
                "expired"
            } else if r.retired_at.is_some_and(|t| t <= now) {
                "retired"
            } else if r.activates_at > now {
                "pending"
            } else {
                "active"
            },
            kid: r.kid,
            alg: r.alg,
            created_at: rfc3339(r.created_at),
            activates_at: rfc3339(r.activates_at),
            retired_at: r.retired_at.map(rfc3339),
            expires_at: r.expires_at.map(rfc3339),
        })
        .collect())
}

fn max_token_life(state: &AppState, tenant: &Tenant) -> chrono::Duration {
    chrono::Duration::seconds(
        (tenant.settings.access_token_ttl_seconds + state.config.clock_leeway_seconds) as i64,
    )
}

/// Rotates the tenant's signing key; answers the new key.
pub async fn rotate(state: &AppState, tenant: &Tenant, origin: &Origin) -> AppResult<KeyView> {
    let master = state.keys.master().clone();
    let slug = tenant.slug.clone();
    let alg = tenant.settings.signing_alg;
    let delay = chrono::Duration::seconds(state.config.key_activation_delay_seconds as i64);
    let life = max_token_life(state, tenant);
    let kid = state
        .db
        .transaction(move |c| keys::rotate(c, &master, &slug, alg, delay, life))
        .await?;
    state.changed(Change::Keys(tenant.slug.clone())).await?;
    super::audit::record(
        state,
        &tenant.slug,
        "key.rotate",
        "success",
        Some(&kid),
        origin,
    )
    .await;
    list(state, &tenant.slug)
        .await?
        .into_iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("rotated key {kid} not found")))
}

/// Rotates every tenant whose newest key is older than the configured
/// interval. Safe on several instances at once: the rotation re-checks the
/// age under a per-tenant lock.
pub async fn rotate_due(state: &AppState) -> AppResult<usize> {
    let days = state.config.key_rotation_days;
    if days == 0 {
        return Ok(0);
    }
    let cutoff = crate::store::db::now() - chrono::Duration::days(days as i64);
    let due: Vec<String> = state
        .db
        .run(key_rows::newest_per_tenant)
        .await?
        .into_iter()
        .filter(|(_, newest)| newest.is_some_and(|n| n < cutoff))
        .map(|(t, _)| t)
        .collect();
    let mut rotated = 0;
    for slug in due {
        let tenant = match state.tenant(&slug).await {
            Ok(t) => t,
            Err(_) => continue,
        };
        let master = state.keys.master().clone();
        let alg: SigningAlg = tenant.settings.signing_alg;
        let delay = chrono::Duration::seconds(state.config.key_activation_delay_seconds as i64);
        let life = max_token_life(state, &tenant);
        let t = slug.clone();
        let done = state
            .db
            .transaction(move |c| {
                keys::lock_tenant_keys(c, &t)?;
                let newest = key_rows::all(c, &t)?.first().map(|k| k.created_at);
                if newest.is_some_and(|n| n >= cutoff) {
                    return Ok(false);
                }
                keys::rotate(c, &master, &t, alg, delay, life)?;
                Ok(true)
            })
            .await?;
        if done {
            state.changed(Change::Keys(slug.clone())).await?;
            super::audit::record(
                state,
                &slug,
                "key.rotate",
                "success",
                None,
                &Origin {
                    actor: Some("latchkey".to_owned()),
                    ..Origin::default()
                },
            )
            .await;
            rotated += 1;
        }
    }
    Ok(rotated)
}

/// Checks for due rotations every hour for as long as the process lives.
pub fn spawn_rotation(state: Arc<AppState>) {
    use futures_util::FutureExt;
    // A weak reference: the task never keeps the state alive after
    // shutdown; it ends when the state is gone.
    let weak = Arc::downgrade(&state);
    drop(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            // A panic in one round is reported and the schedule goes on.
            let round = std::panic::AssertUnwindSafe(rotate_due(&state)).catch_unwind();
            match round.await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(rotated = n, "signing keys rotated on schedule"),
                Ok(Err(e)) => tracing::warn!(error = %e, "scheduled key rotation failed"),
                Err(_) => {
                    tracing::error!("scheduled key rotation panicked; trying again in an hour")
                }
            }
        }
    });
}
