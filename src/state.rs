//! What every request can reach: configuration, stores, keys, policies.

use std::sync::Arc;
use std::time::Duration;

use crate::authn::keys::KeyRing;
use crate::authn::password::PasswordHasherPool;
use crate::authz::Authorizer;
use crate::cache::Cached;
use crate::config::Config;
use crate::store::StoreError;
use crate::store::db::Db;
use crate::store::db::clients::{self, Client};
use crate::store::db::tenants::{self, Tenant};
use crate::store::db::users::{self, User};
use crate::store::session::SessionStore;

/// A change other instances must learn about, so they drop what they cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Roles, permissions or assignments of a tenant.
    Policy(String),
    /// Signing keys of a tenant.
    Keys(String),
    /// A tenant's name, status or settings.
    Tenant(String),
    /// A client of a tenant: `(tenant, client_id)`.
    Client(String, String),
    /// Every client of a tenant (suspension renews their generations).
    Clients(String),
    /// A user of a tenant (status, e-mail, password, deletion): `(tenant, user id)`.
    User(String, String),
}

impl Change {
    /// The text the bus and the change log carry.
    pub fn message(&self) -> String {
        match self {
            Self::Policy(t) => format!("policy:{t}"),
            Self::Keys(t) => format!("keys:{t}"),
            Self::Tenant(t) => format!("tenant:{t}"),
            Self::Client(t, c) => format!("client:{t}:{c}"),
            Self::Clients(t) => format!("clients:{t}"),
            Self::User(t, u) => format!("user:{t}:{u}"),
        }
    }
}

