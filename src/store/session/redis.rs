//! The Redis session store. Every key lives under
//! `{prefix}:{{tenant}}:`; the hash tag keeps one tenant's keys in one
//! cluster slot so the Lua scripts may touch several of them atomically.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{
    AccessState, EndReason, LockoutPolicy, LoginLock, RefreshEntry, RefreshRecord, RefreshState,
    RotateOutcome, Rotation, SessionRecord, SessionStore,
};
use crate::store::StoreError;

const GET_REFRESH: &str = r"
local rt = redis.call('HGETALL', KEYS[1])
if #rt == 0 then return false end
local h = {}
for i = 1, #rt, 2 do h[rt[i]] = rt[i + 1] end
local fam = redis.call('HMGET', ARGV[1] .. 'fam:' .. h['family'], 'current', 'status')
local sst = redis.call('GET', ARGV[1] .. 'sst:' .. h['sid'])
return {rt, fam[1] or '', fam[2] or '', sst or ''}
";

const ROTATE: &str = r"
if redis.call('HGET', KEYS[1], 'state') ~= 'current' then return 'race' end
if redis.call('HGET', KEYS[3], 'status') ~= 'active' then return 'revoked' end
if redis.call('GET', KEYS[4]) ~= 'active' then return 'revoked' end
redis.call('HSET', KEYS[1], 'state', 'rotated', 'rotated_at', ARGV[1], 'successor', ARGV[2], 'sealed', ARGV[3])
redis.call('HSET', KEYS[2], 'family', ARGV[5], 'sid', ARGV[6], 'client', ARGV[7], 'user', ARGV[8],
  'exp', ARGV[9], 'fexp', ARGV[10], 'scope', ARGV[11], 'state', 'current')
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[3], 'current', ARGV[2])
return 'ok'
";

/// Ends sessions: ARGV = tenant prefix, reason, linger, except, sid...
const END_SESSIONS: &str = r"
local n = 0
for i = 5, #ARGV do
  local sid = ARGV[i]
  if sid ~= ARGV[4] then
    local sst = ARGV[1] .. 'sst:' .. sid
    if redis.call('GET', sst) == 'active' then
      redis.call('SET', sst, ARGV[2], 'EX', ARGV[3])
      local sess = ARGV[1] .. 'sess:' .. sid
      local user = redis.call('HGET', sess, 'user_id')
      if user then redis.call('SREM', ARGV[1] .. 'usess:' .. user, sid) end
      redis.call('DEL', sess)
      n = n + 1
    end
  end
end
return n
";

/// The user's active sessions; prunes ids whose session is gone.
const LIST_SESSIONS: &str = r"
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('GET', ARGV[1] .. 'sst:' .. sid) == 'active' then
    local s = redis.call('HGETALL', ARGV[1] .. 'sess:' .. sid)
    if #s > 0 then table.insert(out, s) end
  else
    redis.call('SREM', KEYS[1], sid)
  end
end
return out
";

/// Updates `last_used_at` of a session that still exists (never re-creates it).
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1]) end
return 1
";

/// One failed sign-in: the steps of `LockoutPolicy::after_failure`, atomically.
/// KEYS[1] lock hash; ARGV: now, threshold, window, base, max, memory.
/// Returns {failures, locked_until, level}.
const LOGIN_FAILED: &str = r"
local now = tonumber(ARGV[1])
local threshold = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local base = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local memory = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'failures', 'window_start', 'locked_until', 'level')
local failures = tonumber(h[1]) or 0
local window_start = tonumber(h[2]) or now
local locked_until = tonumber(h[3]) or 0
local level = tonumber(h[4]) or 0
if locked_until > now then
  return {failures, locked_until, level}
end
if failures == 0 or now - window_start >= window then
  failures = 0
  window_start = now
end
failures = failures + 1
if failures >= threshold then
  local seconds = base * (2 ^ math.min(level, 62))
  if seconds > max then seconds = max end
  locked_until = now + seconds
  level = level + 1
  failures = 0
end
redis.call('HSET', KEYS[1], 'failures', failures, 'window_start', window_start,
  'locked_until', locked_until, 'level', level)
local keep = memory
if locked_until > now then keep = keep + (locked_until - now) end
redis.call('EXPIRE', KEYS[1], keep)
return {failures, locked_until, level}
";

/// Sessions and tokens in Redis, shared by every instance.
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    get_refresh: Script,
    rotate: Script,
    end_sessions: Script,
    list_sessions: Script,
    touch: Script,
    login_failed: Script,
}

fn unavailable(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Unavailable("session store", e.into())
}

