//! What every request can reach: configuration, stores, keys, policies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::authn::keys::KeyRing;
use crate::authn::password::PasswordHasherPool;
use crate::authz::Authorizer;
use crate::config::Config;
use crate::store::StoreError;
use crate::store::db::Db;
use crate::store::db::tenants::{self, Tenant};
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
}

impl Change {
    fn message(&self) -> String {
        match self {
            Self::Policy(t) => format!("policy:{t}"),
            Self::Keys(t) => format!("keys:{t}"),
            Self::Tenant(t) => format!("tenant:{t}"),
        }
    }
}

/// How long a tenant read from the database is reused by this instance.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(2);

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
    tenants: RwLock<HashMap<String, (Arc<Tenant>, Instant)>>,
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
            tenants: RwLock::new(HashMap::new()),
        }
    }

    /// The tenant, from a short-lived cache.
    pub async fn tenant(&self, slug: &str) -> Result<Arc<Tenant>, StoreError> {
        if let Some((t, at)) = self.tenants.read().get(slug)
            && at.elapsed() < TENANT_CACHE_TTL
        {
            return Ok(t.clone());
        }
        let owned = slug.to_owned();
        let tenant = Arc::new(self.db.run(move |c| tenants::get(c, &owned)).await?);
        self.tenants
            .write()
            .insert(slug.to_owned(), (tenant.clone(), Instant::now()));
        Ok(tenant)
    }

    /// Drops a tenant from the cache after it changed.
    pub fn forget_tenant(&self, slug: &str) {
        self.tenants.write().remove(slug);
    }

    /// Applies a change here at once and tells every other instance.
    pub async fn changed(&self, change: Change) -> Result<(), StoreError> {
        let message = change.message();
        self.apply_change(&message);
        self.sessions.publish_change(&message).await
    }

    /// Drops what a change makes stale; `*` drops everything (after a
    /// reconnect, when messages may have been missed).
    pub fn apply_change(&self, message: &str) {
        match message.split_once(':') {
            Some(("policy", t)) => self.authz.forget(t),
            Some(("keys", t)) => self.keys.forget(t),
            Some(("tenant", t)) => self.forget_tenant(t),
            _ if message == "*" => {
                self.authz.forget_all();
                self.keys.forget_all();
                self.tenants.write().clear();
            }
            _ => tracing::debug!(message, "unknown change message"),
        }
    }

    pub fn issuer(&self, tenant: &str) -> String {
        crate::authn::tokens::issuer(&self.public_url, tenant)
    }

    /// How long an ended session's state must linger: as long as any access
    /// token of it can still be presented.
    pub fn linger(&self, tenant: &Tenant) -> u64 {
        tenant.settings.access_token_ttl_seconds + self.config.clock_leeway_seconds + 60
    }
}
