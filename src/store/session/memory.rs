//! The in-process session store of embedded mode: the same keys, values,
//! semantics and TTLs as the Redis store and its scripts, behind one mutex
//! (every operation is short and never awaits while holding it).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    ATTEMPT_TTL, AccessState, CUT_MIN_TTL, EndReason, LockoutPolicy, LoginAttempt, LoginLock,
    PresentedRefresh, RefreshEntry, RefreshRecord, RefreshState, Reservation, RotateOutcome,
    Rotation, SessionRecord, SessionStore, UserCut, active_generation, parse_cutoff, standing,
};
use super::{Ephemeral, FRESH, Taken, taken_of, used_by};
use crate::store::StoreError;

#[derive(Debug, Clone)]
struct Expiring<T> {
    value: T,
    until: Option<Instant>,
}

impl<T> Expiring<T> {
    fn live(&self, now: Instant) -> bool {
        self.until.is_none_or(|u| u > now)
    }
}

/// A refresh-token family (`fam:{family}` in Redis).
#[derive(Debug, Clone)]
struct Family {
    record: RefreshRecord,
    current: String,
    /// The token the current one replaced, and when.
    prev: Option<(String, i64)>,
    active: bool,
}

/// The same keys and values as the Redis store (see `redis.rs`).
#[derive(Default)]
struct Inner {
    /// Session state: `active:{generation}` | `revoked` | `disabled`.
    state: HashMap<String, Expiring<String>>,
    sessions: HashMap<String, Expiring<SessionRecord>>,
    /// The user's session ids by creation time (Redis: a sorted set).
    user_sessions: HashMap<String, Expiring<BTreeSet<(i64, String)>>>,
    /// User cut-offs: `{generation}:{reason}`.
    cuts: HashMap<String, Expiring<String>>,
    families: HashMap<String, Expiring<Family>>,
    /// Sealed successor pairs, for the grace window only.
    grace: HashMap<String, Expiring<String>>,
    denied: HashMap<String, Expiring<()>>,
    /// Tenants whose durable denials were copied in.
    synced: std::collections::HashSet<String>,
    /// Failed sign-ins: (state, window start).
    /// Per user: the lock, its window's start, the last failed attempt counted.
    locks: HashMap<String, Expiring<(LoginLock, i64, String)>>,
    /// Sign-in attempts in flight: attempt id -> expiry (Unix seconds).
    pending: HashMap<String, HashMap<String, i64>>,
    /// Codes and browser sessions (`FRESH`/`USED` values).
    ephemeral: HashMap<String, Expiring<String>>,
    /// Sign-in transactions, which anyone may start: at most [`MAX_SIGN_INS`].
    sign_ins: HashMap<String, Expiring<String>>,
    writes: u64,
}

/// Open sign-in transactions held at most, all tenants together.
const MAX_SIGN_INS: usize = 50_000;

fn key(tenant: &str, kind: &str, id: &str) -> String {
    format!("{tenant}\u{0}{kind}\u{0}{id}")
}

fn after(seconds: u64) -> Option<Instant> {
    Instant::now().checked_add(Duration::from_secs(seconds))
}

fn until_unix(unix: i64) -> Option<Instant> {
    let remaining = unix.saturating_sub(chrono::Utc::now().timestamp()).max(0) as u64;
    after(remaining)
}

