//! The in-process session store of embedded mode: the same semantics and
//! TTLs as Redis, behind one mutex (every operation is short and never awaits
//! while holding it).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    AccessState, EndReason, LockoutPolicy, LoginLock, RefreshEntry, RefreshRecord, RefreshState,
    RotateOutcome, Rotation, SessionRecord, SessionStore,
};
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

#[derive(Debug, Clone)]
struct RefreshSlot {
    record: RefreshRecord,
    rotated: Option<(i64, String, String)>,
}

#[derive(Debug, Clone)]
struct Family {
    current: String,
    active: bool,
}

#[derive(Default)]
struct Inner {
    /// Session state: "active" | "revoked" | "disabled".
    state: HashMap<String, Expiring<String>>,
    sessions: HashMap<String, Expiring<SessionRecord>>,
    user_sessions: HashMap<String, BTreeSet<String>>,
    refresh: HashMap<String, Expiring<RefreshSlot>>,
    families: HashMap<String, Expiring<Family>>,
    denied: HashMap<String, Expiring<()>>,
    flags: HashMap<String, ()>,
    /// Failed sign-ins: (state, window start).
    locks: HashMap<String, Expiring<(LoginLock, i64)>>,
    writes: u64,
}

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
        self.refresh.retain(|_, e| e.live(now));
        self.families.retain(|_, e| e.live(now));
        self.denied.retain(|_, e| e.live(now));
        self.locks.retain(|_, e| e.live(now));
        let sessions = &self.sessions;
        for set in self.user_sessions.values_mut() {
            set.retain(|k| sessions.contains_key(k));
        }
        self.user_sessions.retain(|_, s| !s.is_empty());
    }

    fn session_active(&self, tenant: &str, sid: &str) -> bool {
        Self::get_live(&self.state, &key(tenant, "sst", sid)).is_some_and(|s| s == "active")
    }

    fn end(&mut self, tenant: &str, sid: &str, reason: EndReason, linger: u64) -> bool {
        let state_key = key(tenant, "sst", sid);
        if !self.session_active(tenant, sid) {
            return false;
        }
        self.state.insert(
            state_key,
            Expiring {
                value: reason.as_str().to_owned(),
                until: after(linger),
            },
        );
        if let Some(s) = self.sessions.remove(&key(tenant, "sess", sid))
            && let Some(set) = self
                .user_sessions
                .get_mut(&key(tenant, "usess", &s.value.user_id))
        {
            set.remove(&key(tenant, "sess", sid));
        }
        true
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
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let sess_key = key(tenant, "sess", &session.id);
        inner.state.insert(
            key(tenant, "sst", &session.id),
            Expiring {
                value: "active".to_owned(),
                until: after(ttl),
            },
        );
        inner.sessions.insert(
            sess_key.clone(),
            Expiring {
                value: session.clone(),
                until: after(ttl),
            },
        );
        inner
            .user_sessions
            .entry(key(tenant, "usess", &session.user_id))
            .or_default()
            .insert(sess_key);
        inner.after_write();
        Ok(())
    }

    async fn get_session(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let inner = self.inner.lock();
        if !inner.session_active(tenant, sid) {
            return Ok(None);
        }
        Ok(Inner::get_live(&inner.sessions, &key(tenant, "sess", sid)).cloned())
    }

    async fn list_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let inner = self.inner.lock();
        let Some(set) = inner.user_sessions.get(&key(tenant, "usess", user_id)) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<SessionRecord> = set
            .iter()
            .filter_map(|k| Inner::get_live(&inner.sessions, k).cloned())
            .filter(|s| inner.session_active(tenant, &s.id))
            .collect();
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
        except: Option<&str>,
        reason: EndReason,
        linger: u64,
    ) -> Result<usize, StoreError> {
        let mut inner = self.inner.lock();
        let ids: Vec<String> = inner
            .user_sessions
            .get(&key(tenant, "usess", user_id))
            .map(|set| {
                set.iter()
                    .filter_map(|k| Inner::get_live(&inner.sessions, k).map(|s| s.id.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut n = 0;
        for sid in ids {
            if Some(sid.as_str()) != except && inner.end(tenant, &sid, reason, linger) {
                n += 1;
            }
        }
        inner.after_write();
        Ok(n)
    }

    async fn start_family(
        &self,
        tenant: &str,
        hash: &str,
        record: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let until = until_unix(record.family_expires_at);
        inner.families.insert(
            key(tenant, "fam", &record.family_id),
            Expiring {
                value: Family {
                    current: hash.to_owned(),
                    active: true,
                },
                until,
            },
        );
        inner.refresh.insert(
            key(tenant, "rt", hash),
            Expiring {
                value: RefreshSlot {
                    record: record.clone(),
                    rotated: None,
                },
                until,
            },
        );
        inner.after_write();
        Ok(())
    }

    async fn get_refresh(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<RefreshEntry>, StoreError> {
        let inner = self.inner.lock();
        let Some(slot) = Inner::get_live(&inner.refresh, &key(tenant, "rt", hash)) else {
            return Ok(None);
        };
        let family = Inner::get_live(&inner.families, &key(tenant, "fam", &slot.record.family_id));
        let state = match &slot.rotated {
            None => RefreshState::Current,
            Some((at, successor, sealed)) => RefreshState::Rotated {
                rotated_at: *at,
                successor_is_current: family.is_some_and(|f| &f.current == successor),
                sealed_successor: Some(sealed.clone()),
            },
        };
        Ok(Some(RefreshEntry {
            family_active: family.is_some_and(|f| f.active),
            session_active: inner.session_active(tenant, &slot.record.session_id),
            record: slot.record.clone(),
            state,
        }))
    }

    async fn rotate_refresh(
        &self,
        tenant: &str,
        r: Rotation<'_>,
    ) -> Result<RotateOutcome, StoreError> {
        let mut inner = self.inner.lock();
        let old_key = key(tenant, "rt", r.old_hash);
        let fam_key = key(tenant, "fam", &r.new_record.family_id);
        match Inner::get_live(&inner.refresh, &old_key) {
            Some(slot) if slot.rotated.is_none() => {}
            _ => return Ok(RotateOutcome::LostRace),
        }
        let family_active = Inner::get_live(&inner.families, &fam_key).is_some_and(|f| f.active);
        if !family_active || !inner.session_active(tenant, &r.new_record.session_id) {
            return Ok(RotateOutcome::Revoked);
        }
        if let Some(old) = inner.refresh.get_mut(&old_key) {
            old.value.rotated = Some((r.now, r.new_hash.to_owned(), r.sealed_successor.to_owned()));
        }
        inner.refresh.insert(
            key(tenant, "rt", r.new_hash),
            Expiring {
                value: RefreshSlot {
                    record: r.new_record.clone(),
                    rotated: None,
                },
                until: until_unix(r.new_record.family_expires_at),
            },
        );
        if let Some(f) = inner.families.get_mut(&fam_key) {
            f.value.current = r.new_hash.to_owned();
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
        sid: Option<&str>,
        client_id: &str,
    ) -> Result<AccessState, StoreError> {
        let inner = self.inner.lock();
        if inner.flags.contains_key(&key(tenant, "suspended", ""))
            || inner.flags.contains_key(&key(tenant, "cdis", client_id))
        {
            return Ok(AccessState::Disabled);
        }
        if Inner::get_live(&inner.denied, &key(tenant, "deny", jti)).is_some() {
            return Ok(AccessState::Revoked);
        }
        if let Some(sid) = sid {
            return Ok(
                match Inner::get_live(&inner.state, &key(tenant, "sst", sid)).map(String::as_str) {
                    Some("active") => AccessState::Active,
                    Some("disabled") => AccessState::Disabled,
                    _ => AccessState::Revoked,
                },
            );
        }
        Ok(AccessState::Active)
    }

    async fn set_tenant_suspended(&self, tenant: &str, suspended: bool) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, "suspended", "");
        if suspended {
            inner.flags.insert(k, ());
        } else {
            inner.flags.remove(&k);
        }
        Ok(())
    }

    async fn set_client_disabled(
        &self,
        tenant: &str,
        client_id: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, "cdis", client_id);
        if disabled {
            inner.flags.insert(k, ());
        } else {
            inner.flags.remove(&k);
        }
        Ok(())
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
        inner.refresh.retain(|k, _| !k.starts_with(&prefix));
        inner.families.retain(|k, _| !k.starts_with(&prefix));
        inner.denied.retain(|k, _| !k.starts_with(&prefix));
        inner.flags.retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }

    async fn login_lock(&self, tenant: &str, user_id: &str) -> Result<LoginLock, StoreError> {
        let inner = self.inner.lock();
        Ok(Inner::get_live(&inner.locks, &key(tenant, "lock", user_id))
            .map(|(lock, _)| *lock)
            .unwrap_or_default())
    }

    async fn login_failed(
        &self,
        tenant: &str,
        user_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<LoginLock, StoreError> {
        let mut inner = self.inner.lock();
        let k = key(tenant, "lock", user_id);
        let (lock, window_start) = Inner::get_live(&inner.locks, &k)
            .copied()
            .unwrap_or((LoginLock::default(), now));
        let (lock, window_start) = policy.after_failure(lock, window_start, now);
        let keep = (lock.locked_until.max(now) - now + policy.memory_seconds).max(1) as u64;
        inner.locks.insert(
            k,
            Expiring {
                value: (lock, window_start),
                until: after(keep),
            },
        );
        inner.after_write();
        Ok(lock)
    }

    async fn clear_login_failures(&self, tenant: &str, user_id: &str) -> Result<(), StoreError> {
        self.inner
            .lock()
            .locks
            .remove(&key(tenant, "lock", user_id));
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
