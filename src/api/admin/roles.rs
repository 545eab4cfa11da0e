//! Roles of a tenant and who holds them.

use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::service::roles::Role;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, post, put};
use serde::{Deserialize, Serialize};

use crate::api::extract::{Authorized, RolesRead, RolesWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content};
use crate::error::{AppError, AppResult};
use crate::service::roles::{self, Permission};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    #[schema(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    description: String,
    #[serde(default)]
    permissions: Vec<Permission>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceRole {
    /// Optional; must equal the name in the path when given.
    #[schema(pattern = "^[a-z0-9][a-z0-9_.:-]{0,63}$")]
    name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 500)]
    description: String,
    permissions: Vec<Permission>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRoles {
    roles: Vec<String>,
}

/// Lists the tenant's roles (`roles:read`).
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ListQuery),
    responses(
        (status = 200, description = "Roles by name", body = ListResponse<Role>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/roles")]
pub async fn list_roles(
    state: web::Data<AppState>,
    auth: Authorized<RolesRead>,
    q: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
    let page = roles::list(&state, &auth.tenant.slug, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Creates a role (`roles:write`).
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = CreateRole,
    responses(
        (status = 201, description = "The role", body = Role),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/admin/tenants/{t}/roles")]
pub async fn create_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<RolesWrite>,
    body: Json<CreateRole>,
) -> AppResult<HttpResponse> {
    let b = body.into_inner()?;
    let role = roles::create(
        &state,
        &auth.tenant.slug,
        &b.name,
        &b.description,
        &b.permissions,
        &auth.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Created().json(role))
}

/// Reads a role (`roles:read`).
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ("role" = String, Path, description = "Role name")),
    responses(
        (status = 200, description = "The role", body = Role),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/roles/{role}")]
pub async fn get_role(
    state: web::Data<AppState>,
    auth: Authorized<RolesRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, name) = path.into_inner();
    Ok(HttpResponse::Ok().json(roles::get(&state, &auth.tenant.slug, &name).await?))
}

/// Replaces a role's description and permissions (`roles:write`); built-in roles cannot be emptied.
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ("role" = String, Path, description = "Role name")),
    request_body = ReplaceRole,
    responses(
        (status = 200, description = "The replaced role", body = Role),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[put("/admin/tenants/{t}/roles/{role}")]
pub async fn put_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<RolesWrite>,
    path: web::Path<(String, String)>,
    body: Json<ReplaceRole>,
) -> AppResult<HttpResponse> {
    let (_, name) = path.into_inner();
    let b = body.into_inner()?;
    if b.name.as_ref().is_some_and(|n| n != &name) {
        return Err(AppError::conflict(
            "a role cannot be renamed: name differs from the role in the path",
        ));
    }
    let role = roles::replace(
        &state,
        &auth.tenant.slug,
        &name,
        &b.description,
        &b.permissions,
        &auth.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(role))
}

/// Deletes a custom role and its assignments (`roles:write`).
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ("role" = String, Path, description = "Role name")),
    responses(
        (status = 204, description = "Deleted with its assignments"),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[delete("/admin/tenants/{t}/roles/{role}")]
pub async fn delete_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<RolesWrite>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, name) = path.into_inner();
    roles::delete(&state, &auth.tenant.slug, &name, &auth.origin(&req)).await?;
    Ok(no_content())
}

/// Reads the roles a user holds in the tenant (`roles:read`).
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The user's roles in the tenant", body = UserRoles),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/users/{user_id}/roles")]
pub async fn get_user_roles(
    state: web::Data<AppState>,
    auth: Authorized<RolesRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let roles = roles::user_roles(&state, &auth.tenant.slug, &user_id).await?;
    Ok(HttpResponse::Ok().json(UserRoles { roles }))
}

/// Replaces the roles a user holds in the tenant (`roles:write`); enforced at once.
#[utoipa::path(
    tag = "roles",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    request_body = UserRoles,
    responses(
        (status = 200, description = "The user's roles now", body = UserRoles),
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
#[put("/admin/tenants/{t}/users/{user_id}/roles")]
pub async fn put_user_roles(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<RolesWrite>,
    path: web::Path<(String, String)>,
    body: Json<UserRoles>,
) -> AppResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let roles = roles::set_user_roles(
        &state,
        &auth.tenant.slug,
        &user_id,
        body.into_inner()?.roles,
        auth.caller.platform_admin,
        &auth.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(UserRoles { roles }))
}