impl Inner {
    fn get_live<'a, T>(map: &'a HashMap<String, Expiring<T>>, k: &str) -> Option<&'a T> {
        let now = Instant::now();
        map.get(k).filter(|e| e.live(now)).map(|e| &e.value)
    }

    /// Drops expired entries now and then, so memory stays bounded.
    fn after_write(&mut self) {
        self.writes += 1;
        if !self.writes.is_multiple_of(4096) {
            return;
        }
        let now = Instant::now();
        self.state.retain(|_, e| e.live(now));
        self.sessions.retain(|_, e| e.live(now));
        self.grace.retain(|_, e| e.live(now));
        self.families.retain(|_, e| e.live(now));
        self.denied.retain(|_, e| e.live(now));
        self.locks.retain(|_, e| e.live(now));
        self.cuts.retain(|_, e| e.live(now));
        self.ephemeral.retain(|_, e| e.live(now));
        self.sign_ins.retain(|_, e| e.live(now));
        self.user_sessions
            .retain(|_, e| e.live(now) && !e.value.is_empty());
    }

    /// The map a kind of short-lived record lives in.
    fn ephemeral_of(&mut self, kind: Ephemeral) -> &mut HashMap<String, Expiring<String>> {
        match kind {
            Ephemeral::SignIn => &mut self.sign_ins,
            Ephemeral::Code | Ephemeral::Browser => &mut self.ephemeral,
        }
    }

    /// Keeps open sign-ins (which anyone may start) under [`MAX_SIGN_INS`]:
    /// expired ones go first, then those closest to expiry, down to nine
    /// tenths, so memory stays bounded whatever arrives.
    fn bound_sign_ins(&mut self) {
        if self.sign_ins.len() < MAX_SIGN_INS {
            return;
        }
        let now = Instant::now();
        self.sign_ins.retain(|_, e| e.live(now));
        if self.sign_ins.len() < MAX_SIGN_INS {
            return;
        }
        let mut by_expiry: Vec<(Option<Instant>, String)> = self
            .sign_ins
            .iter()
            .map(|(k, e)| (e.until, k.clone()))
            .collect();
        by_expiry.sort();
        let excess = self.sign_ins.len() - MAX_SIGN_INS * 9 / 10;
        for (_, k) in by_expiry.into_iter().take(excess) {
            self.sign_ins.remove(&k);
        }
    }

    fn cutoff(&self, tenant: &str, user: &str) -> Option<&str> {
        Self::get_live(&self.cuts, &key(tenant, "ucut", user)).map(String::as_str)
    }

    fn state_of(&self, tenant: &str, sid: &str) -> Option<&str> {
        Self::get_live(&self.state, &key(tenant, "sst", sid)).map(String::as_str)
    }

    /// Whether a session is active and not cut off.
    fn session_live(&self, tenant: &str, sid: &str, user: &str) -> bool {
        standing(self.state_of(tenant, sid), self.cutoff(tenant, user)) == AccessState::Active
    }

    fn set_state(&mut self, tenant: &str, sid: &str, value: &str, linger: u64) {
        self.state.insert(
            key(tenant, "sst", sid),
            Expiring {
                value: value.to_owned(),
                until: after(linger.max(1)),
            },
        );
    }

    /// Marks a session over and forgets its record (`end_session.lua`).
    fn end(&mut self, tenant: &str, sid: &str, reason: EndReason, linger: u64) -> bool {
        if self
            .state_of(tenant, sid)
            .and_then(active_generation)
            .is_none()
        {
            return false;
        }
        let user =
            Self::get_live(&self.sessions, &key(tenant, "sess", sid)).map(|s| s.user_id.clone());
        let was = user
            .as_deref()
            .is_none_or(|u| self.session_live(tenant, sid, u));
        self.set_state(tenant, sid, reason.as_str(), linger);
        if let Some(s) = self.sessions.remove(&key(tenant, "sess", sid))
            && let Some(set) = self
                .user_sessions
                .get_mut(&key(tenant, "usess", &s.value.user_id))
        {
            set.value.remove(&(s.value.created_at, sid.to_owned()));
        }
        was
    }

    /// The user's index, oldest first, when it has not expired.
    fn index(&self, tenant: &str, user: &str) -> Vec<(i64, String)> {
        Self::get_live(&self.user_sessions, &key(tenant, "usess", user))
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn unindex(&mut self, tenant: &str, user: &str, entry: &(i64, String)) {
        if let Some(set) = self.user_sessions.get_mut(&key(tenant, "usess", user)) {
            set.value.remove(entry);
        }
    }
}

/// Sets a TTL only ever longer (`grow` in `lua/prelude.lua`).
fn grow(until: &mut Option<Instant>, seconds: u64) {
    let wanted = after(seconds);
    if let (Some(current), Some(wanted)) = (*until, wanted)
        && current < wanted
    {
        *until = Some(wanted);
    }
}

