//! A signed-in user's own endpoints: userinfo, logout, sessions, password;
//! and self sign-up.

use super::ListResponse;
use super::admin::UserView;
use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::error::Problem;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::{TenantCaller, app_state, load_tenant, origin, realm};
use super::no_content;
use crate::api::Json;
use crate::config::Secret;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::sessions::SessionView;
use crate::service::{account, users};
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(userinfo);
    cfg.service(logout);
    cfg.service(list_sessions);
    cfg.service(end_session);
    cfg.service(change_password);
    cfg.service(signup);
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    sub: String,
    /// With the `email` scope (OIDC Core §5.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    tid: String,
}

/// OIDC userinfo of the token's user.
#[utoipa::path(
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "The signed-in user", body = UserInfo),
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/tenants/{t}/oauth/userinfo")]
pub async fn userinfo(state: web::Data<AppState>, caller: TenantCaller) -> AppResult<HttpResponse> {
    let user_id = caller.user_id()?;
    if !caller.claims.scope.split(' ').any(|s| s == "openid") {
        return Err(
            AppError::insufficient_scope("openid", "userinfo needs the openid scope")
                .with_realm(&caller.tenant.slug),
        );
    }
    let user = state
        .user(&caller.tenant.slug, user_id)
        .await?
        .ok_or_else(|| {
            AppError::new(ErrorCode::SessionRevoked, "The user no longer exists")
                .with_realm(&caller.tenant.slug)
        })?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json({
            let with_email = caller.claims.scope.split(' ').any(|s| s == "email");
            UserInfo {
                sub: user.id.clone(),
                email: with_email.then(|| user.email.clone()),
                email_verified: with_email.then_some(user.email_verified),
                tid: caller.tenant.slug.clone(),
            }
        }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutBody {
    #[serde(default)]
    all: bool,
}

/// Ends the caller's session (or all of the user's with `{"all": true}`).
#[utoipa::path(
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = Option<LogoutBody>, content_type = "application/json"),
    responses(
        (status = 204, description = "Session ended"),
        BadRequest,
        Unauthorized,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/tenants/{t}/logout")]
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: TenantCaller,
    body: web::Bytes,
) -> AppResult<HttpResponse> {
    let realm = realm(&req);
    let body: LogoutBody = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutBody::default()
    } else {
        let is_json = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if !is_json {
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                "The body must be application/json",
            )
            .with_realm(&realm));
        }
        // `null` is no body at all: end this session only.
        serde_json::from_slice::<Option<LogoutBody>>(&body)
            .map_err(|e| AppError::validation("body", e).with_realm(&realm))?
            .unwrap_or_default()
    };
    let origin = origin(&req, Some(&caller.claims.sub));
    account::logout(&state, &caller.tenant, &caller.claims, body.all, &origin).await?;
    Ok(no_content())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    items: Vec<SessionView>,
    next_cursor: Option<String>,
}

/// The caller's active sessions.
#[utoipa::path(
    operation_id = "list_my_sessions",
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "The caller's active sessions", body = ListResponse<SessionView>),
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/tenants/{t}/me/sessions")]
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: TenantCaller,
) -> AppResult<HttpResponse> {
    let user_id = caller.user_id()?;
    let items = crate::service::sessions::list_own(
        &state,
        &caller.tenant.slug,
        user_id,
        caller.claims.sid.as_deref(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(SessionList {
        items,
        next_cursor: None,
    }))
}

/// Ends one of the caller's sessions.
#[utoipa::path(
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug"), ("sid" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Session ended"),
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[delete("/tenants/{t}/me/sessions/{sid}")]
pub async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: TenantCaller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, sid) = path.into_inner();
    let user_id = caller.user_id()?;
    let ended = crate::service::sessions::end_own(
        &state,
        &caller.tenant,
        user_id,
        &sid,
        &origin(&req, Some(user_id)),
    )
    .await?;
    if !ended {
        return Err(AppError::not_found("The session").with_realm(&caller.tenant.slug));
    }
    Ok(no_content())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    current_password: Secret,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    new_password: Secret,
}

/// Changes the caller's password; every other session ends.
#[utoipa::path(
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Password changed; every other session ended"),
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
#[post("/tenants/{t}/me/password")]
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: TenantCaller,
    body: Json<PasswordChange>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let origin = origin(&req, Some(&caller.claims.sub));
    account::change_password(
        &state,
        &caller.tenant,
        &caller.claims,
        &body.current_password,
        &body.new_password,
        &origin,
    )
    .await
    .map_err(|e| e.with_realm(&caller.tenant.slug))?;
    Ok(no_content())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    #[schema(
        max_length = 254,
        pattern = "^[!-?A-~]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)+[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )]
    email: String,
    #[schema(value_type = String, format = Password, min_length = 12, max_length = 128)]
    password: Secret,
}

/// Self sign-up, when the tenant allows it.
#[utoipa::path(
    tag = "me",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = SignupBody,
    responses(
        (status = 403, description = "`signup_disabled`: the tenant does not allow self sign-up", body = Problem, content_type = "application/problem+json"),
        (status = 201, description = "The new user", body = UserView),
        BadRequest,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    )
)]
#[post("/tenants/{t}/signup")]
pub async fn signup(req: HttpRequest, body: Json<SignupBody>) -> AppResult<HttpResponse> {
    let state = app_state(&req)?;
    let slug = realm(&req);
    let tenant = load_tenant(&state, &slug).await?;
    if !tenant.settings.self_signup || tenant.status != crate::domain::TenantStatus::Active {
        return Err(AppError::new(
            ErrorCode::SignupDisabled,
            "This tenant does not allow self sign-up",
        )
        .with_realm(&slug));
    }
    let body = body.into_inner()?;
    let user = users::create(
        &state,
        &tenant,
        &body.email,
        &body.password,
        &origin(&req, None),
    )
    .await?;
    Ok(HttpResponse::Created().json(super::admin::UserView::fresh(user)))
}