/// How long a database view is reused at most; changes invalidate it much
/// sooner (at once here, through the bus and the change log elsewhere).
const VIEW_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long one readiness probe answers `/readyz` (unauthenticated and not
/// rate limited, so it must not reach the database per call).
const READINESS_TTL: Duration = Duration::from_secs(1);
/// Tenants and clients (known or not) held per instance at most.
const VIEW_CACHE_CAPACITY: u64 = 10_000;

/// Shared application state.
pub struct AppState {
    pub config: Config,
    /// Base of every issuer, without a trailing slash.
    pub public_url: String,
    pub db: Db,
    pub sessions: Arc<dyn SessionStore>,
    pub keys: KeyRing,
    pub authz: Authorizer,
    pub passwords: PasswordHasherPool,
    /// Whose `X-Forwarded-For` is believed (rate limits, audit, sessions).
    pub proxies: crate::ratelimit::TrustedProxies,
    /// One refill of the session store's durable denials at a time.
    pub refill_lock: tokio::sync::Mutex<()>,
    tenants: Cached<String, Option<Arc<Tenant>>>,
    /// The last readiness probe: `(database up, session store up)`.
    readiness: Cached<(), (bool, bool)>,
    clients: Cached<(String, String), Option<Arc<Client>>>,
    /// Users as the database has them, for userinfo and token grants.
    users: Cached<(String, String), Option<Arc<User>>>,
    /// Per tenant: the web origins of its clients' redirect URIs (CORS, SPEC §9).
    origins: Cached<String, Arc<crate::domain::WebOrigins>>,
}

impl AppState {
    pub fn new(
        config: Config,
        public_url: String,
        db: Db,
        sessions: Arc<dyn SessionStore>,
        keys: KeyRing,
        passwords: PasswordHasherPool,
    ) -> Self {
        Self {
            authz: Authorizer::new(db.clone()),
            proxies: config.proxies().unwrap_or_default(),
            config,
            public_url,
            db,
            sessions,
            keys,
            passwords,
            refill_lock: tokio::sync::Mutex::new(()),
            tenants: Cached::new(VIEW_CACHE_CAPACITY, VIEW_CACHE_TTL),
            readiness: Cached::new(1, READINESS_TTL),
            clients: Cached::new(VIEW_CACHE_CAPACITY, VIEW_CACHE_TTL),
            origins: Cached::new(VIEW_CACHE_CAPACITY, VIEW_CACHE_TTL),
            users: Cached::new(VIEW_CACHE_CAPACITY, VIEW_CACHE_TTL),
        }
    }

    /// A user as the database has it, from this instance's view (never
    /// more than a second behind a change made anywhere: every user write
    /// is in the change log); `None` when the tenant has no such user.
    pub async fn user(&self, tenant: &str, id: &str) -> Result<Option<Arc<User>>, StoreError> {
        // Ids that cannot exist are answered without a lookup or an entry.
        if id.is_empty() || id.len() > 64 {
            return Ok(None);
        }
        let key = (tenant.to_owned(), id.to_owned());
        self.users
            .get_or_load(&key, || {
                let (t, u) = key.clone();
                async move {
                    Ok(self
                        .db
                        .run(move |conn| users::find(conn, &t, &u))
                        .await?
                        .map(Arc::new))
                }
            })
            .await
    }

    /// The web origins a tenant's enabled clients redirect to, from this
    /// instance's view: browser applications there may call the token,
    /// revocation and userinfo endpoints (SPEC §9).
    pub async fn client_origins(
        &self,
        tenant: &str,
    ) -> Result<Arc<crate::domain::WebOrigins>, StoreError> {
        let key = tenant.to_owned();
        self.origins
            .get_or_load(&key, || {
                let t = key.clone();
                async move {
                    let uris = self
                        .db
                        .run(move |conn| clients::redirect_uris_of_tenant(conn, &t))
                        .await?;
                    Ok(Arc::new(crate::domain::WebOrigins::of(&uris)))
                }
            })
            .await
    }

    /// The tenant as the database has it, from this instance's view (never
    /// more than a second behind a change made anywhere); `NotFound` when
    /// there is no such tenant.
    pub async fn tenant(&self, slug: &str) -> Result<Arc<Tenant>, StoreError> {
        // Slugs that cannot exist are answered without a lookup or an entry.
        if crate::domain::TenantSlug::parse(slug).is_err() {
            return Err(StoreError::NotFound("tenant"));
        }
        let key = slug.to_owned();
        let found = self
            .tenants
            .get_or_load(&key, || {
                let owned = key.clone();
                async move {
                    match self.db.run(move |c| tenants::get(c, &owned)).await {
                        Ok(t) => Ok(Some(Arc::new(t))),
                        Err(StoreError::NotFound(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        found.ok_or(StoreError::NotFound("tenant"))
    }

    /// A client as the database has it, from this instance's view; `None`
    /// when the tenant has no such client.
    pub async fn client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, StoreError> {
        let key = (tenant.to_owned(), client_id.to_owned());
        self.clients
            .get_or_load(&key, || {
                let (t, c) = key.clone();
                async move {
                    Ok(self
                        .db
                        .run(move |conn| clients::find(conn, &t, &c))
                        .await?
                        .map(Arc::new))
                }
            })
            .await
    }

    /// Whether the database and the session store answer, probed at most
    /// once a second (one probe at a time): `(database, session store)`.
    pub async fn readiness(&self) -> (bool, bool) {
        let probe = || async {
            let (db, store) = tokio::join!(self.db.ping(), self.sessions.ping());
            if let Err(e) = &db {
                tracing::warn!(error = %e, "readiness: database down");
            }
            if let Err(e) = &store {
                tracing::warn!(error = %e, "readiness: session store down");
            }
            Ok((db.is_ok(), store.is_ok()))
        };
        self.readiness
            .get_or_load(&(), probe)
            .await
            .unwrap_or((false, false))
    }

    /// Drops a tenant from the cache after it changed.
    pub fn forget_tenant(&self, slug: &str) {
        self.tenants.invalidate(&slug.to_owned());
    }

    /// Records a change in the change log (which every instance polls),
    /// then announces it. Changes that must reach every instance even if
    /// this one stops right after the write are recorded in the write's own
    /// transaction instead (`changes::record`), then `announce`d.
    pub async fn changed(&self, change: Change) -> Result<(), StoreError> {
        // Here first, whatever happens next.
        self.apply_change(&change.message());
        let logged = change.message();
        self.db
            .run(move |c| crate::store::db::changes::record(c, &logged))
            .await?;
        self.announce(change).await;
        Ok(())
    }

    /// Applies a recorded change here at once and tells every other
    /// instance through the bus; if the bus fails, the change log still
    /// reaches them within a second.
    pub async fn announce(&self, change: Change) {
        let message = change.message();
        self.apply_change(&message);
        if let Err(e) = self.sessions.publish_change(&message).await {
            tracing::warn!(error = %e, change = %message, "change not published; instances learn it from the change log");
        }
    }

    /// Drops what a change makes stale; `*` drops everything (after a
    /// reconnect, when messages may have been missed).
    pub fn apply_change(&self, message: &str) {
        match message.split_once(':') {
            Some(("policy", t)) => self.authz.forget(t),
            Some(("keys", t)) => self.keys.forget(t),
            Some(("tenant", t)) => {
                self.forget_tenant(t);
                // A deleted tenant takes its users along; rare.
                self.users.invalidate_all();
            }
            Some(("user", rest)) => {
                if let Some((t, u)) = rest.split_once(':') {
                    self.users.invalidate(&(t.to_owned(), u.to_owned()));
                }
            }
            // Entries are keyed by (tenant, client): drop them all, rarely.
            Some(("clients", t)) => {
                self.clients.invalidate_all();
                self.origins.invalidate(&t.to_owned());
            }
            Some(("client", rest)) => {
                if let Some((t, c)) = rest.split_once(':') {
                    self.clients.invalidate(&(t.to_owned(), c.to_owned()));
                    self.origins.invalidate(&t.to_owned());
                }
            }
            _ if message == "*" => {
                self.authz.forget_all();
                self.keys.forget_all();
                self.tenants.invalidate_all();
                self.clients.invalidate_all();
                self.origins.invalidate_all();
                self.users.invalidate_all();
            }
            _ => tracing::debug!(message, "unknown change message"),
        }
    }

    pub fn issuer(&self, tenant: &str) -> String {
        crate::authn::tokens::issuer(&self.public_url, tenant)
    }

    /// A cut-off of every session of a user of `tenant` but `except`.
    pub fn user_cut<'a>(
        &self,
        tenant: &Tenant,
        except: Option<&'a str>,
        reason: crate::store::session::EndReason,
    ) -> crate::store::session::UserCut<'a> {
        let s = &tenant.settings;
        crate::store::session::UserCut {
            except,
            reason,
            linger: self.linger(tenant),
            lifetime: s.refresh_token_ttl_seconds.max(s.access_token_ttl_seconds)
                + self.config.clock_leeway_seconds,
        }
    }

    /// How long an ended session's state must linger: as long as any access
    /// token of it can still be presented.
    pub fn linger(&self, tenant: &Tenant) -> u64 {
        tenant.settings.access_token_ttl_seconds + self.config.clock_leeway_seconds + 60
    }
}
