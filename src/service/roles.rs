//! Roles of a tenant and who holds them. Every change is enforced by this
//! instance at once and by the others within a second (change bus).

use serde::{Deserialize, Serialize};

use super::Origin;
use crate::authz::{ROLE_ADMIN, ROLE_PLATFORM_ADMIN, ROLE_VIEWER};
use crate::error::{AppError, AppResult};
use crate::state::{AppState, Change};
use crate::store::StoreError;
use crate::store::db::{Page, cursor_position, policies, users};

/// One permission of a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    #[schema(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    pub resource: String,
    /// An action, or `*` for every action on the resource.
    #[schema(pattern = "^(\\*|[a-z0-9][a-z0-9_.:-]{0,63})$")]
    pub action: String,
}

/// A role as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub name: String,
    pub description: String,
    pub permissions: Vec<Permission>,
    pub builtin: bool,
}

/// `^[a-z0-9][a-z0-9_.:-]{0,63}$`: role names, resources and actions.
pub fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.:-".contains(c))
}

fn check_permissions(permissions: &[Permission]) -> AppResult<Vec<(String, String)>> {
    if permissions.len() > 500 {
        return Err(AppError::validation("permissions", "at most 500"));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, p) in permissions.iter().enumerate() {
        if !valid_name(&p.resource) {
            return Err(AppError::validation(
                &format!("permissions[{i}].resource"),
                "must match ^[a-z0-9][a-z0-9_.:-]{0,63}$",
            ));
        }
        if p.action != "*" && !valid_name(&p.action) {
            return Err(AppError::validation(
                &format!("permissions[{i}].action"),
                "must be * or match ^[a-z0-9][a-z0-9_.:-]{0,63}$",
            ));
        }
        let pair = (p.resource.clone(), p.action.clone());
        if !out.contains(&pair) {
            out.push(pair);
        }
    }
    Ok(out)
}

fn check_description(d: &str) -> AppResult<String> {
    if d.chars().count() > 500 {
        return Err(AppError::validation(
            "description",
            "at most 500 characters",
        ));
    }
    Ok(d.trim_matches(|c: char| c.is_ascii_whitespace()).to_owned())
}

fn is_builtin_name(name: &str) -> bool {
    [ROLE_ADMIN, ROLE_VIEWER, ROLE_PLATFORM_ADMIN].contains(&name)
}

fn load_role(
    conn: &mut crate::store::db::DbConnection,
    tenant: &str,
    name: &str,
) -> Result<Role, StoreError> {
    let row = policies::find_role(conn, tenant, name)?.ok_or(StoreError::NotFound("role"))?;
    let permissions = policies::role_permissions(conn, tenant, name)?
        .into_iter()
        .map(|(resource, action)| Permission { resource, action })
        .collect();
    Ok(Role {
        name: row.name,
        description: row.description,
        permissions,
        builtin: row.builtin,
    })
}

pub async fn list(
    state: &AppState,
    tenant: &str,
    cursor: Option<String>,
    limit: usize,
) -> AppResult<Page<Role>> {
    let t = tenant.to_owned();
    let after = cursor_position("roles", cursor.as_deref())?;
    let roles = state
        .db
        .run(move |c| {
            let rows = policies::list_roles(c, &t, after.as_deref(), limit + 1)?;
            rows.iter()
                .map(|r| load_role(c, &t, &r.name))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    Ok(Page::from_rows("roles", roles, limit, |r| r.name.clone()))
}

pub async fn get(state: &AppState, tenant: &str, name: &str) -> AppResult<Role> {
    let (t, n) = (tenant.to_owned(), name.to_owned());
    Ok(state.db.run(move |c| load_role(c, &t, &n)).await?)
}

/// Creates a custom role; a taken name is a conflict.
pub async fn create(
    state: &AppState,
    tenant: &str,
    name: &str,
    description: &str,
    permissions: &[Permission],
    origin: &Origin,
) -> AppResult<Role> {
    if !valid_name(name) {
        return Err(AppError::validation(
            "name",
            "must match ^[a-z0-9][a-z0-9_.:-]{0,63}$",
        ));
    }
    if is_builtin_name(name) {
        return Err(AppError::conflict(format!(
            "{name} is a built-in role name"
        )));
    }
    let description = check_description(description)?;
    let perms = check_permissions(permissions)?;
    let policy_change = Change::Policy(tenant.to_owned()).message();
    let (t, n) = (tenant.to_owned(), name.to_owned());
    let role = state
        .db
        .transaction(move |c| {
            with_policy_change(c, &policy_change, |c| {
                if policies::find_role(c, &t, &n)?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "role {n} exists in the tenant"
                    )));
                }
                policies::insert_role(c, &t, &n, &description, false)?;
                policies::set_role_permissions(c, &t, &n, &perms)?;
                load_role(c, &t, &n)
            })
        })
        .await?;
    state.announce(Change::Policy(tenant.to_owned())).await;
    super::audit::record(state, tenant, "role.create", "success", Some(name), origin).await;
    Ok(role)
}

