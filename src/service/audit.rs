//! Writes audit events. A failed write is logged, never fatal to the request.

use super::Origin;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::db::Page;
use crate::store::db::audit::{self, AuditEvent, AuditFilter};

/// Records `action` with its `outcome` about `target`.
pub async fn record(
    state: &AppState,
    tenant: &str,
    action: &str,
    outcome: &str,
    target: Option<&str>,
    origin: &Origin,
) {
    let event = AuditEvent {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_owned(),
        at: crate::store::db::now(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        actor: origin.actor.clone(),
        target: target.map(str::to_owned),
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
        request_id: origin.request_id.clone(),
        details: None,
    };
    if let Err(e) = state.db.run(move |c| audit::insert(c, &event)).await {
        tracing::warn!(error = %e, action, "audit event not written");
    }
}

/// A page of the tenant's audit events, newest first.
pub async fn list(
    state: &AppState,
    tenant: &str,
    filter: AuditFilter,
    cursor: Option<String>,
    limit: usize,
) -> AppResult<Page<AuditEvent>> {
    let tenant = tenant.to_owned();
    Ok(state
        .db
        .run(move |c| audit::list(c, &tenant, &filter, cursor.as_deref(), limit))
        .await?)
}
