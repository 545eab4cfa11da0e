//! Extractors: the bearer token, the caller of a tenant's resource endpoints,
//! and `Authorized<P>`, through which an admin handler declares the
//! permission it needs. The check runs before the handler body; a handler
//! cannot forget it.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use crate::authn::tokens::{self, AccessClaims};
use crate::authz::ROLE_PLATFORM_ADMIN;
use crate::domain::SYSTEM_TENANT;
use crate::error::{AppError, ErrorCode};
use crate::service::Origin;
use crate::service::token_check::{authenticate_bearer, check_access_state, token_error};
use crate::state::AppState;
use crate::store::db::tenants::Tenant;

type Fut<T> = Pin<Box<dyn Future<Output = Result<T, AppError>>>>;

/// The application state, or a 500 if the app was built without it.
pub fn app_state(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("application state missing")))
}

/// The tenant named by the path, or `latchkey` on routes without one.
pub fn realm(req: &HttpRequest) -> String {
    req.match_info()
        .get("t")
        .unwrap_or("latchkey")
        .chars()
        .take(64)
        .collect()
}

/// The client's address: the peer, or what a trusted proxy forwarded.
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr()?.ip();
    Some(match req.app_data::<web::Data<AppState>>() {
        Some(state) => state.proxies.client_ip(peer, req.headers()),
        None => peer,
    })
}

/// Who made the request and from where, for audit events and sessions.
pub fn origin(req: &HttpRequest, actor: Option<&str>) -> Origin {
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(256).collect());
    Origin {
        actor: actor.map(str::to_owned),
        ip: client_ip(req).map(|ip| ip.to_string()),
        user_agent: ua,
        request_id: Some(crate::telemetry::current_request().id),
    }
}

/// Pulls the bearer token out of the `Authorization` header (the only place
/// a token may travel), answering the SPEC §5 codes when it is not there.
pub fn bearer_token(req: &HttpRequest) -> Result<String, AppError> {
    let realm = realm(req);
    let in_query = req
        .query_string()
        .split('&')
        .any(|kv| kv.split('=').next() == Some("access_token"));
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    let first = headers.next();
    if in_query || headers.next().is_some() {
        return Err(AppError::bearer_invalid_request(
            "Send the access token once, in the Authorization header only",
        )
        .with_realm(&realm));
    }
    let Some(value) = first else {
        return Err(
            AppError::new(ErrorCode::TokenMissing, "An access token is required")
                .with_realm(&realm),
        );
    };
    let malformed = |d: &str| AppError::new(ErrorCode::TokenMalformed, d).with_realm(&realm);
    let value = value
        .to_str()
        .map_err(|_| malformed("The Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("The Authorization scheme must be Bearer"));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(malformed("The bearer token is empty or malformed"));
    }
    Ok(token.to_owned())
}

/// The tenant named by a path, or 404 `not_found`.
pub async fn load_tenant(state: &AppState, slug: &str) -> Result<Arc<Tenant>, AppError> {
    state.tenant(slug).await.map_err(|e| match e {
        crate::store::StoreError::NotFound(_) => AppError::not_found("The tenant").with_realm(slug),
        other => other.into(),
    })
}

/// The caller of a tenant's own resource endpoints (userinfo, me, logout):
/// a token issued by the tenant of the path, active in the store.
pub struct TenantCaller {
    pub tenant: Arc<Tenant>,
    pub claims: AccessClaims,
}

impl TenantCaller {
    /// The user behind the token; client tokens have none.
    pub fn user_id(&self) -> Result<&str, AppError> {
        self.claims.user_id().ok_or_else(|| {
            AppError::insufficient_scope("openid", "This endpoint needs a user's token")
                .with_realm(&self.tenant.slug)
        })
    }
}

impl FromRequest for TenantCaller {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            let slug = realm(&req);
            let tenant = load_tenant(&state, &slug).await?;
            let token = bearer_token(&req)?;
            let claims = authenticate_bearer(&state, &slug, &token).await?;
            Ok(Self { tenant, claims })
        })
    }
}

/// An admin permission: `{resource}:{action}` in the tenant's domain.
pub trait Permission {
    const RESOURCE: &'static str;
    const ACTION: &'static str;
}

macro_rules! permissions {
    ($($name:ident => $resource:literal : $action:literal),* $(,)?) => {
        $(
            #[doc = concat!("The `", $resource, ":", $action, "` permission.")]
            pub struct $name;
            impl Permission for $name {
                const RESOURCE: &'static str = $resource;
                const ACTION: &'static str = $action;
            }
        )*
    };
}

permissions! {
    UsersRead => "users":"read",
    UsersWrite => "users":"write",
    ClientsRead => "clients":"read",
    ClientsWrite => "clients":"write",
    TenantRead => "tenant":"read",
    TenantWrite => "tenant":"write",
    RolesRead => "roles":"read",
    RolesWrite => "roles":"write",
    KeysRead => "keys":"read",
    KeysWrite => "keys":"write",
    AuditRead => "audit":"read",
    SessionsRead => "sessions":"read",
    SessionsWrite => "sessions":"write",
}

/// An authenticated admin caller, before any permission check.
pub struct AdminCaller {
    pub claims: AccessClaims,
    pub platform_admin: bool,
}

impl AdminCaller {
    pub fn user_id(&self) -> &str {
        &self.claims.sub
    }
}

