//! The Redis session store. Every key lives under `{prefix}:{{tenant}}:`;
//! the hash tag keeps one tenant's keys in one cluster slot so the Lua
//! scripts (`lua/*.lua`) may touch several of them atomically.
//!
//! Key kinds after the tenant prefix, as `MONITOR` shows them:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sst:{sid}` | string | session state: `active:{generation}`, `revoked` or `disabled` |
//! | `sess:{sid}` | hash | session record (user, client, times, IP, user agent) |
//! | `usess:{user}` | sorted set | the user's session ids, scored by creation time |
//! | `ucut:{user}` | string | the user's cut-off: `{generation}:{reason}` |
//! | `fam:{family}` | hash | a refresh-token family: the hashes of its current token and of the one before, status, session, client, scope, expiry |
//! | `grace:{family}` | string | the sealed successor pair of the token just rotated, for the grace window only |
//! | `rt:{sha256}` | hash | a refresh token of an earlier version (read only; expires with its family) |
//! | `deny:{jti}` | string | an access token revoked through RFC 7009 or logout |
//! | `lock:{user}` | hash | failed sign-ins and the account lock |
//! | `lockp:{user}` | sorted set | sign-in attempts in flight (id, expiry) |
//! | `ltx:{id}` | string | a sign-in transaction of the hosted login page (10 minutes) |
//! | `code:{sha256}` | string | an authorization code (60 s); once used, the mark of what it issued |
//! | `bsess:{sha256}` | string | a browser session (the SSO cookie's secret, hashed): its session id |
//! | `synced` | string | present once the tenant's durable denials were copied in |
//! | `wmark` | string | written after each revocation, before `WAIT` (60 s) |
//!
//! Every key has a TTL. A store without `synced` for a tenant (it lost its
//! data: restart without persistence, flush; or a day passed) is refilled
//! from the database before it answers for the tenant again. Revocations
//! (a session's end, a user's cut-off, a family, a `jti`) are answered once
//! a replica acknowledged them (`WAIT`), so a failover keeps them; other
//! writes (a rotation, a new session) may be lost when the master fails
//! before its replica received them (README, "Scaling out"). The store needs
//! `maxmemory-policy noeviction`: an evicted cut-off or session state would
//! bring tokens back.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{AsyncCommands, FromRedisValue, Script};

use super::{
    ATTEMPT_TTL, AccessState, CUT_MIN_TTL, EndReason, LockoutPolicy, LoginAttempt, LoginLock,
    PresentedRefresh, RefreshEntry, RefreshRecord, RefreshState, Reservation, RotateOutcome,
    Rotation, SESSION_PAGE, SessionRecord, SessionStore, UserCut, standing,
};
use super::{Ephemeral, FRESH, Taken, taken_of};
use crate::store::StoreError;

/// How long a refill of a tenant's denials is trusted (seconds): a day,
/// then it is done again (cheap), so no key lives for ever.
const SYNCED_TTL: u64 = 24 * 3600;

/// How long a revocation waits for a replica to acknowledge it (Redis
/// `WAIT`, milliseconds) before it is answered anyway; at most half the
/// store timeout.
const REPLICA_ACK_WAIT_MS: u64 = 200;

/// After a replica failed to acknowledge a revocation, how long (ms)
/// revocations do not wait: one stalled replica must not hold each of them
/// for [`REPLICA_ACK_WAIT_MS`] in turn on the one connection.
const UNACKNOWLEDGED_PAUSE_MS: i64 = 5_000;

/// The scripts, each prefixed with the shared helpers of `lua/prelude.lua`.
/// Every key a script touches carries the tenant's hash tag, so each script
/// stays within one cluster slot.
mod scripts {
    pub const PRELUDE: &str = include_str!("lua/prelude.lua");
    pub const CREATE_SESSION: &str = include_str!("lua/create_session.lua");
    pub const GET_SESSION: &str = include_str!("lua/get_session.lua");
    pub const LIST_PAGE: &str = include_str!("lua/list_page.lua");
    pub const CUT_USER: &str = include_str!("lua/cut_user.lua");
    pub const END_PAGE: &str = include_str!("lua/end_page.lua");
    pub const END_SESSION: &str = include_str!("lua/end_session.lua");
    pub const GET_REFRESH: &str = include_str!("lua/get_refresh.lua");
    pub const GET_FAMILY: &str = include_str!("lua/get_family.lua");
    pub const ROTATE: &str = include_str!("lua/rotate.lua");
    pub const TOUCH: &str = include_str!("lua/touch.lua");
    pub const REVOKE_FAMILY: &str = include_str!("lua/revoke_family.lua");
    pub const LOGIN_FAILED: &str = include_str!("lua/login_failed.lua");
    pub const LOGIN_RESERVE: &str = include_str!("lua/login_reserve.lua");
    pub const TAKE: &str = include_str!("lua/take.lua");
}

fn script(body: &str) -> Lua {
    let body = format!("{}\n{body}", scripts::PRELUDE);
    Lua {
        sha: Script::new(&body).get_hash().to_owned(),
        body,
    }
}

