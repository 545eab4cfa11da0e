//! Casbin rules and role metadata, stored per tenant.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{casbin_rules, roles};
use super::{DbConnection, now};
use crate::store::StoreError;

/// One Casbin rule; `tenant` is the domain it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = casbin_rules)]
pub struct RuleRow {
    pub id: String,
    pub tenant: String,
    pub ptype: String,
    pub v0: String,
    pub v1: String,
    pub v2: String,
    pub v3: String,
    pub v4: String,
    pub v5: String,
}

impl RuleRow {
    /// Builds a rule from Casbin's positional values.
    pub fn new(tenant: &str, ptype: &str, values: &[String]) -> Self {
        let v = |i: usize| values.get(i).cloned().unwrap_or_default();
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            tenant: tenant.to_owned(),
            ptype: ptype.to_owned(),
            v0: v(0),
            v1: v(1),
            v2: v(2),
            v3: v(3),
            v4: v(4),
            v5: v(5),
        }
    }

    /// The positional values, without trailing empty fields.
    pub fn values(&self) -> Vec<String> {
        let mut v = vec![
            self.v0.clone(),
            self.v1.clone(),
            self.v2.clone(),
            self.v3.clone(),
            self.v4.clone(),
            self.v5.clone(),
        ];
        while v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = roles)]
pub struct RoleRow {
    pub tenant: String,
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub created_at: NaiveDateTime,
}

/// Every rule of one tenant's domain.
pub fn rules_of(conn: &mut DbConnection, tenant: &str) -> Result<Vec<RuleRow>, StoreError> {
    Ok(casbin_rules::table
        .filter(casbin_rules::tenant.eq(tenant))
        .select(RuleRow::as_select())
        .load(conn)?)
}

pub fn insert_rule(conn: &mut DbConnection, rule: &RuleRow) -> Result<(), StoreError> {
    diesel::insert_into(casbin_rules::table)
        .values(rule)
        .execute(conn)?;
    Ok(())
}

/// Deletes the rules of a tenant whose leading values equal `values`.
pub fn delete_rules(
    conn: &mut DbConnection,
    tenant: &str,
    ptype: &str,
    values: &[String],
) -> Result<usize, StoreError> {
    let mut q = diesel::delete(casbin_rules::table)
        .filter(casbin_rules::tenant.eq(tenant.to_owned()))
        .filter(casbin_rules::ptype.eq(ptype.to_owned()))
        .into_boxed();
    for (i, v) in values.iter().enumerate() {
        let v = v.clone();
        q = match i {
            0 => q.filter(casbin_rules::v0.eq(v)),
            1 => q.filter(casbin_rules::v1.eq(v)),
            2 => q.filter(casbin_rules::v2.eq(v)),
            3 => q.filter(casbin_rules::v3.eq(v)),
            4 => q.filter(casbin_rules::v4.eq(v)),
            5 => q.filter(casbin_rules::v5.eq(v)),
            _ => q,
        };
    }
    Ok(q.execute(conn)?)
}

/// Role names the user holds in the tenant.
pub fn roles_of_user(
    conn: &mut DbConnection,
    tenant: &str,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    Ok(casbin_rules::table
        .filter(casbin_rules::tenant.eq(tenant))
        .filter(casbin_rules::ptype.eq("g"))
        .filter(casbin_rules::v0.eq(user_id))
        .select(casbin_rules::v1)
        .order(casbin_rules::v1.asc())
        .load(conn)?)
}

/// Gives a user a role in a tenant (no-op if held).
pub fn assign_role(
    conn: &mut DbConnection,
    tenant: &str,
    user_id: &str,
    role: &str,
) -> Result<(), StoreError> {
    if roles_of_user(conn, tenant, user_id)?
        .iter()
        .any(|r| r == role)
    {
        return Ok(());
    }
    insert_rule(
        conn,
        &RuleRow::new(
            tenant,
            "g",
            &[user_id.to_owned(), role.to_owned(), tenant.to_owned()],
        ),
    )
}

