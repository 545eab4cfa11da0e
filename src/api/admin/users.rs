//! Users of a tenant.

use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, patch, post};
use serde::{Deserialize, Serialize};

use crate::api::extract::{Authorized, UsersRead, UsersWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content, rfc3339};
use crate::config::Secret;
use crate::domain::UserStatus;
use crate::error::{AppError, AppResult};
use crate::service::users;
use crate::state::AppState;
use crate::store::db::users::User;
use crate::store::session::LoginLock;

/// A user as the API shows it: never a password hash.
#[derive(Serialize, utoipa::ToSchema)]
pub struct UserView {
    id: String,
    email: String,
    status: UserStatus,
    email_verified: bool,
    created_at: String,
    last_login_at: Option<String>,
    /// Sign-in is refused until `locked_until` after repeated failures;
    /// `PATCH {"locked": false}` lifts it.
    locked: bool,
    locked_until: Option<String>,
}

impl UserView {
    /// A user with its sign-in lock.
    pub fn new(u: User, lock: LoginLock) -> Self {
        let now = chrono::Utc::now().timestamp();
        let locked_until = lock
            .is_locked(now)
            .then(|| chrono::DateTime::from_timestamp(lock.locked_until, 0))
            .flatten()
            .map(|t| rfc3339(t.naive_utc()));
        Self {
            id: u.id,
            email: u.email,
            status: u.status,
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
            last_login_at: u.last_login_at.map(rfc3339),
            locked: locked_until.is_some(),
            locked_until,
        }
    }

    /// A user that cannot be locked yet (just created).
    pub fn fresh(u: User) -> Self {
        Self::new(u, LoginLock::default())
    }

    /// A user read now, with its lock from the session store.
    pub async fn load(state: &AppState, tenant: &str, u: User) -> AppResult<Self> {
        let lock = state.sessions.login_lock(tenant, &u.id).await?;
        Ok(Self::new(u, lock))
    }
}

/// `false` only: an admin can lift a lock, not impose one (disable the user).
fn unlock_only() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([false]))
        .description(Some(
            "`false` lifts a sign-in lock and forgets the failed attempts",
        ))
        .build()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )]
    email: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Secret,
}

/// Lists a tenant's users (`users:read`).
#[utoipa::path(
    tag = "users",
    params(("t" = String, Path, description = "Tenant slug"), ListQuery),
    responses(
        (status = 200, description = "Users in creation order", body = ListResponse<UserView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/users")]
pub async fn list_users(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    q: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
    let page = users::list(&state, &auth.tenant.slug, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: futures_util::future::try_join_all(
            page.items
                .into_iter()
                .map(|u| UserView::load(&state, &auth.tenant.slug, u)),
        )
        .await?,
        next_cursor: page.next_cursor,
    }))
}

/// Creates a user (`users:write`); the password must pass the tenant's policy.
#[utoipa::path(
    tag = "users",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user", body = UserView),
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
#[post("/admin/tenants/{t}/users")]
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
    Ok(HttpResponse::Created().json(UserView::fresh(user)))
}

/// Reads a user (`users:read`).
#[utoipa::path(
    tag = "users",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/users/{user_id}")]
pub async fn get_user(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let user = users::get(&state, &auth.tenant.slug, &id).await?;
    Ok(HttpResponse::Ok().json(UserView::load(&state, &auth.tenant.slug, user).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUser {
    status: Option<UserStatus>,
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )]
    email: Option<String>,
    #[schema(value_type = Option<String>, format = Password, min_length = 12, max_length = 128)]
    password: Option<Secret>,
    #[schema(schema_with = unlock_only, nullable = false)]
    locked: Option<bool>,
}

/// Changes a user's status, e-mail or password (`users:write`); disabling or a new password ends their sessions.
#[utoipa::path(
    tag = "users",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    request_body = PatchUser,
    responses(
        (status = 200, description = "The updated user", body = UserView),
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
#[patch("/admin/tenants/{t}/users/{user_id}")]
pub async fn patch_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    path: web::Path<(String, String)>,
    body: Json<PatchUser>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let body = body.into_inner()?;
    if body.locked == Some(true) {
        return Err(AppError::validation(
            "locked",
            "only false is accepted; set status to disabled to stop a user signing in",
        ));
    }
    let patch = users::UserPatch {
        status: body.status,
        email: body.email,
        password: body.password,
        unlock: body.locked == Some(false),
    };
    let user = users::update(&state, &auth.tenant, &id, patch, &auth.origin(&req))
        .await
        .map_err(|e| e.with_realm(&auth.tenant.slug))?;
    Ok(HttpResponse::Ok().json(UserView::load(&state, &auth.tenant.slug, user).await?))
}

/// Deletes a user and ends their sessions (`users:write`).
#[utoipa::path(
    tag = "users",
    params(("t" = String, Path, description = "Tenant slug"), ("user_id" = String, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted; their sessions ended"),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[delete("/admin/tenants/{t}/users/{user_id}")]
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