/// A script of `lua/`, run by its SHA1 (`EVALSHA`) and, on a node that
/// does not know it yet (`NOSCRIPT`: restarted, or a replica just
/// promoted), by its body (`EVAL`) on that same node, which caches it
/// there. Never `SCRIPT LOAD`: a cluster sends that to every node, so it
/// fails while any node is down, even for slots the failure does not touch.
struct Lua {
    body: String,
    sha: String,
}

impl Lua {
    fn prepare_invoke(&self) -> LuaCall<'_> {
        LuaCall {
            lua: self,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }
}

/// One run of a [`Lua`] script: its keys (`KEYS`) and arguments (`ARGV`).
struct LuaCall<'a> {
    lua: &'a Lua,
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
}

impl LuaCall<'_> {
    fn key(&mut self, key: impl redis::ToRedisArgs) -> &mut Self {
        key.write_redis_args(&mut self.keys);
        self
    }

    fn arg(&mut self, arg: impl redis::ToRedisArgs) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// The run as `EVAL` with the script's body: after `NOSCRIPT`, and in a
    /// pipeline, where a `NOSCRIPT` answer could not be followed up.
    fn eval(&self) -> redis::Cmd {
        self.command("EVAL", &self.lua.body)
    }

    fn command(&self, verb: &str, script: &str) -> redis::Cmd {
        let mut cmd = redis::cmd(verb);
        cmd.arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }

    /// Runs the script where its first key's slot lives. `NOSCRIPT` means
    /// it did not run, so sending the body then runs it exactly once.
    async fn invoke_async<T: FromRedisValue>(&self, conn: &mut Conn) -> redis::RedisResult<T> {
        match self
            .command("EVALSHA", &self.lua.sha)
            .query_async(conn)
            .await
        {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.eval().query_async(conn).await
            }
            other => other,
        }
    }
}

/// Where the store lives: one Redis node, or a Redis Cluster (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// `redis://…` or `rediss://…`.
    Single(String),
    /// `redis+cluster://[user:password@]host:port[,host:port…]`
    /// (`rediss+cluster://` for TLS), or a comma-separated list of
    /// `redis://` URLs: the seed nodes, one URL each.
    Cluster(Vec<String>),
}

impl Topology {
    /// Reads `LATCHKEY_REDIS_URL`.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn parse(url: &str) -> Result<Topology, String> {
        use redis::IntoConnectionInfo;
        // Never echoes a URL: it may hold a password.
        let check = |node: &str| {
            node.into_connection_info()
                .map_err(|_| "is not a valid Redis URL".to_owned())
        };
        let cluster_scheme = [
            ("redis+cluster://", "redis://"),
            ("rediss+cluster://", "rediss://"),
        ]
        .into_iter()
        .find(|(scheme, _)| url.starts_with(scheme));
        if let Some((scheme, node_scheme)) = cluster_scheme {
            let rest = &url[scheme.len()..];
            let hosts = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if !matches!(&rest[hosts.len()..], "" | "/") {
                // A cluster has one database, and options would be lost.
                return Err("takes nothing after the nodes (no database, no options)".to_owned());
            }
            let (userinfo, hosts) = match hosts.rsplit_once('@') {
                Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
                None => (String::new(), hosts),
            };
            let nodes: Vec<String> = hosts
                .split(',')
                .map(|host| format!("{node_scheme}{userinfo}{}", host.trim()))
                .collect();
            if hosts.split(',').any(|h| h.trim().is_empty()) {
                return Err("names an empty node (host:port[,host:port…])".to_owned());
            }
            for node in &nodes {
                check(node)?;
            }
            return Ok(Topology::Cluster(nodes));
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(
                "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://"
                    .to_owned(),
            );
        }
        if url.contains(',') {
            let nodes: Vec<String> = url.split(',').map(|n| n.trim().to_owned()).collect();
            let mut credentials = None;
            for node in &nodes {
                if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                    return Err("lists a node that is not a redis:// URL".to_owned());
                }
                let info = check(node)?;
                if info.redis_settings().db() != 0 {
                    return Err("names a database (a cluster has only database 0)".to_owned());
                }
                let these = (
                    info.redis_settings().username().map(str::to_owned),
                    info.redis_settings().password().map(str::to_owned),
                    node.starts_with("rediss://"),
                );
                if credentials.get_or_insert_with(|| these.clone()) != &these {
                    // The cluster client signs in to every node it finds
                    // with one user and password, over one scheme.
                    return Err(
                        "lists nodes with different credentials or schemes (a cluster has one)"
                            .to_owned(),
                    );
                }
            }
            return Ok(Topology::Cluster(nodes));
        }
        check(url)?;
        Ok(Topology::Single(url.to_owned()))
    }

    /// The nodes to try, in order, for a subscription.
    fn nodes(&self) -> Vec<String> {
        match self {
            Topology::Single(url) => vec![url.clone()],
            Topology::Cluster(nodes) => nodes.clone(),
        }
    }
}

/// A connection to either topology. Every multi-key command and script
/// touches one tenant's keys, which share a hash tag and so a slot: the
/// cluster routes each to the node serving that slot.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// On a cluster: the master serving `key`'s slot.
fn master_of(key: &str) -> SingleNodeRoutingInfo {
    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master))
}

