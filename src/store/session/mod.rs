//! The session store: sessions, refresh-token families, the `jti` deny-list,
//! the per-user session index and cut-off, and sign-in lockout counters.
//! Redis in production, in-process in embedded mode; both keep the same
//! semantics and TTLs (one conformance suite runs on both).
//!
//! Revocation is recorded against what it cuts off, never as a flag on a
//! reusable name: a session's state, a family's status, a `jti`, and each
//! user's *cut-off generation*. Every session remembers the generation of
//! its user when it was created; ending all of a user's sessions raises the
//! generation in one step, so a session the index missed, or one created
//! concurrently, is over all the same (SPEC §4).

mod memory;
mod redis;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use self::memory::MemoryStore;
pub use self::redis::{RedisStore, Topology, spawn_change_listener};
use super::StoreError;

/// One sign-in of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub last_used_at: i64,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Why a session ended; decides the 401 code its access tokens get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Logout, password change, admin revoke, refresh-token reuse.
    Revoked,
    /// The user was disabled or the tenant suspended.
    Disabled,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
        }
    }
}

impl EndReason {
    fn parse(s: &str) -> Self {
        if s == "disabled" {
            Self::Disabled
        } else {
            Self::Revoked
        }
    }
}

/// What the deny-list, session state and user cut-off say about an access
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessState {
    Active,
    /// `jti` denied, or its session ended, expired or was cut off.
    Revoked,
    /// The session ended because the user was disabled or the tenant suspended.
    Disabled,
    /// The store has not been given the tenant's durable denials since it
    /// last lost its data (or ever): it must be refilled before it can say.
    Unsynced,
}

/// How a user's sessions are ended at once.
#[derive(Debug, Clone, Copy)]
pub struct UserCut<'a> {
    /// A session of the user that survives (password change keeps the
    /// caller's own session).
    pub except: Option<&'a str>,
    pub reason: EndReason,
    /// How long ended sessions' state lingers (seconds), so their access
    /// tokens get the right answer until they expire.
    pub linger: u64,
    /// How long a session of the user can live at most (seconds): a cut-off
    /// written for a user without one lives at least this long, so it
    /// outlives every session it ends.
    pub lifetime: u64,
}

/// Sessions per page when a user's sessions are listed or ended: no store
/// call walks more than this many at once.
pub const SESSION_PAGE: usize = 100;

/// Seconds a cut-off written for a user without one is kept at least: long
/// enough for any sign-in already past its user lookup to see it, whatever
/// `UserCut::lifetime` says.
pub const CUT_MIN_TTL: u64 = 600;

/// The generation of an active session state (`active:{generation}`; plain
/// `active` from earlier versions is generation 0), or `None` when it is over.
fn active_generation(state: &str) -> Option<u64> {
    let rest = state.strip_prefix("active")?;
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(':')?;
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse().ok()
}

/// A user's cut-off (`{generation}:{reason}`): generation 0 when none.
fn parse_cutoff(cutoff: Option<&str>) -> (u64, EndReason) {
    let Some(value) = cutoff.filter(|v| !v.is_empty()) else {
        return (0, EndReason::Revoked);
    };
    let (generation, reason) = value.split_once(':').unwrap_or((value, "revoked"));
    (generation.parse().unwrap_or(0), EndReason::parse(reason))
}

/// Where a session stands, from its state value and its user's cut-off
/// value: the one rule both stores (and every Lua script) apply.
pub(crate) fn standing(state: Option<&str>, cutoff: Option<&str>) -> AccessState {
    let Some(state) = state.filter(|s| !s.is_empty()) else {
        return AccessState::Revoked;
    };
    match active_generation(state) {
        Some(generation) => {
            let (cut, reason) = parse_cutoff(cutoff);
            if generation >= cut {
                AccessState::Active
            } else if reason == EndReason::Disabled {
                AccessState::Disabled
            } else {
                AccessState::Revoked
            }
        }
        None if state == "disabled" => AccessState::Disabled,
        None => AccessState::Revoked,
    }
}

