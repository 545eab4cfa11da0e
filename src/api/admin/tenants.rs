//! Tenants: platform admins create, list and delete; a tenant's admins read and rename it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::extract::{Authorized, PlatformAdmin, TenantRead, TenantWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content, rfc3339};
use crate::domain::{TenantSettings, TenantStatus};
use crate::error::{AppError, AppResult};
use crate::service::tenants;
use crate::state::AppState;
use crate::store::db::tenants::Tenant;

#[derive(Serialize)]
pub struct TenantView {
    slug: String,
    name: String,
    status: TenantStatus,
    settings: TenantSettings,
    created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            slug: t.slug,
            name: t.name,
            status: t.status,
            settings: t.settings,
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    slug: String,
    name: String,
    settings: Option<Map<String, Value>>,
}

pub async fn list_tenants(
    state: web::Data<AppState>,
    _: PlatformAdmin,
    q: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
    let page = tenants::list(&state, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(TenantView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

pub async fn create_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    body: Json<CreateTenant>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let t = tenants::create(
        &state,
        &body.slug,
        &body.name,
        body.settings,
        &admin.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Created().json(TenantView::from(t)))
}

pub async fn get_tenant(auth: Authorized<TenantRead>) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(TenantView::from((*auth.tenant).clone())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    name: Option<String>,
    status: Option<TenantStatus>,
    settings: Option<Map<String, Value>>,
}

pub async fn patch_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<TenantWrite>,
    body: Json<PatchTenant>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let slug = auth.tenant.slug.clone();
    if body.status.is_some() && !auth.caller.platform_admin {
        return Err(AppError::forbidden("platform-admin (to change status)").with_realm(&slug));
    }
    let patch = tenants::TenantPatch {
        name: body.name,
        status: body.status,
        settings: body.settings,
    };
    let t = tenants::update(&state, &slug, patch, &auth.origin(&req)).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(t)))
}

pub async fn delete_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    t: web::Path<String>,
) -> AppResult<HttpResponse> {
    tenants::delete(&state, &t, &admin.origin(&req))
        .await
        .map_err(|e| e.with_realm(&t))?;
    Ok(no_content())
}