/// Sessions and tokens in Redis (one node or a cluster), shared by every
/// instance.
pub struct RedisStore {
    conn: Conn,
    /// The connections revocations are written over: each is then held
    /// until a replica acknowledged it (`WAIT`), which blocks the
    /// connection meanwhile, so the other traffic does not share it.
    revocations: Conn,
    /// When (Unix ms) a replica last failed to acknowledge a revocation.
    unacknowledged_at: std::sync::atomic::AtomicI64,
    prefix: String,
    timeout: Duration,
    create_session: Lua,
    get_session: Lua,
    list_page: Lua,
    cut_user: Lua,
    end_page: Lua,
    end_session: Lua,
    get_refresh: Lua,
    get_family: Lua,
    rotate: Lua,
    touch: Lua,
    revoke_family: Lua,
    login_failed: Lua,
    login_reserve: Lua,
    take: Lua,
}

fn unavailable(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Unavailable("session store", e.into())
}

impl RedisStore {
    /// Connects to one node or a cluster (see [`Topology`]); fails fast
    /// when Redis does not answer within `timeout`.
    pub async fn connect(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let topology = Topology::parse(url).map_err(|e| unavailable(anyhow::anyhow!(e)))?;
        let (conn, revocations) = tokio::try_join!(
            Self::open(&topology, timeout),
            Self::open(&topology, timeout)
        )?;
        Ok(Self {
            conn,
            revocations,
            unacknowledged_at: std::sync::atomic::AtomicI64::new(0),
            prefix: prefix.to_owned(),
            timeout,
            create_session: script(scripts::CREATE_SESSION),
            get_session: script(scripts::GET_SESSION),
            list_page: script(scripts::LIST_PAGE),
            cut_user: script(scripts::CUT_USER),
            end_page: script(scripts::END_PAGE),
            end_session: script(scripts::END_SESSION),
            get_refresh: script(scripts::GET_REFRESH),
            get_family: script(scripts::GET_FAMILY),
            rotate: script(scripts::ROTATE),
            touch: script(scripts::TOUCH),
            revoke_family: script(scripts::REVOKE_FAMILY),
            login_failed: script(scripts::LOGIN_FAILED),
            login_reserve: script(scripts::LOGIN_RESERVE),
            take: script(scripts::TAKE),
        })
    }