/// A refresh token, stored under the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family_id: String,
    pub session_id: String,
    pub client_id: String,
    pub user_id: String,
    /// Unix seconds after which this token is dead (idle timeout, capped by
    /// the family's absolute lifetime).
    pub expires_at: i64,
    /// Unix seconds at which the family ends, whatever its use.
    pub family_expires_at: i64,
    /// The scope the family was granted.
    pub scope: String,
    /// The generation of the client when the family began (see
    /// `Client::generation`): a family of an earlier generation is dead.
    pub client_generation: String,
}

/// Where a presented refresh token stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshState {
    /// The family's newest token: may be rotated.
    Current,
    /// Already rotated. `successor_is_current` tells whether it is the token
    /// right before the family's newest one (grace window candidate).
    Rotated {
        rotated_at: i64,
        successor_is_current: bool,
        /// The successor pair, sealed with a key derived from this token.
        sealed_successor: Option<String>,
    },
}

/// A refresh token with its family's standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshEntry {
    pub record: RefreshRecord,
    pub state: RefreshState,
    /// False once the family was revoked (reuse detected).
    pub family_active: bool,
    /// False once the session ended or its user was cut off.
    pub session_active: bool,
}

/// The result of an atomic rotation attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateOutcome {
    Rotated,
    /// Another request rotated the token first.
    LostRace,
    /// The family or the session was revoked meanwhile.
    Revoked,
}

/// A successful rotation's inputs.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    pub old_hash: &'a str,
    pub new_hash: &'a str,
    pub new_record: &'a RefreshRecord,
    pub sealed_successor: &'a str,
    pub now: i64,
    /// How long the sealed successor is kept (seconds): the grace window.
    pub grace_seconds: u64,
}

/// A refresh token as presented: the SHA-256 of its value, and the family
/// the value names (tokens of this version; `None` for earlier ones).
#[derive(Debug, Clone, Copy)]
pub struct PresentedRefresh<'a> {
    pub hash: &'a str,
    pub family_id: Option<&'a str>,
}

/// Failed sign-ins of one account, and its lock (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginLock {
    /// Failures counted in the current window.
    pub failures: u32,
    /// Unix seconds until which sign-in is refused; 0 when never locked.
    pub locked_until: i64,
    /// Locks so far; each one doubles the next.
    pub level: u32,
}

/// One counted sign-in attempt: the account's state after it, and whether
/// it was counted (false when the account was already locked: such an
/// attempt is refused without looking at the password).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginAttempt {
    pub lock: LoginLock,
    pub counted: bool,
}

/// The answer to reserving a sign-in attempt before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The password may be checked against the account's hash.
    Admitted,
    /// Failures plus attempts in flight reach the threshold: ask again once
    /// those have been decided.
    Wait,
    /// The account is locked: refuse without checking.
    Locked,
}

/// How long an admitted attempt counts as in flight at most (seconds), even
/// if its instance never reports how it ended.
pub const ATTEMPT_TTL: u64 = 30;

impl LoginLock {
    pub fn is_locked(&self, now: i64) -> bool {
        self.locked_until > now
    }
}

/// When failures lock an account, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window_seconds` that lock the account.
    pub threshold: u32,
    pub window_seconds: i64,
    /// The first lock; each further lock doubles it, up to `max_lock_seconds`.
    pub base_lock_seconds: i64,
    pub max_lock_seconds: i64,
    /// How long the lock level is remembered after the last failure.
    pub memory_seconds: i64,
}

impl LockoutPolicy {
    /// SPEC §7: `threshold` failures in 15 minutes lock for 1 minute,
    /// doubling on each further lock up to 1 hour.
    pub fn with_threshold(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            window_seconds: 15 * 60,
            base_lock_seconds: 60,
            max_lock_seconds: 3600,
            memory_seconds: 24 * 3600,
        }
    }

    /// Length of the lock number `level` (0-based).
    pub fn lock_seconds(&self, level: u32) -> i64 {
        let doubled = self
            .base_lock_seconds
            .saturating_mul(1i64.checked_shl(level.min(62)).unwrap_or(i64::MAX));
        doubled.min(self.max_lock_seconds)
    }

    /// The state after one more failure at `now` (shared by both stores; the
    /// Redis store runs the same steps in Lua).
    pub fn after_failure(
        &self,
        mut lock: LoginLock,
        window_start: i64,
        now: i64,
    ) -> (LoginLock, i64) {
        if lock.is_locked(now) {
            // Attempts during a lock are refused without counting.
            return (lock, window_start);
        }
        let mut window_start = window_start;
        if lock.failures == 0 || now - window_start >= self.window_seconds {
            lock.failures = 0;
            window_start = now;
        }
        lock.failures += 1;
        if lock.failures >= self.threshold {
            lock.locked_until = now + self.lock_seconds(lock.level);
            lock.level += 1;
            lock.failures = 0;
        }
        (lock, window_start)
    }
}

