//! Admin view of a user's sessions, and revoking them.

use serde::Serialize;

use super::Origin;
use crate::domain::rfc3339;
use crate::error::AppResult;
use crate::state::AppState;
use crate::store::db::tenants::Tenant;
use crate::store::session::{EndReason, SessionRecord};

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub client_id: String,
    pub created_at: String,
    pub last_used_at: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

fn unix_rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| rfc3339(d.naive_utc()))
        .unwrap_or_default()
}

impl SessionView {
    pub fn new(s: SessionRecord, current: Option<&str>) -> Self {
        Self {
            current: Some(s.id.as_str()) == current,
            created_at: unix_rfc3339(s.created_at),
            last_used_at: unix_rfc3339(s.last_used_at),
            id: s.id,
            client_id: s.client_id,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

/// The caller's own active sessions, `current` marking the one of `sid`.
pub async fn list_own(
    state: &AppState,
    tenant: &str,
    user_id: &str,
    sid: Option<&str>,
) -> AppResult<Vec<SessionView>> {
    Ok(state
        .sessions
        .list_user_sessions(tenant, user_id)
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, sid))
        .collect())
}

/// Ends one of the caller's own sessions; false when `sid` is not an
/// active session of theirs (the caller answers 404 either way).
pub async fn end_own(
    state: &AppState,
    tenant: &Tenant,
    user_id: &str,
    sid: &str,
    origin: &Origin,
) -> AppResult<bool> {
    let theirs = state
        .sessions
        .get_session(&tenant.slug, sid)
        .await?
        .is_some_and(|s| s.user_id == user_id);
    if !theirs {
        return Ok(false);
    }
    state
        .sessions
        .end_session(&tenant.slug, sid, EndReason::Revoked, state.linger(tenant))
        .await?;
    super::audit::record(
        state,
        &tenant.slug,
        "session.revoke",
        "success",
        Some(sid),
        origin,
    )
    .await;
    Ok(true)
}

/// The user's active sessions; 404 for an unknown user.
pub async fn list(state: &AppState, tenant: &str, user_id: &str) -> AppResult<Vec<SessionView>> {
    super::users::get(state, tenant, user_id).await?;
    Ok(state
        .sessions
        .list_user_sessions(tenant, user_id)
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, None))
        .collect())
}

/// Ends all of the user's sessions, or the named ones that are theirs.
pub async fn revoke(
    state: &AppState,
    tenant: &Tenant,
    user_id: &str,
    session_ids: Option<Vec<String>>,
    origin: &Origin,
) -> AppResult<usize> {
    super::users::get(state, &tenant.slug, user_id).await?;
    let linger = state.linger(tenant);
    let revoked = match session_ids {
        None => {
            state
                .sessions
                .end_user_sessions(
                    &tenant.slug,
                    user_id,
                    state.user_cut(tenant, None, EndReason::Revoked),
                )
                .await?
        }
        Some(ids) => {
            let mut n = 0;
            for sid in ids {
                let theirs = state
                    .sessions
                    .get_session(&tenant.slug, &sid)
                    .await?
                    .is_some_and(|s| s.user_id == user_id);
                if theirs
                    && state
                        .sessions
                        .end_session(&tenant.slug, &sid, EndReason::Revoked, linger)
                        .await?
                {
                    n += 1;
                }
            }
            n
        }
    };
    super::audit::record(
        state,
        &tenant.slug,
        "session.revoke",
        "success",
        Some(user_id),
        origin,
    )
    .await;
    Ok(revoked)
}