impl RedisStore {
    /// Connects; fails fast when Redis does not answer within `timeout`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let conn = tokio::time::timeout(
            timeout * 3,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(unavailable)?
        .map_err(unavailable)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
            get_refresh: Script::new(GET_REFRESH),
            rotate: Script::new(ROTATE),
            end_sessions: Script::new(END_SESSIONS),
            list_sessions: Script::new(LIST_SESSIONS),
            touch: Script::new(TOUCH),
            login_failed: Script::new(LOGIN_FAILED),
        })
    }

    fn tenant_prefix(&self, tenant: &str) -> String {
        format!("{}:{{{}}}:", self.prefix, tenant)
    }

    fn key(&self, tenant: &str, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.tenant_prefix(tenant))
    }

    /// Runs one Redis call under the configured timeout, timing it as `op`.
    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(unavailable)?
            .map_err(unavailable);
        crate::metrics::store_round_trip(op, started);
        result
    }

    async fn end_many(
        &self,
        tenant: &str,
        sids: &[String],
        except: Option<&str>,
        reason: EndReason,
        linger: u64,
    ) -> Result<usize, StoreError> {
        if sids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn.clone();
        let mut inv = self.end_sessions.prepare_invoke();
        inv.arg(self.tenant_prefix(tenant))
            .arg(reason.as_str())
            .arg(linger.max(1))
            .arg(except.unwrap_or(""));
        for sid in sids {
            inv.arg(sid);
        }
        let n: usize = self.call("end_many", inv.invoke_async(&mut conn)).await?;
        Ok(n)
    }
}