    /// One connection (one per node, on a cluster).
    async fn open(topology: &Topology, timeout: Duration) -> Result<Conn, StoreError> {
        Ok(match topology.clone() {
            Topology::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                Conn::Single(
                    tokio::time::timeout(
                        timeout * 3,
                        ConnectionManager::new_with_config(client, config),
                    )
                    .await
                    .map_err(unavailable)?
                    .map_err(unavailable)?,
                )
            }
            Topology::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // A request that meets a failover (its node gone, then
                    // MOVED to the promoted replica) needs a few tries, soon
                    // after one another: every write may safely run twice
                    // (the scripts are idempotent), and `call`'s timeout
                    // bounds the whole.
                    .retries(3)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .retry_wait_formula(10, 2)
                    .build()
                    .map_err(unavailable)?;
                Conn::Cluster(
                    tokio::time::timeout(timeout * 3, client.get_async_connection())
                        .await
                        .map_err(unavailable)?
                        .map_err(unavailable)?,
                )
            }
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
}

impl RedisStore {
    /// A command without a key of its own that must run where the tenant's
    /// slot lives (`SCAN`, `MEMORY USAGE`): on a cluster it is sent to the
    /// master serving `slot_key`'s slot.
    async fn on_tenant_node<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: redis::Cmd,
        slot_key: &str,
    ) -> Result<T, StoreError> {
        match &self.conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                self.call(op, cmd.query_async(&mut c)).await
            }
            Conn::Cluster(c) => {
                let mut c = c.clone();
                let routing = RoutingInfo::SingleNode(master_of(slot_key));
                let value = self.call(op, c.route_command(cmd, routing)).await?;
                T::from_redis_value(value).map_err(unavailable)
            }
        }
    }

    /// Writes a revocation (`write`, a command on `tenant`'s keys) and holds
    /// it until a replica of its master has it, so that a failover promoting
    /// that replica keeps it. `WAIT` covers the writes made on its own
    /// connection, so the write, a write of the tenant's `wmark` key (the
    /// revocation may have been written already by an earlier run, and
    /// write nothing now; replication is in order, so covering this write
    /// covers that one) and `WAIT 1` go as one pipeline over
    /// `self.revocations`, to the node serving the tenant's slot. `WAIT`
    /// blocks that connection meanwhile; the other traffic does not use it.
    ///
    /// A node without replicas has nothing to wait for. An acknowledgement
    /// that does not come is counted and logged, not an error (the master
    /// holds the revocation; a 503 would only make the client send it
    /// again), and for [`UNACKNOWLEDGED_PAUSE_MS`] no revocation waits, so a
    /// stalled replica cannot hold them all in line. The pipeline runs once
    /// more when the connection turns out to have dropped (an idle
    /// connection learns that only when it is used): revoking twice is
    /// revoking once.
    async fn revoking<T: FromRedisValue>(
        &self,
        op: &'static str,
        tenant: &str,
        write: redis::Cmd,
    ) -> Result<T, StoreError> {
        let slot_key = self.tenant_prefix(tenant);
        let wait_ms = self.replica_wait_ms(&slot_key).await?;
        let mut pipe = redis::pipe();
        pipe.add_command(write);
        if let Some(ms) = wait_ms {
            pipe.cmd("SET")
                .arg(format!("{slot_key}wmark"))
                .arg(1)
                .arg("EX")
                .arg(60);
            pipe.cmd("WAIT").arg(1).arg(ms);
        }
        let count = if wait_ms.is_some() { 3 } else { 1 };
        let mut values = self.on_revocations(op, &pipe, count, &slot_key).await?;
        let acknowledged = match wait_ms {
            Some(_) => values
                .pop()
                .and_then(|v| u64::from_redis_value(v).ok())
                .unwrap_or(0),
            None => 1,
        };
        let written = values.into_iter().next().unwrap_or(redis::Value::Nil);
        let value = T::from_redis_value(written).map_err(unavailable)?;
        if let Some(ms) = wait_ms
            && acknowledged == 0
        {
            self.unacknowledged_at.store(
                chrono::Utc::now().timestamp_millis(),
                std::sync::atomic::Ordering::Relaxed,
            );
            crate::metrics::revocation_unreplicated();
            tracing::warn!(
                op,
                wait_ms = ms,
                "no replica acknowledged a revocation in time; a failover now could lose it"
            );
        }
        Ok(value)
    }

    /// Runs `pipe` (`count` commands) over `self.revocations` on the node
    /// serving `slot_key`'s slot, once more when the connection turns out
    /// to have dropped (an idle connection learns that only when it is
    /// used; everything sent here may run twice).
    async fn on_revocations(
        &self,
        op: &'static str,
        pipe: &redis::Pipeline,
        count: usize,
        slot_key: &str,
    ) -> Result<Vec<redis::Value>, StoreError> {
        let run = || async {
            match self.revocations.clone() {
                Conn::Single(mut c) => pipe.query_async::<Vec<redis::Value>>(&mut c).await,
                Conn::Cluster(mut c) => {
                    c.route_pipeline(pipe.clone(), 0, count, master_of(slot_key))
                        .await
                }
            }
        };
        let started = std::time::Instant::now();
        let mut result = tokio::time::timeout(self.timeout, run()).await;
        if matches!(&result, Ok(Err(e)) if e.is_connection_dropped() || e.is_io_error()) {
            result = tokio::time::timeout(self.timeout, run()).await;
        }
        crate::metrics::store_round_trip(op, started);
        result.map_err(unavailable)?.map_err(unavailable)
    }

    /// How long a revocation on `slot_key`'s node waits for a replica
    /// (milliseconds): `None` when that node has no replica (`INFO
    /// replication`) or a replica failed to acknowledge one lately.
    async fn replica_wait_ms(&self, slot_key: &str) -> Result<Option<u64>, StoreError> {
        let since = chrono::Utc::now().timestamp_millis()
            - self
                .unacknowledged_at
                .load(std::sync::atomic::Ordering::Relaxed);
        if since < UNACKNOWLEDGED_PAUSE_MS {
            return Ok(None);
        }
        // Paired with a read of a key of the slot: should the cluster
        // client send it to another node (after a failover, before it
        // learned the new map), that node answers MOVED and the pair
        // follows, so `INFO` describes the node that serves the slot.
        let mut pipe = redis::pipe();
        pipe.cmd("EXISTS")
            .arg(format!("{slot_key}wmark"))
            .cmd("INFO")
            .arg("replication");
        let info = self
            .on_revocations("replicas", &pipe, 2, slot_key)
            .await?
            .pop()
            .map(String::from_redis_value)
            .transpose()
            .map_err(unavailable)?
            .unwrap_or_default();
        let replicas = info
            .lines()
            .find_map(|line| line.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        Ok((replicas > 0).then_some(REPLICA_ACK_WAIT_MS.min(timeout_ms / 2).max(1)))
    }
}

/// What `get_refresh.lua` answers: the token's hash fields, its family's,
/// the session state, the user cut-off and the sealed successor.
type EarlierToken = (Vec<String>, Vec<String>, String, String, String);

