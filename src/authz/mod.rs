//! Authorization: Casbin RBAC with domains (the tenant slug is the domain).
//!
//! Each tenant has its own enforcer, loaded from the database through
//! [`adapter::DbAdapter`] with only that tenant's rules. Requests read an
//! `Arc` snapshot; a policy change builds a fresh enforcer and swaps it in,
//! so no request ever waits on a write lock held across a reload.

pub mod adapter;

use std::collections::HashMap;
use std::sync::Arc;

use casbin::{CoreApi, DefaultModel, Enforcer};
use parking_lot::RwLock;

use crate::domain::SYSTEM_TENANT;
use crate::store::StoreError;
use crate::store::db::policies::{self, RuleRow};
use crate::store::db::{Db, DbConnection};

/// The Casbin model of SPEC §6.
pub const MODEL: &str = r#"
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && (p.obj == "*" || r.obj == p.obj) && (p.act == "*" || r.act == p.act)
"#;

/// The admin resources of SPEC §6.
pub const ADMIN_RESOURCES: &[&str] = &[
    "users", "roles", "clients", "keys", "audit", "sessions", "tenant", "authz",
];

pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_VIEWER: &str = "viewer";
pub const ROLE_PLATFORM_ADMIN: &str = "platform-admin";

/// Writes the built-in roles and their permissions for a new tenant.
pub fn seed_builtin_roles(conn: &mut DbConnection, tenant: &str) -> Result<(), StoreError> {
    let rule = |role: &str, obj: &str, act: &str| {
        RuleRow::new(
            tenant,
            "p",
            &[
                role.to_owned(),
                tenant.to_owned(),
                obj.to_owned(),
                act.to_owned(),
            ],
        )
    };
    if tenant == SYSTEM_TENANT {
        policies::insert_role(
            conn,
            tenant,
            ROLE_PLATFORM_ADMIN,
            "Manages every tenant of the platform",
            true,
        )?;
        policies::insert_rule(conn, &rule(ROLE_PLATFORM_ADMIN, "*", "*"))?;
    }
    policies::insert_role(
        conn,
        tenant,
        ROLE_ADMIN,
        "Every admin permission in the tenant",
        true,
    )?;
    policies::insert_role(
        conn,
        tenant,
        ROLE_VIEWER,
        "Read-only access to the tenant",
        true,
    )?;
    for resource in ADMIN_RESOURCES {
        policies::insert_rule(conn, &rule(ROLE_ADMIN, resource, "read"))?;
        policies::insert_rule(conn, &rule(ROLE_ADMIN, resource, "write"))?;
        policies::insert_rule(conn, &rule(ROLE_VIEWER, resource, "read"))?;
    }
    Ok(())
}

/// Decides who may do what, per tenant.
pub struct Authorizer {
    db: Db,
    enforcers: RwLock<HashMap<String, Arc<Enforcer>>>,
}

impl Authorizer {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            enforcers: RwLock::new(HashMap::new()),
        }
    }

    async fn build(&self, tenant: &str) -> Result<Arc<Enforcer>, StoreError> {
        let model = DefaultModel::from_str(MODEL)
            .await
            .map_err(|e| StoreError::other(anyhow::anyhow!("casbin model: {e}")))?;
        let adapter = adapter::DbAdapter::new(self.db.clone(), tenant);
        let enforcer = Enforcer::new(model, adapter).await.map_err(|e| match e {
            casbin::Error::AdapterError(inner) => StoreError::Unavailable(
                "database",
                anyhow::anyhow!("loading policies: {}", inner.0),
            ),
            other => StoreError::other(anyhow::anyhow!("casbin: {other}")),
        })?;
        let enforcer = Arc::new(enforcer);
        self.enforcers
            .write()
            .insert(tenant.to_owned(), enforcer.clone());
        Ok(enforcer)
    }

    async fn enforcer(&self, tenant: &str) -> Result<Arc<Enforcer>, StoreError> {
        if let Some(e) = self.enforcers.read().get(tenant) {
            return Ok(e.clone());
        }
        self.build(tenant).await
    }

    /// Re-reads a tenant's policies after a change.
    pub async fn reload(&self, tenant: &str) -> Result<(), StoreError> {
        self.build(tenant).await.map(|_| ())
    }

    /// Forgets a deleted tenant.
    pub fn forget(&self, tenant: &str) {
        self.enforcers.write().remove(tenant);
    }

    /// Whether `user_id` holds a permission in `tenant`'s domain.
    pub async fn allowed(
        &self,
        tenant: &str,
        user_id: &str,
        resource: &str,
        action: &str,
    ) -> Result<bool, StoreError> {
        let enforcer = self.enforcer(tenant).await?;
        enforcer
            .enforce((user_id, tenant, resource, action))
            .map_err(|e| StoreError::other(anyhow::anyhow!("casbin: {e}")))
    }

    /// Whether `user_id` (of the `system` tenant) is a platform administrator.
    pub async fn is_platform_admin(&self, user_id: &str) -> Result<bool, StoreError> {
        self.allowed(SYSTEM_TENANT, user_id, "*", "*").await
    }
}
