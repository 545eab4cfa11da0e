//! Account lockout around every password check (SPEC §7). An attempt is
//! reserved before its password is checked: admitted while the window's
//! failures plus the attempts in flight stay below the threshold, so a burst
//! of parallel guesses cannot all be checked before the lock engages, while
//! legitimate parallel sign-ins wait a moment for the others to finish. A
//! locked account's attempt is checked against the dummy hash (same time,
//! same answer as a wrong password); a success clears the count.

use std::time::{Duration, Instant};

use super::{Origin, unix_now};
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::db::tenants::Tenant;
use crate::store::session::{LockoutPolicy, Reservation};

/// The longest an attempt waits for the attempts in flight before it.
const MAX_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// A reserved attempt on one account (or on the shared id of unknown e-mails).
#[derive(Debug, Clone)]
pub struct Reserved {
    lock_id: String,
    attempt_id: String,
    admitted: bool,
}

impl Reserved {
    /// Whether the password may be checked against the account's own hash.
    pub fn admitted(&self) -> bool {
        self.admitted
    }
}

/// Reserves one attempt on `lock_id` before its password is checked.
pub async fn reserve(state: &AppState, tenant: &Tenant, lock_id: &str) -> AppResult<Reserved> {
    let policy = LockoutPolicy::with_threshold(tenant.settings.lockout_threshold);
    let attempt_id = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let admitted = loop {
        match state
            .sessions
            .reserve_login_attempt(&tenant.slug, lock_id, &attempt_id, &policy, unix_now())
            .await?
        {
            Reservation::Admitted => break true,
            Reservation::Locked => break false,
            Reservation::Wait if started.elapsed() >= MAX_WAIT => break false,
            Reservation::Wait => tokio::time::sleep(POLL).await,
        }
    };
    Ok(Reserved {
        lock_id: lock_id.to_owned(),
        attempt_id,
        admitted,
    })
}

/// The password was right: forget the failures and end the reservation.
pub async fn succeeded(state: &AppState, tenant: &Tenant, reserved: &Reserved) -> AppResult<()> {
    let cleared = state
        .sessions
        .clear_login_failures(&tenant.slug, &reserved.lock_id)
        .await;
    release(state, tenant, reserved).await?;
    Ok(cleared?)
}

/// The attempt ended in an error before it was decided: end the reservation
/// so it does not hold a place until it expires.
pub async fn abandoned(state: &AppState, tenant: &Tenant, reserved: &Reserved) {
    let _ = release(state, tenant, reserved).await;
}

/// The attempt failed: count it (attempts refused during a lock are not
/// counted), end the reservation, and when it locked a real account record
/// that (audit `login.locked`, metric, log).
pub async fn failed(
    state: &AppState,
    tenant: &Tenant,
    user_id: Option<&str>,
    reserved: &Reserved,
    origin: &Origin,
) -> AppResult<()> {
    if !reserved.admitted {
        return Ok(());
    }
    let now = unix_now();
    let policy = LockoutPolicy::with_threshold(tenant.settings.lockout_threshold);
    let counted = state
        .sessions
        .login_failed(
            &tenant.slug,
            &reserved.lock_id,
            &reserved.attempt_id,
            &policy,
            now,
        )
        .await;
    // Released whether or not the count could be written.
    release(state, tenant, reserved).await?;
    let attempt = counted?;
    if let Some(id) = user_id
        && attempt.counted
        && attempt.lock.is_locked(now)
    {
        crate::metrics::account_locked();
        tracing::info!(
            tenant = %tenant.slug,
            user_id = %id,
            locked_for_seconds = attempt.lock.locked_until - now,
            "account locked after repeated failed sign-ins"
        );
        super::audit::record(
            state,
            &tenant.slug,
            "login.locked",
            "failure",
            user_id,
            origin,
        )
        .await;
    }
    Ok(())
}

async fn release(state: &AppState, tenant: &Tenant, reserved: &Reserved) -> AppResult<()> {
    if reserved.admitted {
        state
            .sessions
            .release_login_attempt(&tenant.slug, &reserved.lock_id, &reserved.attempt_id)
            .await?;
    }
    Ok(())
}
