//! Roles of a tenant and who holds them.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::api::extract::{Authorized, RolesRead, RolesWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content};
use crate::error::{AppError, AppResult};
use crate::service::roles::{self, Permission};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRole {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    permissions: Vec<Permission>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaceRole {
    /// Optional; must equal the name in the path when given.
    name: Option<String>,
    #[serde(default)]
    description: String,
    permissions: Vec<Permission>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRoles {
    roles: Vec<String>,
}

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

pub async fn get_role(
    state: web::Data<AppState>,
    auth: Authorized<RolesRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, name) = path.into_inner();
    Ok(HttpResponse::Ok().json(roles::get(&state, &auth.tenant.slug, &name).await?))
}

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
        return Err(AppError::validation(
            "name",
            "cannot differ from the role in the path",
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

pub async fn get_user_roles(
    state: web::Data<AppState>,
    auth: Authorized<RolesRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, user_id) = path.into_inner();
    let roles = roles::user_roles(&state, &auth.tenant.slug, &user_id).await?;
    Ok(HttpResponse::Ok().json(UserRoles { roles }))
}

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
        &auth.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Ok().json(UserRoles { roles }))
}
