//! Tenants.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::tenants;
use super::{DbConnection, Page, cursor_position, now};
use crate::domain::{TenantSettings, TenantStatus};
use crate::store::StoreError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
struct TenantRow {
    slug: String,
    name: String,
    status: String,
    settings: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

/// A tenant as stored.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub settings: TenantSettings,
    pub created_at: NaiveDateTime,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            status: serde_json::from_value(serde_json::Value::String(r.status))
                .map_err(StoreError::other)?,
            settings: serde_json::from_str(&r.settings).map_err(StoreError::other)?,
            slug: r.slug,
            name: r.name,
            created_at: r.created_at,
        })
    }
}

fn status_text(s: TenantStatus) -> String {
    match s {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    }
    .to_owned()
}

/// Inserts a tenant; a taken slug is a conflict.
pub fn insert(
    conn: &mut DbConnection,
    slug: &str,
    name: &str,
    settings: &TenantSettings,
) -> Result<Tenant, StoreError> {
    let at = now();
    let row = TenantRow {
        slug: slug.to_owned(),
        name: name.to_owned(),
        status: status_text(TenantStatus::Active),
        settings: serde_json::to_string(settings).map_err(StoreError::other)?,
        created_at: at,
        updated_at: at,
    };
    diesel::insert_into(tenants::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("tenant {slug} exists")),
            other => other,
        })?;
    row.try_into()
}

pub fn find(conn: &mut DbConnection, slug: &str) -> Result<Option<Tenant>, StoreError> {
    tenants::table
        .find(slug)
        .select(TenantRow::as_select())
        .first(conn)
        .optional()?
        .map(Tenant::try_from)
        .transpose()
}

pub fn get(conn: &mut DbConnection, slug: &str) -> Result<Tenant, StoreError> {
    find(conn, slug)?.ok_or(StoreError::NotFound("tenant"))
}

/// Lists tenants ordered by slug.
pub fn list(
    conn: &mut DbConnection,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Tenant>, StoreError> {
    let mut q = tenants::table
        .select(TenantRow::as_select())
        .order(tenants::slug.asc())
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(after) = cursor_position("tenants", cursor)? {
        q = q.filter(tenants::slug.gt(after));
    }
    let rows = q
        .load(conn)?
        .into_iter()
        .map(Tenant::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows("tenants", rows, limit, |t| t.slug.clone()))
}

/// Slugs of every suspended tenant.
pub fn suspended(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    Ok(tenants::table
        .filter(tenants::status.eq(status_text(TenantStatus::Suspended)))
        .select(tenants::slug)
        .load(conn)?)
}

/// Writes name, status and settings.
pub fn update(conn: &mut DbConnection, t: &Tenant) -> Result<(), StoreError> {
    let n = diesel::update(tenants::table.find(&t.slug))
        .set((
            tenants::name.eq(&t.name),
            tenants::status.eq(status_text(t.status)),
            tenants::settings.eq(serde_json::to_string(&t.settings).map_err(StoreError::other)?),
            tenants::updated_at.eq(now()),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("tenant"));
    }
    Ok(())
}

/// Deletes a tenant and, by cascade, everything it owns.
pub fn delete(conn: &mut DbConnection, slug: &str) -> Result<(), StoreError> {
    let n = diesel::delete(tenants::table.find(slug)).execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("tenant"));
    }
    Ok(())
}

pub fn count(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(tenants::table.count().get_result(conn)?)
}