impl RedisStore {
    /// One `SCAN` page of a tenant's keys from `cursor`: `(next cursor, keys)`.
    async fn scan_tenant(
        &self,
        op: &'static str,
        tenant: &str,
        cursor: u64,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let pattern = format!(
            "{}*",
            self.tenant_prefix(tenant)
                .replace('{', "\\{")
                .replace('}', "\\}")
        );
        let mut scan = redis::cmd("SCAN");
        scan.arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500);
        self.on_tenant_node(op, scan, &self.tenant_prefix(tenant))
            .await
    }

    /// A token of an earlier version, stored under its own hash.
    async fn get_earlier_refresh(
        &self,
        tenant: &str,
        hash: &str,
    ) -> Result<Option<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.get_refresh.prepare_invoke();
        inv.key(self.key(tenant, "rt", hash))
            .arg(self.tenant_prefix(tenant));
        let found: Option<EarlierToken> = self
            .call("get_refresh", inv.invoke_async(&mut conn))
            .await?;
        let Some((token, family, session_state, cut, sealed)) = found else {
            return Ok(None);
        };
        let h = pairs_to_map(token);
        let fam = pairs_to_map(family);
        let field = |k: &str| h.get(k).cloned().unwrap_or_default();
        let fam_field = |k: &str| fam.get(k).cloned().unwrap_or_default();
        let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let record = RefreshRecord {
            family_id: field("family"),
            session_id: field("sid"),
            client_id: field("client"),
            user_id: field("user"),
            expires_at: num("exp"),
            family_expires_at: num("fexp"),
            scope: field("scope"),
            client_generation: field("cgen"),
        };
        let current = fam_field("current");
        let state = if field("state") == "current" && current == hash {
            RefreshState::Current
        } else if fam_field("prev") == hash {
            // Rotated by this version: the family holds the grace data.
            RefreshState::Rotated {
                rotated_at: fam_field("prev_at").parse().unwrap_or(0),
                successor_is_current: true,
                sealed_successor: Some(sealed).filter(|s| !s.is_empty()),
            }
        } else if field("state") == "current" {
            RefreshState::Rotated {
                rotated_at: 0,
                successor_is_current: false,
                sealed_successor: None,
            }
        } else {
            RefreshState::Rotated {
                rotated_at: num("rotated_at"),
                successor_is_current: !current.is_empty() && field("successor") == current,
                sealed_successor: h.get("sealed").cloned(),
            }
        };
        Ok(Some(RefreshEntry {
            record,
            state,
            family_active: fam_field("status") == "active",
            session_active: standing(Some(&session_state), Some(&cut)) == AccessState::Active,
        }))
    }
}

/// A family's record, from its hash.
fn record_of(family_id: &str, fam: &HashMap<String, String>) -> RefreshRecord {
    let field = |k: &str| fam.get(k).cloned().unwrap_or_default();
    let num = |k: &str| fam.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    RefreshRecord {
        family_id: family_id.to_owned(),
        session_id: field("sid"),
        client_id: field("client"),
        user_id: field("user"),
        expires_at: num("exp"),
        family_expires_at: num("fexp"),
        scope: field("scope"),
        client_generation: field("cgen"),
    }
}

/// The pub/sub channel of cache-invalidating changes.
fn changes_channel(prefix: &str) -> String {
    format!("{prefix}:changes")
}

/// How long the change listener waits for a node to connect or to answer.
const LISTENER_DEADLINE: Duration = Duration::from_secs(2);

