//! Users of a tenant.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::api::extract::{Authorized, UsersRead, UsersWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content, rfc3339};
use crate::config::Secret;
use crate::domain::UserStatus;
use crate::error::AppResult;
use crate::service::users;
use crate::state::AppState;
use crate::store::db::users::User;

/// A user as the API shows it: never a password hash.
#[derive(Serialize)]
pub struct UserView {
    id: String,
    email: String,
    status: UserStatus,
    email_verified: bool,
    created_at: String,
    last_login_at: Option<String>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            status: u.status,
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    password: Secret,
}

pub async fn list_users(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    q: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
    let page = users::list(&state, &auth.tenant.slug, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(UserView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    body: Json<CreateUser>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let user = users::create(
        &state,
        &auth.tenant,
        &body.email,
        &body.password,
        &auth.origin(&req),
    )
    .await
    .map_err(|e| e.with_realm(&auth.tenant.slug))?;
    Ok(HttpResponse::Created().json(UserView::from(user)))
}

pub async fn get_user(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let user = users::get(&state, &auth.tenant.slug, &id).await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    status: Option<UserStatus>,
    email: Option<String>,
    password: Option<Secret>,
}

pub async fn patch_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    path: web::Path<(String, String)>,
    body: Json<PatchUser>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let body = body.into_inner()?;
    let patch = users::UserPatch {
        status: body.status,
        email: body.email,
        password: body.password,
    };
    let user = users::update(&state, &auth.tenant, &id, patch, &auth.origin(&req))
        .await
        .map_err(|e| e.with_realm(&auth.tenant.slug))?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

pub async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    users::delete(&state, &auth.tenant, &id, &auth.origin(&req)).await?;
    Ok(no_content())
}