/// The pub/sub channel of cache-invalidating changes.
fn changes_channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// Follows the change channel for as long as the process lives, reconnecting
/// after failures. After every (re)subscription `on_change("*")` runs, since
/// messages may have been missed meanwhile.
pub fn spawn_change_listener(
    url: String,
    prefix: String,
    on_change: std::sync::Arc<dyn Fn(&str) + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        let channel = changes_channel(&prefix);
        loop {
            let subscribed = async {
                let client = redis::Client::open(url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                redis::RedisResult::Ok(pubsub)
            }
            .await;
            match subscribed {
                Ok(mut pubsub) => {
                    on_change("*");
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        if let Ok(payload) = msg.get_payload::<String>() {
                            on_change(&payload);
                        }
                    }
                    tracing::warn!("change channel closed; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "cannot follow the change channel; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn session_from_hash(h: &HashMap<String, String>) -> Option<SessionRecord> {
    let opt = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
    Some(SessionRecord {
        id: h.get("id")?.clone(),
        user_id: h.get("user_id")?.clone(),
        client_id: h.get("client_id")?.clone(),
        created_at: h.get("created_at")?.parse().ok()?,
        last_used_at: h.get("last_used_at")?.parse().ok()?,
        ip: opt("ip"),
        user_agent: opt("user_agent"),
    })
}

fn pairs_to_map(flat: Vec<String>) -> HashMap<String, String> {
    let mut it = flat.into_iter();
    let mut map = HashMap::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        map.insert(k, v);
    }
    map
}

fn remaining(unix: i64) -> i64 {
    (unix - chrono::Utc::now().timestamp()).max(1)
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create_session(
        &self,
        tenant: &str,
        s: &SessionRecord,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let ttl = ttl.max(1) as i64;
        let sess = self.key(tenant, "sess", &s.id);
        let usess = self.key(tenant, "usess", &s.user_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.key(tenant, "sst", &s.id))
            .arg("active")
            .arg("EX")
            .arg(ttl)
            .ignore()
            .hset_multiple(
                &sess,
                &[
                    ("id", s.id.clone()),
                    ("user_id", s.user_id.clone()),
                    ("client_id", s.client_id.clone()),
                    ("created_at", s.created_at.to_string()),
                    ("last_used_at", s.last_used_at.to_string()),
                    ("ip", s.ip.clone().unwrap_or_default()),
                    ("user_agent", s.user_agent.clone().unwrap_or_default()),
                ],
            )
            .ignore()
            .expire(&sess, ttl)
            .ignore()
            .sadd(&usess, &s.id)
            .ignore()
            .expire(&usess, ttl)
            .ignore();
        let mut conn = self.conn.clone();
        self.call("create_session", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn get_session(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.get(self.key(tenant, "sst", sid))
            .hgetall(self.key(tenant, "sess", sid));
        let (state, hash): (Option<String>, HashMap<String, String>) = self
            .call("get_session", pipe.query_async(&mut conn))
            .await?;
        if state.as_deref() != Some("active") {
            return Ok(None);
        }
        Ok(session_from_hash(&hash))
    }

    async fn list_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.list_sessions.prepare_invoke();
        inv.key(self.key(tenant, "usess", user_id))
            .arg(self.tenant_prefix(tenant));
        let rows: Vec<Vec<String>> = self
            .call("list_user_sessions", inv.invoke_async(&mut conn))
            .await?;
        let mut out: Vec<SessionRecord> = rows
            .into_iter()
            .filter_map(|flat| session_from_hash(&pairs_to_map(flat)))
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    async fn touch_session(&self, tenant: &str, sid: &str, now: i64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.touch.prepare_invoke();
        inv.key(self.key(tenant, "sess", sid)).arg(now);
        self.call("touch_session", inv.invoke_async::<i64>(&mut conn))
            .await?;
        Ok(())
    }

    async fn end_session(
        &self,
        tenant: &str,
        sid: &str,
        reason: EndReason,
        linger: u64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .end_many(tenant, &[sid.to_owned()], None, reason, linger)
            .await?
            > 0)
    }

    async fn end_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        except: Option<&str>,
        reason: EndReason,
        linger: u64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let usess = self.key(tenant, "usess", user_id);
        let sids: Vec<String> = self
            .call("end_user_sessions", conn.smembers(&usess))
            .await?;
        self.end_many(tenant, &sids, except, reason, linger).await
    }

    async fn start_family(
        &self,
        tenant: &str,
        hash: &str,
        r: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let ttl = remaining(r.family_expires_at);
        let fam = self.key(tenant, "fam", &r.family_id);
        let rt = self.key(tenant, "rt", hash);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(&fam, &[("current", hash), ("status", "active")])
            .ignore()
            .expire(&fam, ttl)
            .ignore()
            .hset_multiple(
                &rt,
                &[
                    ("family", r.family_id.clone()),
                    ("sid", r.session_id.clone()),
                    ("client", r.client_id.clone()),
                    ("user", r.user_id.clone()),
                    ("exp", r.expires_at.to_string()),
                    ("fexp", r.family_expires_at.to_string()),
                    ("scope", r.scope.clone()),
                    ("state", "current".to_owned()),
                ],
            )
            .ignore()
            .expire(&rt, ttl)
            .ignore();
        let mut conn = self.conn.clone();
        self.call("start_family", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn get_refresh(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.get_refresh.prepare_invoke();
        inv.key(self.key(tenant, "rt", hash))
            .arg(self.tenant_prefix(tenant));
        let found: Option<(Vec<String>, String, String, String)> = self
            .call("get_refresh", inv.invoke_async(&mut conn))
            .await?;
        let Some((flat, family_current, family_status, session_state)) = found else {
            return Ok(None);
        };
        let h = pairs_to_map(flat);
        let field = |k: &str| h.get(k).cloned().unwrap_or_default();
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let record = RefreshRecord {
            family_id: field("family"),
            session_id: field("sid"),
            client_id: field("client"),
            user_id: field("user"),
            expires_at: num("exp"),
            family_expires_at: num("fexp"),
            scope: field("scope"),
        };
        let state = if field("state") == "current" {
            RefreshState::Current
        } else {
            RefreshState::Rotated {
                rotated_at: num("rotated_at"),
                successor_is_current: !family_current.is_empty()
                    && field("successor") == family_current,
                sealed_successor: h.get("sealed").cloned(),
            }
        };
        Ok(Some(RefreshEntry {
            record,
            state,
            family_active: family_status == "active",
            session_active: session_state == "active",
        }))
    }

    async fn rotate_refresh(
        &self,
        tenant: &str,
        r: Rotation<'_>,
    ) -> Result<RotateOutcome, StoreError> {
        let n = r.new_record;
        let mut conn = self.conn.clone();
        let mut inv = self.rotate.prepare_invoke();
        inv.key(self.key(tenant, "rt", r.old_hash))
            .key(self.key(tenant, "rt", r.new_hash))
            .key(self.key(tenant, "fam", &n.family_id))
            .key(self.key(tenant, "sst", &n.session_id))
            .arg(r.now)
            .arg(r.new_hash)
            .arg(r.sealed_successor)
            .arg(remaining(n.family_expires_at))
            .arg(&n.family_id)
            .arg(&n.session_id)
            .arg(&n.client_id)
            .arg(&n.user_id)
            .arg(n.expires_at)
            .arg(n.family_expires_at)
            .arg(&n.scope);
        let outcome: String = self
            .call("rotate_refresh", inv.invoke_async(&mut conn))
            .await?;
        Ok(match outcome.as_str() {
            "ok" => RotateOutcome::Rotated,
            "race" => RotateOutcome::LostRace,
            _ => RotateOutcome::Revoked,
        })
    }

    async fn revoke_family(&self, tenant: &str, family_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let fam = self.key(tenant, "fam", family_id);
        self.call(
            "revoke_family",
            conn.hset::<_, _, _, ()>(&fam, "status", "revoked"),
        )
        .await
    }

    async fn deny_jti(&self, tenant: &str, jti: &str, ttl: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "deny", jti);
        self.call("deny_jti", conn.set_ex::<_, _, ()>(&key, 1, ttl.max(1)))
            .await
    }

    async fn access_state(
        &self,
        tenant: &str,
        jti: &str,
        sid: Option<&str>,
        client_id: &str,
    ) -> Result<AccessState, StoreError> {
        let mut conn = self.conn.clone();
        let deny = self.key(tenant, "deny", jti);
        let state_key = sid.map(|s| self.key(tenant, "sst", s));
        let keys = [
            deny.clone(),
            state_key.unwrap_or(deny),
            format!("{}suspended", self.tenant_prefix(tenant)),
            self.key(tenant, "cdis", client_id),
        ];
        let values: Vec<Option<String>> = self.call("access_state", conn.mget(&keys)).await?;
        let get = |i: usize| values.get(i).cloned().flatten();
        if get(2).is_some() || get(3).is_some() {
            return Ok(AccessState::Disabled);
        }
        if get(0).is_some() {
            return Ok(AccessState::Revoked);
        }
        if sid.is_some() {
            return Ok(match get(1).as_deref() {
                Some("active") => AccessState::Active,
                Some("disabled") => AccessState::Disabled,
                _ => AccessState::Revoked,
            });
        }
        Ok(AccessState::Active)
    }

    async fn set_tenant_suspended(&self, tenant: &str, suspended: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}suspended", self.tenant_prefix(tenant));
        if suspended {
            self.call("set_tenant_suspended", conn.set::<_, _, ()>(&key, 1))
                .await
        } else {
            self.call("set_tenant_suspended", conn.del::<_, ()>(&key))
                .await
        }
    }

    async fn set_client_disabled(
        &self,
        tenant: &str,
        client_id: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "cdis", client_id);
        if disabled {
            self.call("set_client_disabled", conn.set::<_, _, ()>(&key, 1))
                .await
        } else {
            self.call("set_client_disabled", conn.del::<_, ()>(&key))
                .await
        }
    }

    async fn publish_change(&self, message: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let channel = changes_channel(&self.prefix);
        self.call(
            "publish_change",
            conn.publish::<_, _, ()>(&channel, message),
        )
        .await
    }

    async fn purge_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!(
            "{}*",
            self.tenant_prefix(tenant)
                .replace('{', "\\{")
                .replace('}', "\\}")
        );
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .call(
                    "purge_tenant",
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut conn),
                )
                .await?;
            if !keys.is_empty() {
                self.call("purge_tenant", conn.del::<_, ()>(&keys)).await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn login_lock(&self, tenant: &str, user_id: &str) -> Result<LoginLock, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "lock", user_id);
        let (failures, locked_until, level): (Option<u32>, Option<i64>, Option<u32>) = self
            .call(
                "login_lock",
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("failures")
                    .arg("locked_until")
                    .arg("level")
                    .query_async(&mut conn),
            )
            .await?;
        Ok(LoginLock {
            failures: failures.unwrap_or(0),
            locked_until: locked_until.unwrap_or(0),
            level: level.unwrap_or(0),
        })
    }

    async fn login_failed(
        &self,
        tenant: &str,
        user_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<LoginLock, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.login_failed.prepare_invoke();
        inv.key(self.key(tenant, "lock", user_id))
            .arg(now)
            .arg(policy.threshold)
            .arg(policy.window_seconds)
            .arg(policy.base_lock_seconds)
            .arg(policy.max_lock_seconds)
            .arg(policy.memory_seconds.max(1));
        let (failures, locked_until, level): (u32, i64, u32) = self
            .call("login_failed", inv.invoke_async(&mut conn))
            .await?;
        Ok(LoginLock {
            failures,
            locked_until,
            level,
        })
    }

    async fn clear_login_failures(&self, tenant: &str, user_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "lock", user_id);
        self.call("clear_login_failures", conn.del::<_, ()>(&key))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pong: String = self
            .call("ping", redis::cmd("PING").query_async(&mut conn))
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(unavailable(anyhow::anyhow!("unexpected PING answer")))
        }
    }
}
