//! A signed-in user's own endpoints: userinfo, logout, sessions, password;
//! and self sign-up.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::extract::{TenantCaller, app_state, origin, realm};
use super::{no_content, resource};
use crate::api::Json;
use crate::config::Secret;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::sessions::SessionView;
use crate::service::{auth, users};
use crate::state::AppState;
use crate::store::session::EndReason;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/tenants/{t}/oauth/userinfo")
            .route(web::get().to(userinfo))
            .route(web::post().to(userinfo)),
    )
    .service(resource("/tenants/{t}/logout").route(web::post().to(logout)))
    .service(resource("/tenants/{t}/me/sessions").route(web::get().to(list_sessions)))
    .service(resource("/tenants/{t}/me/sessions/{sid}").route(web::delete().to(end_session)))
    .service(resource("/tenants/{t}/me/password").route(web::post().to(change_password)))
    .service(resource("/tenants/{t}/signup").route(web::post().to(signup)));
}

#[derive(Serialize)]
struct UserInfo {
    sub: String,
    email: String,
    email_verified: bool,
    tid: String,
}

/// OIDC userinfo of the token's user.
async fn userinfo(state: web::Data<AppState>, caller: TenantCaller) -> AppResult<HttpResponse> {
    let user_id = caller.user_id()?;
    if !caller.claims.scope.split(' ').any(|s| s == "openid") {
        return Err(
            AppError::insufficient_scope("openid", "userinfo needs the openid scope")
                .with_realm(&caller.tenant.slug),
        );
    }
    let user = users::get(&state, &caller.tenant.slug, user_id)
        .await
        .map_err(|e| match e.code() {
            ErrorCode::NotFound => {
                AppError::new(ErrorCode::SessionRevoked, "The user no longer exists")
                    .with_realm(&caller.tenant.slug)
            }
            _ => e,
        })?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(UserInfo {
            sub: user.id,
            email: user.email,
            email_verified: user.email_verified,
            tid: caller.tenant.slug.clone(),
        }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    #[serde(default)]
    all: bool,
}

/// Ends the caller's session (or all of the user's with `{"all": true}`).
async fn logout(
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
        serde_json::from_slice(&body)
            .map_err(|e| AppError::validation("body", e).with_realm(&realm))?
    };
    let origin = origin(&req, Some(&caller.claims.sub));
    auth::logout(&state, &caller.tenant, &caller.claims, body.all, &origin).await?;
    Ok(no_content())
}

#[derive(Serialize)]
struct SessionList {
    items: Vec<SessionView>,
    next_cursor: Option<String>,
}

/// The caller's active sessions.
async fn list_sessions(
    state: web::Data<AppState>,
    caller: TenantCaller,
) -> AppResult<HttpResponse> {
    let user_id = caller.user_id()?;
    let sessions = state
        .sessions
        .list_user_sessions(&caller.tenant.slug, user_id)
        .await?;
    let current = caller.claims.sid.as_deref();
    let items = sessions
        .into_iter()
        .map(|s| SessionView::new(s, current))
        .collect();
    Ok(HttpResponse::Ok().json(SessionList {
        items,
        next_cursor: None,
    }))
}

/// Ends one of the caller's sessions.
async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: TenantCaller,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, sid) = path.into_inner();
    let user_id = caller.user_id()?;
    let slug = &caller.tenant.slug;
    let owned = state
        .sessions
        .get_session(slug, &sid)
        .await?
        .is_some_and(|s| s.user_id == user_id);
    if !owned {
        return Err(AppError::not_found("The session").with_realm(slug));
    }
    state
        .sessions
        .end_session(slug, &sid, EndReason::Revoked, state.linger(&caller.tenant))
        .await?;
    crate::service::audit::record(
        &state,
        slug,
        "session.revoke",
        "success",
        Some(&sid),
        &origin(&req, Some(user_id)),
    )
    .await;
    Ok(no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordChange {
    current_password: Secret,
    new_password: Secret,
}

/// Changes the caller's password; every other session ends.
async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: TenantCaller,
    body: Json<PasswordChange>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner()?;
    let origin = origin(&req, Some(&caller.claims.sub));
    auth::change_password(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    email: String,
    password: Secret,
}

/// Self sign-up, when the tenant allows it.
async fn signup(req: HttpRequest, body: Json<SignupBody>) -> AppResult<HttpResponse> {
    let state = app_state(&req)?;
    let slug = realm(&req);
    let tenant = state.tenant(&slug).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => AppError::not_found("The tenant"),
        other => other.into(),
    })?;
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
    Ok(HttpResponse::Created().json(super::admin::UserView::from(user)))
}