/// How often the change listener checks that its node still answers: a node
/// that stops (a paused process, a lost network) does not close the
/// connection, and a subscription alone would wait on it for ever.
const LISTENER_PING_EVERY: Duration = Duration::from_secs(3);

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
        // On a cluster every node relays every PUBLISH (the cluster bus), so
        // one subscription to any node hears all; a node that fails or stops
        // answering is left for the next one in the list.
        let nodes = Topology::parse(&url)
            .map(|t| t.nodes())
            .unwrap_or_else(|_| vec![url.clone()]);
        for node in nodes.iter().cycle() {
            let subscribed = tokio::time::timeout(LISTENER_DEADLINE, async {
                let client = redis::Client::open(node.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                redis::RedisResult::Ok(pubsub)
            })
            .await;
            match subscribed {
                Ok(Ok(pubsub)) => {
                    on_change("*");
                    let (mut sink, mut messages) = pubsub.split();
                    let mut ping = tokio::time::interval(LISTENER_PING_EVERY);
                    ping.reset();
                    loop {
                        tokio::select! {
                            msg = messages.next() => match msg {
                                Some(msg) => {
                                    if let Ok(payload) = msg.get_payload::<String>() {
                                        on_change(&payload);
                                    }
                                }
                                None => {
                                    tracing::warn!("change channel closed; reconnecting");
                                    break;
                                }
                            },
                            _ = ping.tick() => {
                                let answered = tokio::time::timeout(
                                    LISTENER_DEADLINE,
                                    sink.ping::<redis::Value>(),
                                )
                                .await;
                                if !matches!(answered, Ok(Ok(_))) {
                                    tracing::warn!("change channel's node stopped answering; reconnecting");
                                    break;
                                }
                            }
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot follow the change channel; retrying");
                }
                Err(_) => tracing::warn!("change channel's node did not answer; retrying"),
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
        max_sessions: usize,
        linger: u64,
    ) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.create_session.prepare_invoke();
        inv.key(self.key(tenant, "sst", &s.id))
            .key(self.key(tenant, "sess", &s.id))
            .key(self.key(tenant, "usess", &s.user_id))
            .key(self.key(tenant, "ucut", &s.user_id))
            .arg(ttl.max(1))
            .arg(&s.id)
            .arg(s.created_at)
            .arg(linger.max(1))
            .arg(max_sessions.max(1))
            .arg(self.tenant_prefix(tenant));
        for (field, value) in [
            ("id", s.id.clone()),
            ("user_id", s.user_id.clone()),
            ("client_id", s.client_id.clone()),
            ("created_at", s.created_at.to_string()),
            ("last_used_at", s.last_used_at.to_string()),
            ("ip", s.ip.clone().unwrap_or_default()),
            ("user_agent", s.user_agent.clone().unwrap_or_default()),
        ] {
            inv.arg(field).arg(value);
        }
        self.call("create_session", inv.invoke_async(&mut conn))
            .await
    }

    async fn get_session(
        &self,
        tenant: &str,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.get_session.prepare_invoke();
        inv.key(self.key(tenant, "sst", sid))
            .key(self.key(tenant, "sess", sid))
            .arg(self.tenant_prefix(tenant));
        let (state, flat, cut): (String, Vec<String>, String) = self
            .call("get_session", inv.invoke_async(&mut conn))
            .await?;
        if standing(Some(&state), Some(&cut)) != AccessState::Active {
            return Ok(None);
        }
        Ok(session_from_hash(&pairs_to_map(flat)))
    }

    async fn list_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let mut out: Vec<SessionRecord> = Vec::new();
        let mut start = 0usize;
        loop {
            let mut conn = self.conn.clone();
            let mut inv = self.list_page.prepare_invoke();
            inv.key(self.key(tenant, "usess", user_id))
                .key(self.key(tenant, "ucut", user_id))
                .arg(self.tenant_prefix(tenant))
                .arg(start)
                .arg(SESSION_PAGE);
            let (seen, dropped, rows): (usize, usize, Vec<Vec<String>>) = self
                .call("list_user_sessions", inv.invoke_async(&mut conn))
                .await?;
            out.extend(
                rows.into_iter()
                    .filter_map(|flat| session_from_hash(&pairs_to_map(flat))),
            );
            if seen < SESSION_PAGE {
                break;
            }
            start += seen - dropped;
        }
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
        let state = self.key(tenant, "sst", sid);
        let mut inv = self.end_session.prepare_invoke();
        inv.key(&state)
            .key(self.key(tenant, "sess", sid))
            .arg(self.tenant_prefix(tenant))
            .arg(reason.as_str())
            .arg(linger.max(1))
            .arg(sid);
        let was: i64 = self.revoking("end_session", tenant, inv.eval()).await?;
        Ok(was == 1)
    }

    async fn end_user_sessions(
        &self,
        tenant: &str,
        user_id: &str,
        cut: UserCut<'_>,
    ) -> Result<usize, StoreError> {
        let ucut = self.key(tenant, "ucut", user_id);
        let except_state = cut.except.map(|sid| self.key(tenant, "sst", sid));
        let mut inv = self.cut_user.prepare_invoke();
        inv.key(&ucut)
            .key(except_state.as_deref().unwrap_or(&ucut))
            .arg(cut.reason.as_str())
            .arg(cut.lifetime.max(cut.linger).max(CUT_MIN_TTL))
            .arg(if cut.except.is_some() { "1" } else { "0" });
        // The cut-off is what revokes; the pages below only tidy up.
        let generation: u64 = self
            .revoking("end_user_sessions", tenant, inv.eval())
            .await?;
        let mut conn = self.conn.clone();
        let mut ended = 0usize;
        let mut start = 0usize;
        loop {
            let mut inv = self.end_page.prepare_invoke();
            inv.key(self.key(tenant, "usess", user_id))
                .arg(self.tenant_prefix(tenant))
                .arg(start)
                .arg(SESSION_PAGE)
                .arg(generation)
                .arg(cut.reason.as_str())
                .arg(cut.linger.max(1))
                .arg(cut.except.unwrap_or(""));
            let (seen, dropped, n): (usize, usize, usize) = self
                .call("end_user_sessions", inv.invoke_async(&mut conn))
                .await?;
            ended += n;
            if seen < SESSION_PAGE {
                return Ok(ended);
            }
            start += seen - dropped;
        }
    }

    async fn start_family(
        &self,
        tenant: &str,
        hash: &str,
        r: &RefreshRecord,
    ) -> Result<(), StoreError> {
        let ttl = remaining(r.family_expires_at);
        let fam = self.key(tenant, "fam", &r.family_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(&fam)
            .ignore()
            .hset_multiple(
                &fam,
                &[
                    ("current", hash.to_owned()),
                    ("status", "active".to_owned()),
                    ("sid", r.session_id.clone()),
                    ("client", r.client_id.clone()),
                    ("user", r.user_id.clone()),
                    ("exp", r.expires_at.to_string()),
                    ("fexp", r.family_expires_at.to_string()),
                    ("scope", r.scope.clone()),
                    ("cgen", r.client_generation.clone()),
                ],
            )
            .ignore()
            .expire(&fam, ttl)
            .ignore();
        let mut conn = self.conn.clone();
        self.call("start_family", pipe.query_async::<()>(&mut conn))
            .await
    }

    async fn get_refresh(
        &self,
        tenant: &str,
        presented: PresentedRefresh<'_>,
    ) -> Result<Option<RefreshEntry>, StoreError> {
        let mut conn = self.conn.clone();
        let Some(family_id) = presented.family_id else {
            return self.get_earlier_refresh(tenant, presented.hash).await;
        };
        let mut inv = self.get_family.prepare_invoke();
        inv.key(self.key(tenant, "fam", family_id))
            .key(self.key(tenant, "grace", family_id))
            .arg(self.tenant_prefix(tenant));
        let found: Option<(Vec<String>, String, String, String)> = self
            .call("get_refresh", inv.invoke_async(&mut conn))
            .await?;
        let Some((flat, session_state, cut, sealed)) = found else {
            return Ok(None);
        };
        let fam = pairs_to_map(flat);
        let record = record_of(family_id, &fam);
        let field = |k: &str| fam.get(k).cloned().unwrap_or_default();
        let state = if field("current") == presented.hash {
            RefreshState::Current
        } else if field("prev") == presented.hash {
            RefreshState::Rotated {
                rotated_at: field("prev_at").parse().unwrap_or(0),
                successor_is_current: true,
                sealed_successor: Some(sealed).filter(|s| !s.is_empty()),
            }
        } else {
            // An older token of the family: only a holder of one of its
            // tokens knows the family it names. Reuse.
            RefreshState::Rotated {
                rotated_at: 0,
                successor_is_current: false,
                sealed_successor: None,
            }
        };
        Ok(Some(RefreshEntry {
            record,
            state,
            family_active: field("status") == "active",
            session_active: standing(Some(&session_state), Some(&cut)) == AccessState::Active,
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
        inv.key(self.key(tenant, "fam", &n.family_id))
            .key(self.key(tenant, "sst", &n.session_id))
            .key(self.key(tenant, "ucut", &n.user_id))
            .key(self.key(tenant, "sess", &n.session_id))
            .key(self.key(tenant, "grace", &n.family_id))
            .arg(r.old_hash)
            .arg(r.new_hash)
            .arg(r.now)
            .arg(remaining(n.family_expires_at))
            .arg(r.sealed_successor)
            .arg(r.grace_seconds + 2)
            .arg(&n.session_id)
            .arg(&n.client_id)
            .arg(&n.user_id)
            .arg(n.expires_at)
            .arg(n.family_expires_at)
            .arg(&n.scope)
            .arg(&n.client_generation);
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
        let family = self.key(tenant, "fam", family_id);
        let mut inv = self.revoke_family.prepare_invoke();
        inv.key(&family);
        self.revoking::<i64>("revoke_family", tenant, inv.eval())
            .await?;
        Ok(())
    }

    async fn deny_jti(&self, tenant: &str, jti: &str, ttl: u64) -> Result<(), StoreError> {
        let key = self.key(tenant, "deny", jti);
        let mut deny = redis::cmd("SET");
        deny.arg(&key).arg(1).arg("EX").arg(ttl.max(1));
        self.revoking::<()>("deny_jti", tenant, deny).await
    }

    async fn access_state(
        &self,
        tenant: &str,
        jti: &str,
        session: Option<(&str, &str)>,
    ) -> Result<AccessState, StoreError> {
        let mut conn = self.conn.clone();
        let mut keys = vec![
            self.key(tenant, "deny", jti),
            format!("{}synced", self.tenant_prefix(tenant)),
        ];
        if let Some((sid, user)) = session {
            keys.push(self.key(tenant, "sst", sid));
            keys.push(self.key(tenant, "ucut", user));
        }
        let values: Vec<Option<String>> = self.call("access_state", conn.mget(&keys)).await?;
        let get = |i: usize| values.get(i).cloned().flatten();
        if get(0).is_some() {
            return Ok(AccessState::Revoked);
        }
        if get(1).is_none() {
            return Ok(AccessState::Unsynced);
        }
        Ok(match session {
            Some(_) => standing(get(2).as_deref(), get(3).as_deref()),
            None => AccessState::Active,
        })
    }

    async fn mark_synced(&self, tenant: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}synced", self.tenant_prefix(tenant));
        self.call("mark_synced", conn.set_ex::<_, _, ()>(&key, 1, SYNCED_TTL))
            .await
    }

    async fn is_synced(&self, tenant: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let key = format!("{}synced", self.tenant_prefix(tenant));
        self.call("is_synced", conn.exists(&key)).await
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
        let mut cursor: u64 = 0;
        loop {
            let (next, keys) = self.scan_tenant("purge_tenant", tenant, cursor).await?;
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
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<LoginAttempt, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.login_failed.prepare_invoke();
        inv.key(self.key(tenant, "lock", user_id))
            .arg(now)
            .arg(policy.threshold)
            .arg(policy.window_seconds)
            .arg(policy.base_lock_seconds)
            .arg(policy.max_lock_seconds)
            .arg(policy.memory_seconds.max(1))
            .arg(attempt_id);
        let (failures, locked_until, level, counted): (u32, i64, u32, u8) = self
            .call("login_failed", inv.invoke_async(&mut conn))
            .await?;
        Ok(LoginAttempt {
            lock: LoginLock {
                failures,
                locked_until,
                level,
            },
            counted: counted == 1,
        })
    }

    async fn reserve_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
        policy: &LockoutPolicy,
        now: i64,
    ) -> Result<Reservation, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.login_reserve.prepare_invoke();
        inv.key(self.key(tenant, "lock", user_id))
            .key(self.key(tenant, "lockp", user_id))
            .arg(now)
            .arg(attempt_id)
            .arg(ATTEMPT_TTL)
            .arg(policy.threshold)
            .arg(policy.window_seconds);
        let answer: String = self
            .call("reserve_login_attempt", inv.invoke_async(&mut conn))
            .await?;
        Ok(match answer.as_str() {
            "admitted" => Reservation::Admitted,
            "wait" => Reservation::Wait,
            _ => Reservation::Locked,
        })
    }

    async fn release_login_attempt(
        &self,
        tenant: &str,
        user_id: &str,
        attempt_id: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "lockp", user_id);
        self.call(
            "release_login_attempt",
            conn.zrem::<_, _, ()>(&key, attempt_id),
        )
        .await
    }

    async fn clear_login_failures(&self, tenant: &str, user_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, "lock", user_id);
        self.call("clear_login_failures", conn.del::<_, ()>(&key))
            .await
    }

    async fn tenant_footprint(&self, tenant: &str) -> Result<(usize, u64), StoreError> {
        let (mut keys, mut bytes) = (0usize, 0u64);
        let mut cursor: u64 = 0;
        loop {
            let (next, found) = self.scan_tenant("tenant_footprint", tenant, cursor).await?;
            for key in found {
                let mut usage = redis::cmd("MEMORY");
                usage.arg("USAGE").arg(&key);
                let used: Option<u64> =
                    self.on_tenant_node("tenant_footprint", usage, &key).await?;
                keys += 1;
                bytes += used.unwrap_or(0);
            }
            if next == 0 {
                return Ok((keys, bytes));
            }
            cursor = next;
        }
    }

    async fn put_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        value: &str,
        ttl: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, kind.prefix(), id);
        let value = format!("{FRESH}{value}");
        self.call(
            "put_ephemeral",
            conn.set_ex::<_, _, ()>(&key, value, ttl.max(1)),
        )
        .await
    }

    async fn get_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, kind.prefix(), id);
        let stored: Option<String> = self.call("get_ephemeral", conn.get(&key)).await?;
        Ok(stored.and_then(|v| v.strip_prefix(FRESH).map(str::to_owned)))
    }

    async fn delete_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(tenant, kind.prefix(), id);
        self.call("delete_ephemeral", conn.del::<_, ()>(&key)).await
    }

    async fn take_ephemeral(
        &self,
        tenant: &str,
        kind: Ephemeral,
        id: &str,
        mark: &str,
        mark_ttl: u64,
    ) -> Result<Taken, StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.take.prepare_invoke();
        inv.key(self.key(tenant, kind.prefix(), id))
            .arg(mark)
            .arg(mark_ttl.max(1));
        let stored: Option<String> = self
            .call("take_ephemeral", inv.invoke_async(&mut conn))
            .await?;
        Ok(taken_of(stored.as_deref()))
    }

    /// One node: `PING`. A cluster: the cluster's own verdict
    /// (`CLUSTER INFO`, from whichever node answers first): `cluster_state:ok`
    /// while it serves every slot, or, with `cluster-require-full-coverage
    /// no`, while a master is down and the other slots are served. Requests
    /// for the slots of a master that is down answer 503 on their own; the
    /// instance stays ready for every other tenant.
    async fn ping(&self) -> Result<(), StoreError> {
        match &self.conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                let _: redis::Value = self
                    .call("ping", redis::cmd("PING").query_async(&mut c))
                    .await?;
                Ok(())
            }
            Conn::Cluster(c) => {
                let mut c = c.clone();
                let routing = RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllNodes,
                    Some(ResponsePolicy::OneSucceeded),
                ));
                let mut info = redis::cmd("CLUSTER");
                info.arg("INFO");
                let value = self.call("ping", c.route_command(info, routing)).await?;
                let info = String::from_redis_value(value).map_err(unavailable)?;
                if info.lines().any(|l| l.trim() == "cluster_state:ok") {
                    Ok(())
                } else {
                    Err(unavailable(anyhow::anyhow!(
                        "the cluster does not serve every slot (cluster_state:fail)"
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod topology_tests {
    use super::Topology;

    #[test]
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(
            Topology::parse("redis+cluster://a:7000,b:7001"),
            Ok(Topology::Cluster(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ]))
        );
        assert_eq!(
            Topology::parse("rediss+cluster://user:pw@a:7000,b:7001/"),
            Ok(Topology::Cluster(vec![
                "rediss://user:pw@a:7000".to_owned(),
                "rediss://user:pw@b:7001".to_owned()
            ]))
        );
        assert_eq!(
            Topology::parse("redis://a:7000,redis://b:7001"),
            Ok(Topology::Cluster(vec![
                "redis://a:7000".to_owned(),
                "redis://b:7001".to_owned()
            ]))
        );
        assert_eq!(
            Topology::parse("redis://:pw@cache:6379/2"),
            Ok(Topology::Single("redis://:pw@cache:6379/2".to_owned()))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for bad in [
            "http://cache:6379",
            "redis+cluster://",
            "redis+cluster://a:7000,,b:7001",
            "redis://:secret@a:7000,http://:secret@b:7001",
            "redis+cluster://:secret@a:notaport",
            "redis+cluster://:secret@a:7000,b:7001/2",
            "redis+cluster://:secret@a:7000?protocol=resp3",
            "redis://:secret@a:7000,redis://:other@b:7001",
            "redis://:secret@a:7000,rediss://:secret@b:7001",
            "redis://:secret@a:7000/2,redis://:secret@b:7001/2",
        ] {
            let e = Topology::parse(bad).expect_err(bad);
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
