//! Authorization: Casbin RBAC with domains (the tenant slug is the domain).
//!
//! Each tenant has its own enforcer, loaded from the database through
//! [`adapter::DbAdapter`] with only that tenant's rules. Requests read an
//! `Arc` snapshot from a [`Cached`] view: a policy change invalidates it and
//! the next request builds a fresh one (one build at a time per tenant; a
//! build that read the rules before the change is never kept), so no
//! request ever waits on a write lock held across a reload.

pub mod adapter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use casbin::{CoreApi, DefaultModel, Enforcer, MgmtApi};

use crate::cache::Cached;
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

/// One tenant's loaded policy: the Casbin enforcer that decides, and the
/// same rules indexed for `roles` and `matched` answers.
pub struct TenantPolicy {
    enforcer: Enforcer,
    roles_by_user: HashMap<String, Vec<String>>,
    perms_by_role: HashMap<String, Vec<(String, String)>>,
}

/// A permission that allowed a request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Matched {
    pub role: String,
    pub resource: String,
    pub action: String,
}

/// Why one role of the subject did or did not allow the request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RoleExplanation {
    pub role: String,
    pub allowed: bool,
    pub reason: String,
}

/// The answer of the policy decision point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub roles: Vec<String>,
    pub matched: Option<Matched>,
    pub explanation: Vec<RoleExplanation>,
}

fn grants(perm: &(String, String), resource: &str, action: &str) -> bool {
    (perm.0 == "*" || perm.0 == resource) && (perm.1 == "*" || perm.1 == action)
}

impl TenantPolicy {
    fn new(enforcer: Enforcer) -> Self {
        let mut roles_by_user: HashMap<String, Vec<String>> = HashMap::new();
        for g in enforcer.get_grouping_policy() {
            if let [user, role, ..] = g.as_slice() {
                roles_by_user
                    .entry(user.clone())
                    .or_default()
                    .push(role.clone());
            }
        }
        for roles in roles_by_user.values_mut() {
            roles.sort();
            roles.dedup();
        }
        let mut perms_by_role: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for p in enforcer.get_policy() {
            if let [role, _domain, obj, act, ..] = p.as_slice() {
                perms_by_role
                    .entry(role.clone())
                    .or_default()
                    .push((obj.clone(), act.clone()));
            }
        }
        Self {
            enforcer,
            roles_by_user,
            perms_by_role,
        }
    }

    pub fn roles_of(&self, user: &str) -> Vec<String> {
        self.roles_by_user.get(user).cloned().unwrap_or_default()
    }

    fn decide(
        &self,
        tenant: &str,
        subject: &str,
        resource: &str,
        action: &str,
    ) -> Result<Decision, StoreError> {
        let allowed = self
            .enforcer
            .enforce((subject, tenant, resource, action))
            .map_err(|e| StoreError::other(anyhow::anyhow!("casbin: {e}")))?;
        let roles = self.roles_of(subject);
        let mut matched = None;
        let mut explanation = Vec::new();
        for role in &roles {
            let perms = self
                .perms_by_role
                .get(role)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let hit = perms.iter().find(|p| grants(p, resource, action));
            let reason = match hit {
                Some((r, a)) => format!("grants {r}:{a}"),
                None if perms.is_empty() => "has no permissions".to_owned(),
                None if perms.iter().any(|p| p.0 == "*" || p.0 == resource) => {
                    format!("has {resource} but not the action {action}")
                }
                None => format!("has no permission on {resource}"),
            };
            if let (Some((r, a)), None) = (hit, &matched) {
                matched = Some(Matched {
                    role: role.clone(),
                    resource: r.clone(),
                    action: a.clone(),
                });
            }
            explanation.push(RoleExplanation {
                role: role.clone(),
                allowed: hit.is_some(),
                reason,
            });
        }
        Ok(Decision {
            allowed,
            roles,
            matched: if allowed { matched } else { None },
            explanation,
        })
    }
}

/// Decides who may do what, per tenant.
pub struct Authorizer {
    db: Db,
    policies: Cached<String, Arc<TenantPolicy>>,
}

/// Tenants whose policy one instance holds at most, and for how long.
const POLICY_CACHE_CAPACITY: u64 = 10_000;
const POLICY_CACHE_TTL: Duration = Duration::from_secs(600);

impl Authorizer {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            policies: Cached::new(POLICY_CACHE_CAPACITY, POLICY_CACHE_TTL),
        }
    }

    async fn build(&self, tenant: &str) -> Result<Arc<TenantPolicy>, StoreError> {
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
        Ok(Arc::new(TenantPolicy::new(enforcer)))
    }

    /// The tenant's policy snapshot, loaded on first use and after changes.
    pub async fn policy(&self, tenant: &str) -> Result<Arc<TenantPolicy>, StoreError> {
        self.policies
            .get_or_load(&tenant.to_owned(), || self.build(tenant))
            .await
    }

    /// Re-reads a tenant's policies now.
    pub async fn reload(&self, tenant: &str) -> Result<(), StoreError> {
        self.forget(tenant);
        self.policy(tenant).await.map(|_| ())
    }

    /// Drops a tenant's snapshot; the next request loads it again.
    pub fn forget(&self, tenant: &str) {
        self.policies.invalidate(&tenant.to_owned());
    }

    /// Drops every snapshot.
    pub fn forget_all(&self) {
        self.policies.invalidate_all();
    }

    /// How many tenants' policies this instance holds (approximate).
    pub fn loaded(&self) -> usize {
        self.policies.len() as usize
    }

    /// Whether `user_id` holds a permission in `tenant`'s domain.
    pub async fn allowed(
        &self,
        tenant: &str,
        user_id: &str,
        resource: &str,
        action: &str,
    ) -> Result<bool, StoreError> {
        let policy = self.policy(tenant).await?;
        policy
            .enforcer
            .enforce((user_id, tenant, resource, action))
            .map_err(|e| StoreError::other(anyhow::anyhow!("casbin: {e}")))
    }

    /// The full decision for the policy decision point.
    pub async fn decide(
        &self,
        tenant: &str,
        subject: &str,
        resource: &str,
        action: &str,
    ) -> Result<Decision, StoreError> {
        self.policy(tenant)
            .await?
            .decide(tenant, subject, resource, action)
    }

    /// Role names the user holds in the tenant.
    pub async fn roles_of(&self, tenant: &str, user_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.policy(tenant).await?.roles_of(user_id))
    }

    /// Whether `user_id` (of the `system` tenant) is a platform administrator.
    pub async fn is_platform_admin(&self, user_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .roles_of(SYSTEM_TENANT, user_id)
            .await?
            .iter()
            .any(|r| r == ROLE_PLATFORM_ADMIN))
    }
}
