//! Tenants: platform admins create, list and delete; a tenant's admins read and rename it.

use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, patch, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::extract::{Authorized, PlatformAdmin, TenantRead, TenantWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content, rfc3339};
use crate::domain::{SigningAlg, TenantSettings, TenantStatus};
use crate::error::{AppError, AppResult};
use crate::service::tenants;
use crate::state::AppState;
use crate::store::db::tenants::Tenant;

#[derive(Serialize, utoipa::ToSchema)]
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

/// A partial settings object: omitted fields keep their value (or default).
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    self_signup: Option<bool>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 1, maximum = 315_360_000)]
    access_token_ttl_seconds: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 1, maximum = 315_360_000)]
    refresh_token_ttl_seconds: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 1, maximum = 315_360_000)]
    refresh_idle_timeout_seconds: Option<u64>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 0, maximum = 3600)]
    refresh_grace_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_alg: Option<SigningAlg>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 1, maximum = 128)]
    password_min_length: Option<u32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "integral"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    lockout_threshold: Option<u32>,
}

/// Accepts an integer also when written with a zero fraction (`81.0`), as
/// JSON Schema's `integer` does.
fn integral<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let Some(n) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if n.fract() != 0.0 || !(0.0..=9_007_199_254_740_991.0).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "{n} is not a non-negative integer"
        )));
    }
    T::try_from(n as u64)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
}

impl SettingsPatch {
    fn into_map(self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$")]
    slug: String,
    #[schema(min_length = 1, max_length = 200, pattern = "[^ \\t\\n\\r\\f]")]
    name: String,
    settings: Option<SettingsPatch>,
}

/// Lists tenants (platform admins).
#[utoipa::path(
    tag = "tenants",
    params(ListQuery),
    responses(
        (status = 200, description = "Tenants by slug", body = ListResponse<TenantView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants")]
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

/// Creates a tenant with its built-in roles, the `admin-cli` client and a signing key (platform admins).
#[utoipa::path(
    tag = "tenants",
    request_body = CreateTenant,
    responses(
        (status = 201, description = "The tenant, with its built-in roles, `admin-cli` client and signing key", body = TenantView),
        BadRequest,
        Unauthorized,
        Forbidden,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/admin/tenants")]
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
        body.settings.map(SettingsPatch::into_map),
        &admin.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Created().json(TenantView::from(t)))
}

/// Reads a tenant (`tenant:read`).
#[utoipa::path(
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}")]
pub async fn get_tenant(auth: Authorized<TenantRead>) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(TenantView::from((*auth.tenant).clone())))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenant {
    #[schema(min_length = 1, max_length = 200, pattern = "[^ \\t\\n\\r\\f]")]
    name: Option<String>,
    status: Option<TenantStatus>,
    settings: Option<SettingsPatch>,
}

/// Updates a tenant's name or settings (`tenant:write`); `status` needs a platform admin and suspension ends every session.
#[utoipa::path(
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = PatchTenant,
    responses(
        (status = 200, description = "The updated tenant", body = TenantView),
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
#[patch("/admin/tenants/{t}")]
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
        settings: body.settings.map(SettingsPatch::into_map),
    };
    let t = tenants::update(&state, &slug, patch, &auth.origin(&req)).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(t)))
}

/// Deletes a tenant and everything it owns (platform admins).
#[utoipa::path(
    tag = "tenants",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 204, description = "Deleted with everything it owned"),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[delete("/admin/tenants/{t}")]
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
