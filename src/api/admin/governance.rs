//! A tenant's sessions (per user), signing keys and audit log.

use crate::api::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::service::keys::KeyView;
use crate::service::sessions::SessionView;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{get, post};
use chrono::{DateTime, NaiveDateTime};
use serde::{Deserialize, Serialize};

use crate::api::ListResponse;
use crate::api::extract::{
    AuditRead, Authorized, KeysRead, KeysWrite, SessionsRead, SessionsWrite,
};
use crate::api::{Json, Query};
use crate::error::{AppError, AppResult};
use crate::service::{keys, sessions};
use crate::state::AppState;
use crate::store::db::audit::{AuditEvent, AuditFilter};

/// Lists a user's active sessions (`sessions:read`).
#[utoipa::path(
    tag = "sessions",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's active sessions", body = ListResponse<SessionView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/users/{user_id}/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    auth: Authorized<SessionsRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let items = sessions::list(&state, &auth.tenant.slug, &user_id).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items,
        next_cursor: None,
    }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeSessions {
    session_ids: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revoked {
    revoked: usize,
}

/// Ends all of a user's sessions, or the listed ones (`sessions:write`); their access tokens are refused from the next request.
#[utoipa::path(
    tag = "sessions",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    request_body = RevokeSessions,
    responses(
        (status = 200, description = "How many sessions ended", body = Revoked),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/admin/tenants/{t}/users/{user_id}/sessions/revoke")]
pub async fn revoke_sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<SessionsWrite>,
    path: web::Path<(String, String)>,
    body: Json<RevokeSessions>,
) -> AppResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let revoked = sessions::revoke(
        &state,
        &auth.tenant,
        &user_id,
        body.into_inner()?.session_ids,
        &auth.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(Revoked { revoked }))
}

/// Lists the tenant's signing keys (`keys:read`).
#[utoipa::path(
    tag = "keys",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "Signing keys, newest first", body = ListResponse<KeyView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/keys")]
pub async fn list_keys(
    state: web::Data<AppState>,
    auth: Authorized<KeysRead>,
) -> AppResult<HttpResponse> {
    let items = keys::list(&state, &auth.tenant.slug).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items,
        next_cursor: None,
    }))
}

/// Rotates the signing key (`keys:write`): the new key is published at once and signs after the activation delay.
#[utoipa::path(
    tag = "keys",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 201, description = "The new key: published now, signing after the activation delay", body = KeyView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/admin/tenants/{t}/keys/rotate")]
pub async fn rotate_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<KeysWrite>,
) -> AppResult<HttpResponse> {
    let key = keys::rotate(&state, &auth.tenant, &auth.origin(&req)).await?;
    Ok(HttpResponse::Created().json(key))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[param(minimum = 1, maximum = 200)]
    limit: Option<usize>,
    cursor: Option<String>,
    action: Option<String>,
    actor: Option<String>,
    /// RFC 3339; events at or after.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339; events before.
    #[param(format = DateTime)]
    to: Option<String>,
}

fn parse_time(field: &str, value: Option<&str>) -> AppResult<Option<NaiveDateTime>> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|d| d.naive_utc())
                .map_err(|_| AppError::validation(field, "must be an RFC 3339 time"))
        })
        .transpose()
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditView {
    id: String,
    at: String,
    action: String,
    outcome: String,
    actor: Option<String>,
    target: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e
                .at
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            action: e.action,
            outcome: e.outcome,
            actor: e.actor,
            target: e.target,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
        }
    }
}

/// Lists audit events, newest first (`audit:read`).
#[utoipa::path(
    tag = "audit",
    params(("t" = String, Path, description = "Tenant slug"), AuditQuery),
    responses(
        (status = 200, description = "Audit events, newest first", body = ListResponse<AuditView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/audit")]
pub async fn list_audit(
    state: web::Data<AppState>,
    auth: Authorized<AuditRead>,
    q: Query<AuditQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
    let limit = crate::api::ListQuery {
        limit: q.limit,
        cursor: None,
    }
    .limit()?;
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        from: parse_time("from", q.from.as_deref())?,
        to: parse_time("to", q.to.as_deref())?,
    };
    let page =
        crate::service::audit::list(&state, &auth.tenant.slug, filter, q.cursor, limit).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(AuditView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}
