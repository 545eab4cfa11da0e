//! The audit log: who did what, to whom, from where. Never secrets.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_events;
use super::{DbConnection, Page, cursor_position};
use crate::store::StoreError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub tenant: String,
    pub at: NaiveDateTime,
    pub action: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: Option<String>,
}

pub fn insert(conn: &mut DbConnection, e: &AuditEvent) -> Result<(), StoreError> {
    diesel::insert_into(audit_events::table)
        .values(e)
        .execute(conn)?;
    Ok(())
}

/// Which events a listing wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

/// Newest first, filtered.
pub fn list(
    conn: &mut DbConnection,
    tenant: &str,
    filter: &AuditFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<AuditEvent>, StoreError> {
    let mut q = audit_events::table
        .filter(audit_events::tenant.eq(tenant))
        .select(AuditEvent::as_select())
        .order(audit_events::id.desc())
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(action) = &filter.action {
        q = q.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(actor) = &filter.actor {
        q = q.filter(audit_events::actor.eq(actor.clone()));
    }
    if let Some(from) = filter.from {
        q = q.filter(audit_events::at.ge(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(audit_events::at.lt(to));
    }
    if let Some(before) = cursor_position("audit", cursor)? {
        q = q.filter(audit_events::id.lt(before));
    }
    let rows = q.load(conn)?;
    Ok(Page::from_rows("audit", rows, limit, |e| e.id.clone()))
}