pub fn insert_role(
    conn: &mut DbConnection,
    tenant: &str,
    name: &str,
    description: &str,
    builtin: bool,
) -> Result<(), StoreError> {
    diesel::insert_into(roles::table)
        .values(&RoleRow {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            builtin,
            created_at: now(),
        })
        .execute(conn)?;
    Ok(())
}

/// Deletes the rules of a tenant whose value at `index` equals `value`.
pub fn delete_rules_at(
    conn: &mut DbConnection,
    tenant: &str,
    ptype: &str,
    index: usize,
    value: &str,
) -> Result<usize, StoreError> {
    let q = diesel::delete(casbin_rules::table)
        .filter(casbin_rules::tenant.eq(tenant.to_owned()))
        .filter(casbin_rules::ptype.eq(ptype.to_owned()))
        .into_boxed();
    let v = value.to_owned();
    let q = match index {
        0 => q.filter(casbin_rules::v0.eq(v)),
        1 => q.filter(casbin_rules::v1.eq(v)),
        2 => q.filter(casbin_rules::v2.eq(v)),
        _ => return Ok(0),
    };
    Ok(q.execute(conn)?)
}

/// Roles of a tenant by name, after `after`.
pub fn list_roles(
    conn: &mut DbConnection,
    tenant: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<RoleRow>, StoreError> {
    let mut q = roles::table
        .filter(roles::tenant.eq(tenant.to_owned()))
        .select(RoleRow::as_select())
        .order(roles::name.asc())
        .limit(limit as i64)
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(roles::name.gt(after.to_owned()));
    }
    Ok(q.load(conn)?)
}

pub fn find_role(
    conn: &mut DbConnection,
    tenant: &str,
    name: &str,
) -> Result<Option<RoleRow>, StoreError> {
    Ok(roles::table
        .find((tenant, name))
        .select(RoleRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn set_role_description(
    conn: &mut DbConnection,
    tenant: &str,
    name: &str,
    description: &str,
) -> Result<(), StoreError> {
    diesel::update(roles::table.find((tenant, name)))
        .set(roles::description.eq(description))
        .execute(conn)?;
    Ok(())
}

pub fn delete_role(conn: &mut DbConnection, tenant: &str, name: &str) -> Result<(), StoreError> {
    let n = diesel::delete(roles::table.find((tenant, name))).execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("role"));
    }
    delete_rules_at(conn, tenant, "p", 0, name)?;
    delete_rules_at(conn, tenant, "g", 1, name)?;
    Ok(())
}

/// The `(resource, action)` pairs a role grants.
pub fn role_permissions(
    conn: &mut DbConnection,
    tenant: &str,
    name: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(casbin_rules::table
        .filter(casbin_rules::tenant.eq(tenant))
        .filter(casbin_rules::ptype.eq("p"))
        .filter(casbin_rules::v0.eq(name))
        .select((casbin_rules::v2, casbin_rules::v3))
        .order((casbin_rules::v2.asc(), casbin_rules::v3.asc()))
        .load(conn)?)
}

/// Replaces what a role grants.
pub fn set_role_permissions(
    conn: &mut DbConnection,
    tenant: &str,
    name: &str,
    permissions: &[(String, String)],
) -> Result<(), StoreError> {
    delete_rules_at(conn, tenant, "p", 0, name)?;
    for (resource, action) in permissions {
        insert_rule(
            conn,
            &RuleRow::new(
                tenant,
                "p",
                &[
                    name.to_owned(),
                    tenant.to_owned(),
                    resource.clone(),
                    action.clone(),
                ],
            ),
        )?;
    }
    Ok(())
}

/// Replaces the roles a user holds in a tenant.
pub fn set_user_roles(
    conn: &mut DbConnection,
    tenant: &str,
    user_id: &str,
    roles: &[String],
) -> Result<(), StoreError> {
    delete_rules_at(conn, tenant, "g", 0, user_id)?;
    for role in roles {
        insert_rule(
            conn,
            &RuleRow::new(
                tenant,
                "g",
                &[user_id.to_owned(), role.clone(), tenant.to_owned()],
            ),
        )?;
    }
    Ok(())
}