/// The short-lived records of browser sign-in (SPEC §9). Each kind lives
/// under its own key prefix (`ltx:`, `code:`, `bsess:`) in the tenant's space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ephemeral {
    /// A sign-in transaction (the authorize parameters), by its random id.
    SignIn,
    /// An authorization code, by the SHA-256 of its value.
    Code,
    /// A browser session (SSO cookie), by the SHA-256 of the cookie's secret.
    Browser,
}

impl Ephemeral {
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Self::SignIn => "ltx",
            Self::Code => "code",
            Self::Browser => "bsess",
        }
    }
}

/// What taking a single-use record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// First use: the record's value.
    Fresh(String),
    /// Used before: the mark the first use left.
    Used(String),
    /// Never stored, or expired.
    Missing,
}

/// How an ephemeral value is stored: fresh values and the marks of used
/// ones cannot be confused.
const FRESH: &str = "new:";
const USED: &str = "used:";

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Records a new active session under the user's current cut-off
    /// generation. `ttl` (seconds) bounds how long it can live. When the
    /// user then holds more than `max_sessions` sessions, the oldest are
    /// ended (`linger` seconds of state); their ids are answered.
    async fn create_session(
        &self,
        tenant: &str,
        session: &SessionRecord,
        ttl: u64,
        max_sessions: usize,
        linger: u64,
    ) -> Result<Vec<String>, StoreError>;

    /// The session if it is still active.
    async fn get_session(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// The user's active sessions, oldest first (read page by page; ids of
    /// sessions that are over are dropped from the index on the way).
    async fn list_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Updates `last_used_at` of an active session.
    async fn touch_session(&self, tenant: &str, sid: &str, now: i64) -> Result<(), StoreError>;

    /// Ends one session; its state lingers `linger` seconds so access tokens
    /// of it get the right answer until they expire. Returns whether it was active.
    async fn end_session(
        &self,
        tenant: &str,
        sid: &str,
        reason: EndReason,
        linger: u64,
    ) -> Result<bool, StoreError>;

    /// Ends every session of a user but `cut.except`: raises the user's
    /// cut-off generation (atomic: no session of the user created before
    /// this call survives it, listed or not), then ends the indexed
    /// sessions page by page. Returns how many active sessions ended.
    async fn end_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        cut: UserCut<'_>,
    ) -> Result<usize, StoreError>;

    /// Starts a family with its first token (by hash). A family keeps only
    /// its current token and the one before it; tokens name their family.
    async fn start_family(
        &self,
        tenant: &str,
        hash: &str,
        record: &RefreshRecord,
    ) -> Result<(), StoreError>;

    /// Looks a presented refresh token up: the family's current token, the
    /// one it replaced (`Rotated` with `successor_is_current`, and its sealed
    /// successor during the grace window), or an older token of the family
    /// (`Rotated`, reuse); `None` when no family knows it.
    async fn get_refresh(
        &self,
        tenant: &str,
        presented: PresentedRefresh<'_>,
    ) -> Result<Option<RefreshEntry>, StoreError>;

    /// Atomically replaces the family's current token: succeeds only if
    /// `old_hash` is still current and the family and session are active.
    /// The sealed successor is kept for `grace_seconds` only.
    async fn rotate_refresh(
        &self,
        tenant: &str,
        rotation: Rotation<'_>,
    ) -> Result<RotateOutcome, StoreError>;

    /// Revokes a family; its tokens are refused from now on.
    async fn revoke_family(&self, tenant: &str, family_id: &str) -> Result<(), StoreError>;

    /// Denies one access token until it would have expired.
    async fn deny_jti(&self, tenant: &str, jti: &str, ttl: u64) -> Result<(), StoreError>;

    /// The deny-list, session state and user cut-off of an access token, in
    /// one round trip. `session` is `(sid, user_id)` for user tokens. A
    /// denied `jti` is `Revoked`; otherwise a store that lost the tenant's
    /// denials answers `Unsynced`.
    async fn access_state(
        &self,
        tenant: &str,
        jti: &str,
        session: Option<(&str, &str)>,
    ) -> Result<AccessState, StoreError>;

    /// Records that the tenant's durable denials were copied in: until the
    /// store loses its data, `access_state` answers without `Unsynced`.
    async fn mark_synced(&self, tenant: &str) -> Result<(), StoreError>;

    /// Whether `mark_synced` holds for the tenant.
    async fn is_synced(&self, tenant: &str) -> Result<bool, StoreError>;

    /// Tells every other instance about a change (no-op in process).
    async fn publish_change(&self, message: &str) -> Result<(), StoreError>;

    /// Removes every key of a deleted tenant.
    async fn purge_tenant(&self, tenant: &str) -> Result<(), StoreError>;

    /// The failed-login state of an account.
    async fn login_lock(&self, tenant: &str, user_id: &str) -> Result<LoginLock, StoreError>;

    /// Counts one sign-in attempt as failed, atomically (every instance
    /// shares the count), *before* its password is verified, so a burst of
    /// parallel guesses cannot outrun the lock; a success then clears the
    /// count. Answers the new state (locked when the attempt reached the
    /// threshold) and whether the attempt was counted (not when the account
    /// was already locked). `attempt_id` is the reservation's: the same
    /// attempt reported again (a retry after its reply was lost) is counted
    /// once.
    async fn login_failed(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<LoginAttempt, StoreError>;

    /// Reserves one sign-in attempt (`attempt_id`, unique) before its
    /// password is checked: admitted while the window's failures plus the
    /// attempts in flight stay below `policy.threshold`. An admitted attempt
    /// is released with `release_login_attempt` once decided.
    async fn reserve_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<Reservation, StoreError>;

    /// Ends an admitted attempt's reservation (after counting its failure,
    /// or after a success).
    async fn release_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
    ) -> Result<(), StoreError>;

    /// Forgets failures and lock (successful sign-in, admin unlock).
    async fn clear_login_failures(&self, tenant: &str, user_id: &str) -> Result<(), StoreError>;

    /// What the store holds for a tenant: `(keys, bytes)` (Redis: `MEMORY
    /// USAGE` of each key; in process: an estimate of the same). For
    /// operators sizing the store, and for tests bounding growth.
    async fn tenant_footprint(&self, tenant: &str) -> Result<(usize, u64), StoreError>;

    /// Stores a short-lived record for `ttl` seconds (replacing one of the
    /// same id).
    async fn put_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        value: &str,
        ttl: u64,
    ) -> Result<(), StoreError>;

    /// A record that is neither expired nor taken.
    async fn get_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Forgets a record.
    async fn delete_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<(), StoreError>;

    /// Takes a single-use record atomically: the first call answers
    /// [`Taken::Fresh`] and leaves `mark` in its place for `mark_ttl`
    /// seconds; every later call answers [`Taken::Used`] with that mark (so
    /// a replay can undo what the first use issued). `mark` must be unique
    /// to the call and hold no line break: the same call made again (a
    /// retry after its reply was lost) answers [`Taken::Fresh`] again.
    async fn take_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        mark: &str,
        mark_ttl: u64,
    ) -> Result<Taken, StoreError>;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// A stored ephemeral value as [`Taken`]: `new:{value}`, or
/// `used:{mark}\n{value}` once taken.
fn taken_of(stored: Option<&str>) -> Taken {
    match stored {
        Some(v) => match v.strip_prefix(FRESH) {
            Some(fresh) => Taken::Fresh(fresh.to_owned()),
            None => {
                let used = v.strip_prefix(USED).unwrap_or_default();
                let mark = used.split_once('\n').map_or(used, |(mark, _)| mark);
                Taken::Used(mark.to_owned())
            }
        },
        None => Taken::Missing,
    }
}

/// What a record taken by `mark` becomes: the mark, then the value, so the
/// same call made again answers the value again.
fn used_by(mark: &str, fresh: &str) -> String {
    format!("{USED}{mark}\n{fresh}")
}
