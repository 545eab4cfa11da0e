//! The policy decision point for tenant applications.

use crate::api::responses::{
    BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use actix_web::post;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::TenantCaller;
use crate::api::{Json, Query};
use crate::authz::{Matched, RoleExplanation};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(check);
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// A user id of the tenant.
    #[schema(min_length = 1, max_length = 128)]
    subject: String,
    #[schema(min_length = 1, max_length = 128)]
    resource: String,
    #[schema(min_length = 1, max_length = 128)]
    action: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    #[serde(default)]
    explain: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckResponse {
    allowed: bool,
    roles: Vec<String>,
    matched: Option<Matched>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Vec<RoleExplanation>>,
}

fn check_field(field: &str, value: &str) -> AppResult<()> {
    if value.is_empty() || value.chars().count() > 128 {
        return Err(AppError::validation(field, "must be 1 to 128 characters"));
    }
    Ok(())
}

/// May `subject` do `action` on `resource` in this tenant? Callable with a
/// `client_credentials` token of the tenant, or a user's token holding `authz:read`.
#[utoipa::path(
    tag = "authorization",
    params(("t" = String, Path, description = "Tenant slug"), CheckQuery),
    request_body = CheckRequest,
    responses(
        (status = 200, description = "The decision", body = CheckResponse),
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
#[post("/tenants/{t}/authz/check")]
pub async fn check(
    state: web::Data<AppState>,
    caller: TenantCaller,
    query: Query<CheckQuery>,
    body: Json<CheckRequest>,
) -> AppResult<HttpResponse> {
    let tenant = &caller.tenant.slug;
    if let Some(user) = caller.claims.user_id()
        && !state.authz.allowed(tenant, user, "authz", "read").await?
    {
        return Err(AppError::forbidden("authz:read").with_realm(tenant));
    }
    let query = query.into_inner()?;
    let body = body.into_inner()?;
    check_field("subject", &body.subject)?;
    check_field("resource", &body.resource)?;
    check_field("action", &body.action)?;
    let decision = state
        .authz
        .decide(tenant, &body.subject, &body.resource, &body.action)
        .await?;
    Ok(HttpResponse::Ok().json(CheckResponse {
        allowed: decision.allowed,
        roles: decision.roles,
        matched: decision.matched,
        explanation: query.explain.then_some(decision.explanation),
    }))
}