/// Verifies a token of any tenant and its revocation state.
async fn admin_caller(state: &AppState, req: &HttpRequest) -> Result<AdminCaller, AppError> {
    let realm = realm(req);
    let token = bearer_token(req)?;
    let claims = tokens::verify_any_tenant(
        &state.keys,
        &state.public_url,
        &token,
        state.config.clock_leeway_seconds,
    )
    .await
    .map_err(|e| token_error(e).with_realm(&realm))?;
    check_access_state(state, &claims)
        .await
        .map_err(|e| e.with_realm(&realm))?;
    let platform_admin = match claims.user_id() {
        Some(user) if claims.tid == SYSTEM_TENANT => state.authz.is_platform_admin(user).await?,
        _ => false,
    };
    Ok(AdminCaller {
        claims,
        platform_admin,
    })
}

/// An admin request allowed by Casbin to use permission `P` in the tenant of
/// the path. Platform admins pass in every tenant; anyone else needs a token
/// of that tenant and a role granting `P` there.
pub struct Authorized<P: Permission> {
    pub caller: AdminCaller,
    pub tenant: Arc<Tenant>,
    _permission: PhantomData<P>,
}

impl<P: Permission> Authorized<P> {
    pub fn origin(&self, req: &HttpRequest) -> Origin {
        origin(req, Some(self.caller.user_id()))
    }
}

impl<P: Permission + 'static> FromRequest for Authorized<P> {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            let slug = realm(&req);
            let caller = admin_caller(&state, &req).await?;
            let permission = format!("{}:{}", P::RESOURCE, P::ACTION);
            let allowed = caller.platform_admin
                || match caller.claims.user_id() {
                    Some(user) if caller.claims.tid == slug => {
                        state
                            .authz
                            .allowed(&slug, user, P::RESOURCE, P::ACTION)
                            .await?
                    }
                    _ => false,
                };
            if !allowed {
                return Err(AppError::forbidden(&permission).with_realm(&slug));
            }
            if P::ACTION == "write"
                && !caller.platform_admin
                && touches_platform_admin(&state, &req, &slug).await?
            {
                return Err(AppError::forbidden("platform-admin").with_realm(&slug));
            }
            let tenant = load_tenant(&state, &slug).await?;
            Ok(Self {
                caller,
                tenant,
                _permission: PhantomData,
            })
        })
    }
}

/// Whether a write in `tenant` acts on platform-admin powers: on a user who
/// is a platform admin (their account, sessions or roles), or on the
/// `platform-admin` role itself. Only platform admins may; a `system`
/// tenant `admin` may not (it could otherwise take over or become one).
async fn touches_platform_admin(
    state: &AppState,
    req: &HttpRequest,
    tenant: &str,
) -> Result<bool, AppError> {
    if tenant != SYSTEM_TENANT {
        return Ok(false);
    }
    if req.match_info().get("role") == Some(ROLE_PLATFORM_ADMIN) {
        return Ok(true);
    }
    match req.match_info().get("user_id") {
        Some(user) => Ok(state.authz.is_platform_admin(user).await?),
        None => Ok(false),
    }
}

/// A platform administrator (role `platform-admin` in `system`).
pub struct PlatformAdmin {
    pub caller: AdminCaller,
}

impl PlatformAdmin {
    pub fn origin(&self, req: &HttpRequest) -> Origin {
        origin(req, Some(self.caller.user_id()))
    }
}

impl FromRequest for PlatformAdmin {
    type Error = AppError;
    type Future = Fut<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = app_state(&req)?;
            let caller = admin_caller(&state, &req).await?;
            if !caller.platform_admin {
                return Err(AppError::forbidden("platform-admin").with_realm(&realm(&req)));
            }
            Ok(Self { caller })
        })
    }
}

/// Middleware: a token sent outside the `Authorization` header (an
/// `access_token` query or form-body parameter, RFC 6750 §2.2–2.3) is
/// answered 400 `invalid_request` before any other check, on every API
/// route but the three OAuth endpoints that take form bodies of their own
/// (SPEC §4, §5: tokens never belong in URLs or bodies).
pub async fn tokens_outside_the_header(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;

    let path = req.path();
    let guarded = (path.starts_with("/tenants/") || path.starts_with("/admin/"))
        && crate::ratelimit::flavor_of(path) == crate::error::Flavor::Problem;
    if !guarded {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let has_token = |form: &[u8]| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(form)
            .is_ok_and(|pairs| pairs.iter().any(|(k, _)| k == "access_token"))
    };
    let mut outside = has_token(req.query_string().as_bytes());
    let is_form = crate::api::is_form_urlencoded(req.request());
    if !outside && is_form {
        // Read at most one byte past the body limit; the handler answers
        // 413 for the rest as it would have.
        let limit = crate::api::body_limit(req.request()) + 1;
        let mut payload = req.take_payload();
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            body.extend_from_slice(&chunk);
            if body.len() >= limit {
                break;
            }
        }
        outside = has_token(&body);
        req.set_payload(actix_web::dev::Payload::from(body.freeze()));
    }
    if !outside {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let error = AppError::bearer_invalid_request(
        "Send the access token once, in the Authorization header only",
    )
    .with_realm(&realm_of_path(req.path()));
    let response = actix_web::ResponseError::error_response(&error);
    Ok(req.into_response(response).map_into_right_body())
}

/// The realm of a path before routing: its tenant segment, or `latchkey`.
fn realm_of_path(path: &str) -> String {
    let rest = path
        .strip_prefix("/tenants/")
        .or_else(|| path.strip_prefix("/admin/tenants/"));
    match rest.and_then(|r| r.split('/').next()) {
        Some(t)
            if !t.is_empty()
                && t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            t.to_owned()
        }
        _ => "latchkey".to_owned(),
    }
}
