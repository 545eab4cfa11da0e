//! Account lockout around every password check (SPEC §7): an attempt is
//! counted as failed before its password is verified, so parallel guesses
//! cannot outrun the lock; a locked account's attempt is checked against a
//! dummy hash (same time, same answer as a wrong password); a success clears
//! the count.

use super::{Origin, unix_now};
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::db::tenants::Tenant;
use crate::store::session::{LockoutPolicy, LoginAttempt};

/// An attempt counted before its password is verified.
#[derive(Debug, Clone, Copy)]
pub struct Reserved {
    attempt: LoginAttempt,
    now: i64,
}

impl Reserved {
    /// Whether the password may be checked against the account's own hash:
    /// false when the account was locked before this attempt.
    pub fn admitted(&self) -> bool {
        self.attempt.counted
    }
}

/// Counts one attempt on the account `lock_id` as failed, before checking.
pub async fn reserve(state: &AppState, tenant: &Tenant, lock_id: &str) -> AppResult<Reserved> {
    let now = unix_now();
    let policy = LockoutPolicy::with_threshold(tenant.settings.lockout_threshold);
    let attempt = state
        .sessions
        .login_failed(&tenant.slug, lock_id, &policy, now)
        .await?;
    Ok(Reserved { attempt, now })
}

/// The password was right: forget the failures (the reserved one included).
pub async fn succeeded(state: &AppState, tenant: &Tenant, user_id: &str) -> AppResult<()> {
    state
        .sessions
        .clear_login_failures(&tenant.slug, user_id)
        .await?;
    Ok(())
}

/// The attempt failed: when it was the one that locked a real account,
/// record that (audit `login.locked`, metric, log).
pub async fn failed(
    state: &AppState,
    tenant: &Tenant,
    user_id: Option<&str>,
    reserved: Reserved,
    origin: &Origin,
) {
    let Reserved { attempt, now } = reserved;
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
}