/// Replaces a role's description and permissions. Built-in roles cannot be emptied.
pub async fn replace(
    state: &AppState,
    tenant: &str,
    name: &str,
    description: &str,
    permissions: &[Permission],
    origin: &Origin,
) -> AppResult<Role> {
    let description = check_description(description)?;
    let perms = check_permissions(permissions)?;
    let policy_change = Change::Policy(tenant.to_owned()).message();
    let (t, n) = (tenant.to_owned(), name.to_owned());
    let role = state
        .db
        .transaction(move |c| {
            with_policy_change(c, &policy_change, |c| {
                let existing =
                    policies::find_role(c, &t, &n)?.ok_or(StoreError::NotFound("role"))?;
                if existing.builtin && perms.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "the built-in role {n} cannot be emptied"
                    )));
                }
                policies::set_role_description(c, &t, &n, &description)?;
                policies::set_role_permissions(c, &t, &n, &perms)?;
                load_role(c, &t, &n)
            })
        })
        .await?;
    state.announce(Change::Policy(tenant.to_owned())).await;
    super::audit::record(state, tenant, "role.update", "success", Some(name), origin).await;
    Ok(role)
}

/// Deletes a custom role and every assignment of it.
pub async fn delete(state: &AppState, tenant: &str, name: &str, origin: &Origin) -> AppResult<()> {
    let policy_change = Change::Policy(tenant.to_owned()).message();
    let (t, n) = (tenant.to_owned(), name.to_owned());
    state
        .db
        .transaction(move |c| {
            with_policy_change(c, &policy_change, |c| {
                let existing =
                    policies::find_role(c, &t, &n)?.ok_or(StoreError::NotFound("role"))?;
                if existing.builtin {
                    return Err(StoreError::Conflict(format!(
                        "the built-in role {n} cannot be deleted"
                    )));
                }
                policies::delete_role(c, &t, &n)
            })
        })
        .await?;
    state.announce(Change::Policy(tenant.to_owned())).await;
    super::audit::record(state, tenant, "role.delete", "success", Some(name), origin).await;
    Ok(())
}

/// The roles a user holds in the tenant; 404 for an unknown user.
pub async fn user_roles(state: &AppState, tenant: &str, user_id: &str) -> AppResult<Vec<String>> {
    let (t, u) = (tenant.to_owned(), user_id.to_owned());
    Ok(state
        .db
        .run(move |c| {
            users::get(c, &t, &u)?;
            policies::roles_of_user(c, &t, &u)
        })
        .await?)
}

/// Replaces the roles a user holds; every role must exist in this tenant.
/// Only a platform admin (`granted_by_platform_admin`) may grant
/// `platform-admin` (403 `forbidden` otherwise).
pub async fn set_user_roles(
    state: &AppState,
    tenant: &str,
    user_id: &str,
    roles: Vec<String>,
    granted_by_platform_admin: bool,
    origin: &Origin,
) -> AppResult<Vec<String>> {
    if roles.len() > 100 {
        return Err(AppError::validation("roles", "at most 100"));
    }
    if !granted_by_platform_admin && roles.iter().any(|r| r == ROLE_PLATFORM_ADMIN) {
        return Err(AppError::forbidden(ROLE_PLATFORM_ADMIN).with_realm(tenant));
    }
    let policy_change = Change::Policy(tenant.to_owned()).message();
    let (t, u) = (tenant.to_owned(), user_id.to_owned());
    let result = state
        .db
        .transaction(move |c| {
            users::get(c, &t, &u)?;
            let mut wanted: Vec<String> = Vec::new();
            for (i, role) in roles.iter().enumerate() {
                if policies::find_role(c, &t, role)?.is_none() {
                    return Ok(Err(AppError::validation(
                        &format!("roles[{i}]"),
                        format!("no role named {role:?} in this tenant"),
                    )));
                }
                if !wanted.contains(role) {
                    wanted.push(role.clone());
                }
            }
            policies::set_user_roles(c, &t, &u, &wanted)?;
            // Recorded only when something was written.
            crate::store::db::changes::record(c, &policy_change)?;
            Ok(Ok(policies::roles_of_user(c, &t, &u)?))
        })
        .await??;
    state.announce(Change::Policy(tenant.to_owned())).await;
    super::audit::record(
        state,
        tenant,
        "user.roles.update",
        "success",
        Some(user_id),
        origin,
    )
    .await;
    Ok(result)
}

/// Runs `f`, then records the tenant's policy change in the change log, in
/// the caller's transaction: every instance learns of it even if this one
/// stops right after the commit.
fn with_policy_change<T>(
    c: &mut crate::store::db::DbConnection,
    message: &str,
    f: impl FnOnce(&mut crate::store::db::DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let out = f(c)?;
    crate::store::db::changes::record(c, message)?;
    Ok(out)
}