/// Sessions and tokens in this process only: for embedded mode and tests.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create_session(
        &self,
        tenant: &str,
        session: &SessionRecord,
        ttl: u64,
        max_sessions: usize,
        linger: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut inner = self.inner.lock();
        let ttl = ttl.max(1);
        let user = &session.user_id;
        let cut_key = key(tenant, "ucut", user);
        let generation = match inner
            .cuts
            .get_mut(&cut_key)
            .filter(|e| e.live(Instant::now()))
        {
            Some(e) => {
                grow(&mut e.until, ttl);
                parse_cutoff(Some(&e.value)).0
            }
            None => {
                inner.cuts.insert(
                    cut_key,
                    Expiring {
                        value: "0:revoked".to_owned(),
                        until: after(ttl),
                    },
                );
                0
            }
        };
        inner.set_state(tenant, &session.id, &format!("active:{generation}"), ttl);
        inner.sessions.insert(
            key(tenant, "sess", &session.id),
            Expiring {
                value: session.clone(),
                until: after(ttl),
            },
        );
        let index_key = key(tenant, "usess", user);
        let now = Instant::now();
        let index = inner
            .user_sessions
            .entry(index_key.clone())
            .and_modify(|e| {
                if e.live(now) {
                    grow(&mut e.until, ttl);
                } else {
                    *e = Expiring {
                        value: BTreeSet::new(),
                        until: after(ttl),
                    };
                }
            })
            .or_insert_with(|| Expiring {
                value: BTreeSet::new(),
                until: after(ttl),
            });
        index.value.insert((session.created_at, session.id.clone()));
        let mut ended = Vec::new();
        if inner
            .user_sessions
            .get(&index_key)
            .is_some_and(|e| e.value.len() > max_sessions.max(1))
        {
            // Only live sessions count (as in create_session.lua).
            for entry in inner.index(tenant, user) {
                if !inner.session_live(tenant, &entry.1, user) {
                    inner.unindex(tenant, user, &entry);
                }
            }
        }
        while inner
            .user_sessions
            .get(&index_key)
            .is_some_and(|e| e.value.len() > max_sessions.max(1))
        {
            let Some(oldest) = inner
                .user_sessions
                .get_mut(&index_key)
                .and_then(|e| e.value.pop_first())
            else {
                break;
            };
            let sid = oldest.1;
            if inner.session_live(tenant, &sid, user) {
                inner.set_state(tenant, &sid, EndReason::Revoked.as_str(), linger);
                inner.sessions.remove(&key(tenant, "sess", &sid));
                ended.push(sid);
            }
        }
        inner.after_write();
        Ok(ended)
    }

    async fn get_session(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let inner = self.inner.lock();
        let Some(session) = Inner::get_live(&inner.sessions, &key(tenant, "sess", sid)) else {
            return Ok(None);
        };
        Ok(inner
            .session_live(tenant, sid, &session.user_id)
            .then(|| session.clone()))
    }

    async fn list_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        for entry in inner.index(tenant, user_id) {
            let record = inner
                .session_live(tenant, &entry.1, user_id)
                .then(|| Inner::get_live(&inner.sessions, &key(tenant, "sess", &entry.1)).cloned())
                .flatten();
            match record {
                Some(r) => out.push(r),
                None => inner.unindex(tenant, user_id, &entry),
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn touch_session(&self, tenant: &str, sid: &str, now: i64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if let Some(e) = inner.sessions.get_mut(&key(tenant, "sess", sid)) {
            e.value.last_used_at = now;
        }
        Ok(())
    }

    async fn end_session(
        &self,
        tenant: &str,
        sid: &str,
        reason: EndReason,
        linger: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.inner.lock();
        let ended = inner.end(tenant, sid, reason, linger);
        inner.after_write();
        Ok(ended)
    }

    async fn end_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        cut: UserCut<'_>,
    ) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        // cut_user.lua
        let cut_key = key(tenant, "ucut", user_id);
        let now = Instant::now();
        let existing = inner.cuts.get(&cut_key).filter(|e| e.live(now)).cloned();
        let generation = parse_cutoff(existing.as_ref().map(|e| e.value.as_str())).0 + 1;
        let value = format!("{generation}:{}", cut.reason.as_str());
        let until = match existing {
            Some(e) => e.until,
            None => after(cut.lifetime.max(cut.linger).max(CUT_MIN_TTL)),
        };
        if let Some(sid) = cut.except {
            let carried = inner
                .state_of(tenant, sid)
                .and_then(active_generation)
                .is_some_and(|g| g + 1 >= generation);
            if carried && let Some(e) = inner.state.get_mut(&key(tenant, "sst", sid)) {
                e.value = format!("active:{generation}");
            }
        }
        inner.cuts.insert(cut_key, Expiring { value, until });
        // end_page.lua, over the whole index at once
        let mut ended = 0;
        for entry in inner.index(tenant, user_id) {
            let sid = &entry.1;
            if Some(sid.as_str()) == cut.except {
                continue;
            }
            match inner.state_of(tenant, sid).and_then(active_generation) {
                None => inner.unindex(tenant, user_id, &entry),
                Some(g) if g < generation => {
                    inner.set_state(tenant, sid, cut.reason.as_str(), cut.linger);
                    inner.sessions.remove(&key(tenant, "sess", sid));
                    inner.unindex(tenant, user_id, &entry);
                    if g + 1 == generation {
                        ended += 1;
                    }
                }
                Some(_) => {}
            }
        }
        inner.after_write();
        Ok(ended)
    }

    async fn start_family(
        &self,
        tenant: &str,
        hash: &str,
        record: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        inner.families.insert(
            key(tenant, "fam", &record.family_id),
            Expiring {
                value: Family {
                    record: record.clone(),
                    current: hash.to_owned(),
                    prev: None,
                    active: true,
                },
                until: until_unix(record.family_expires_at),
            },
        );
        inner.after_write();
        Ok(())
    }

    async fn get_refresh(
        &self,
        tenant: &str,
        presented: PresentedRefresh<'_>,
    ) -> Result<Option<RefreshEntry>, StoreError> {
        // Tokens of earlier versions never outlive the process that made them.
        let Some(family_id) = presented.family_id else {
            return Ok(None);
        };
        let inner = self.inner.lock();
        let Some(family) = Inner::get_live(&inner.families, &key(tenant, "fam", family_id)) else {
            return Ok(None);
        };
        let state = match &family.prev {
            _ if family.current == presented.hash => RefreshState::Current,
            Some((prev, at)) if prev == presented.hash => RefreshState::Rotated {
                rotated_at: *at,
                successor_is_current: true,
                sealed_successor: Inner::get_live(&inner.grace, &key(tenant, "grace", family_id))
                    .cloned(),
            },
            _ => RefreshState::Rotated {
                rotated_at: 0,
                successor_is_current: false,
                sealed_successor: None,
            },
        };
        let r = &family.record;
        Ok(Some(RefreshEntry {
            family_active: family.active,
            session_active: inner.session_live(tenant, &r.session_id, &r.user_id),
            record: r.clone(),
            state,
        }))
    }

    async fn rotate_refresh(
        &self,
        tenant: &str,
        r: Rotation<'_>,
    ) -> Result<RotateOutcome, StoreError> {
        let mut inner = self.inner.lock();
        let n = r.new_record;
        let fam_key = key(tenant, "fam", &n.family_id);
        let Some(family) = Inner::get_live(&inner.families, &fam_key) else {
            return Ok(RotateOutcome::LostRace);
        };
        if family.current == r.new_hash
            && family
                .prev
                .as_ref()
                .is_some_and(|(prev, _)| prev == r.old_hash)
        {
            // The same rotation again: the new hash is unique to it.
            return Ok(RotateOutcome::Rotated);
        }
        if family.current != r.old_hash {
            return Ok(RotateOutcome::LostRace);
        }
        if !family.active || !inner.session_live(tenant, &n.session_id, &n.user_id) {
            return Ok(RotateOutcome::Revoked);
        }
        if let Some(e) = inner.families.get_mut(&fam_key) {
            e.value = Family {
                record: n.clone(),
                current: r.new_hash.to_owned(),
                prev: Some((r.old_hash.to_owned(), r.now)),
                active: true,
            };
            e.until = until_unix(n.family_expires_at);
        }
        inner.grace.insert(
            key(tenant, "grace", &n.family_id),
            Expiring {
                value: r.sealed_successor.to_owned(),
                until: after(r.grace_seconds + 2),
            },
        );
        if let Some(e) = inner.sessions.get_mut(&key(tenant, "sess", &n.session_id)) {
            e.value.last_used_at = r.now;
        }
        inner.after_write();
        Ok(RotateOutcome::Rotated)
    }

    async fn revoke_family(&self, tenant: &str, family_id: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if let Some(f) = inner.families.get_mut(&key(tenant, "fam", family_id)) {
            f.value.active = false;
        }
        Ok(())
    }

    async fn deny_jti(&self, tenant: &str, jti: &str, ttl: u64) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        inner.denied.insert(
            key(tenant, "deny", jti),
            Expiring {
                value: (),
                until: after(ttl),
            },
        );
        inner.after_write();
        Ok(())
    }

    async fn access_state(
        &self,
        tenant: &str,
        jti: &str,
        session: Option<(&str, &str)>,
    ) -> Result<AccessState, StoreError> {
        let inner = self.inner.lock();
        if Inner::get_live(&inner.denied, &key(tenant, "deny", jti)).is_some() {
            return Ok(AccessState::Revoked);
        }
        if !inner.synced.contains(tenant) {
            return Ok(AccessState::Unsynced);
        }
        Ok(match session {
            Some((sid, user)) => standing(inner.state_of(tenant, sid), inner.cutoff(tenant, user)),
            None => AccessState::Active,
        })
    }

    async fn mark_synced(&self, tenant: &str) -> Result<(), StoreError> {
        self.inner.lock().synced.insert(tenant.to_owned());
        Ok(())
    }

    async fn is_synced(&self, tenant: &str) -> Result<bool, StoreError> {
        Ok(self.inner.lock().synced.contains(tenant))
    }

    async fn publish_change(&self, _message: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn purge_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let prefix = format!("{tenant}\u{0}");
        let mut inner = self.inner.lock();
        inner.state.retain(|k, _| !k.starts_with(&prefix));
        inner.sessions.retain(|k, _| !k.starts_with(&prefix));
        inner.user_sessions.retain(|k, _| !k.starts_with(&prefix));
        inner.grace.retain(|k, _| !k.starts_with(&prefix));
        inner.families.retain(|k, _| !k.starts_with(&prefix));
        inner.denied.retain(|k, _| !k.starts_with(&prefix));
        inner.cuts.retain(|k, _| !k.starts_with(&prefix));
        inner.synced.remove(tenant);
        inner.pending.retain(|k, _| !k.starts_with(&prefix));
        inner.locks.retain(|k, _| !k.starts_with(&prefix));
        inner.ephemeral.retain(|k, _| !k.starts_with(&prefix));
        inner.sign_ins.retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }

    async fn login_lock(&self, tenant: &str, user_id: &str) -> Result<LoginLock, StoreError> {
        let inner = self.inner.lock();
        Ok(Inner::get_live(&inner.locks, &key(tenant, "lock", user_id))
            .map(|(lock, _, _)| *lock)
            .unwrap_or_default())
    }

    async fn login_failed(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<LoginAttempt, StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, "lock", user_id);
        let (lock, window_start, last) = Inner::get_live(&inner.locks, &k).cloned().unwrap_or((
            LoginLock::default(),
            now,
            String::new(),
        ));
        if last == attempt_id {
            // The same attempt again: counted once.
            return Ok(LoginAttempt {
                lock,
                counted: true,
            });
        }
        let counted = !lock.is_locked(now);
        let (lock, window_start) = policy.after_failure(lock, window_start, now);
        let keep = (lock.locked_until.max(now) - now + policy.memory_seconds).max(1) as u64;
        inner.locks.insert(
            k,
            Expiring {
                value: (lock, window_start, attempt_id.to_owned()),
                until: after(keep),
            },
        );
        inner.after_write();
        Ok(LoginAttempt { lock, counted })
    }

    async fn reserve_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<Reservation, StoreError> {
        let mut inner = self.inner.lock();
        let (lock, window_start) = Inner::get_live(&inner.locks, &key(tenant, "lock", user_id))
            .map(|(lock, start, _)| (*lock, *start))
            .unwrap_or((LoginLock::default(), now));
        if lock.is_locked(now) {
            return Ok(Reservation::Locked);
        }
        let failures = if now - window_start >= policy.window_seconds {
            0
        } else {
            lock.failures
        };
        let pending = inner
            .pending
            .entry(key(tenant, "lockp", user_id))
            .or_default();
        pending.retain(|_, expiry| *expiry > now);
        if pending.contains_key(attempt_id) {
            // The same attempt again: admitted once.
            return Ok(Reservation::Admitted);
        }
        if failures as usize + pending.len() >= policy.threshold as usize {
            return Ok(Reservation::Wait);
        }
        pending.insert(attempt_id.to_owned(), now + ATTEMPT_TTL as i64);
        Ok(Reservation::Admitted)
    }

    async fn release_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, "lockp", user_id);
        if let Some(pending) = inner.pending.get_mut(&k) {
            pending.remove(attempt_id);
            if pending.is_empty() {
                inner.pending.remove(&k);
            }
        }
        Ok(())
    }

    async fn clear_login_failures(&self, tenant: &str, user_id: &str) -> Result<(), StoreError> {
        self.inner
            .lock()
            .locks
            .remove(&key(tenant, "lock", user_id));
        Ok(())
    }

    async fn tenant_footprint(&self, tenant: &str) -> Result<(usize, u64), StoreError> {
        let prefix = format!("{tenant}\u{0}");
        let inner = self.inner.lock();
        let now = Instant::now();
        let (mut keys, mut bytes) = (0usize, 0u64);
        let mut add = |k: &str, value_len: usize| {
            keys += 1;
            // Key, value and the bookkeeping Redis keeps per key.
            bytes += (k.len() + value_len + 48) as u64;
        };
        macro_rules! count {
            ($map:expr, $len:expr) => {
                for (k, e) in $map.iter() {
                    if k.starts_with(&prefix) && e.live(now) {
                        add(k, $len(&e.value));
                    }
                }
            };
        }
        count!(inner.state, |v: &String| v.len());
        count!(inner.sessions, |v: &SessionRecord| format!("{v:?}").len());
        count!(inner.user_sessions, |v: &BTreeSet<(i64, String)>| v
            .iter()
            .map(|(_, id)| id.len() + 16)
            .sum::<usize>());
        count!(inner.cuts, |v: &String| v.len());
        count!(inner.ephemeral, |v: &String| v.len());
        count!(inner.sign_ins, |v: &String| v.len());
        count!(inner.families, |v: &Family| format!("{v:?}").len());
        count!(inner.grace, |v: &String| v.len());
        count!(inner.denied, |_: &()| 1);
        count!(inner.locks, |v: &(LoginLock, i64, String)| 40 + v.2.len());
        Ok((keys, bytes))
    }

    async fn put_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        value: &str,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        if kind == Ephemeral::SignIn {
            inner.bound_sign_ins();
        }
        inner.ephemeral_of(kind).insert(
            key(tenant, kind.prefix(), id),
            Expiring {
                value: format!("{FRESH}{value}"),
                until: after(ttl.max(1)),
            },
        );
        inner.after_write();
        Ok(())
    }

    async fn get_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut inner = self.inner.lock();
        let stored = Inner::get_live(inner.ephemeral_of(kind), &key(tenant, kind.prefix(), id));
        Ok(stored
            .and_then(|v| v.strip_prefix(FRESH))
            .map(str::to_owned))
    }

    async fn delete_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<(), StoreError> {
        self.inner
            .lock()
            .ephemeral_of(kind)
            .remove(&key(tenant, kind.prefix(), id));
        Ok(())
    }

    async fn take_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        mark: &str,
        mark_ttl: u64,
    ) -> Result<Taken, StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, kind.prefix(), id);
        let map = inner.ephemeral_of(kind);
        let stored = Inner::get_live(map, &k).cloned();
        let taken = taken_of(stored.as_deref());
        if let (Taken::Fresh(value), Some(entry)) = (&taken, map.get_mut(&k)) {
            entry.value = used_by(mark, value);
            entry.until = after(mark_ttl.max(1));
        }
        // The same call again answers what it answered the first time.
        if let Some(value) = stored
            .as_deref()
            .and_then(|v| v.strip_prefix(&used_by(mark, "")))
        {
            return Ok(Taken::Fresh(value.to_owned()));
        }
        Ok(taken)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
