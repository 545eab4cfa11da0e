//! CORS for browser applications (SPEC §9, Fetch standard §3.2): the token,
//! revocation and userinfo endpoints answer requests, preflights included,
//! from the origins of the tenant's registered redirect URIs and from no
//! other origin. Discovery and JWKS answer any origin (their handlers);
//! the hosted pages never answer CORS.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::state::AppState;

/// The tenant of a path that answers CORS, with the methods it allows.
fn cors_route(path: &str) -> Option<(&str, &'static str)> {
    let rest = path.strip_prefix("/tenants/")?;
    let (tenant, route) = rest.split_once('/')?;
    let methods = match route.trim_end_matches('/') {
        "oauth/token" | "oauth/revoke" => "POST",
        "oauth/userinfo" => "GET",
        _ => return None,
    };
    Some((tenant, methods))
}

/// Whether `origin` may call the tenant's endpoints from a browser.
async fn allowed(state: &AppState, tenant: &str, origin: &str) -> bool {
    // An unknown tenant is never cached here (nor is an invented origin).
    if state.tenant(tenant).await.is_err() {
        return false;
    }
    match state.client_origins(tenant).await {
        Ok(origins) => origins.allows(origin),
        Err(e) => {
            tracing::warn!(error = %e, "client origins unavailable; CORS refused");
            false
        }
    }
}

/// Middleware: the CORS answers of SPEC §9.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (Some(origin), Some((tenant, methods))) = (origin, cors_route(req.path())) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let tenant = tenant.to_owned();
    let ok = match req.app_data::<web::Data<AppState>>() {
        Some(state) => allowed(state, &tenant, &origin).await,
        None => false,
    };
    let allow_origin = ok.then(|| HeaderValue::from_str(&origin).ok()).flatten();
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut res = HttpResponse::NoContent();
        res.insert_header((header::VARY, "Origin"));
        if let Some(value) = allow_origin {
            res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, value))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, methods))
                .insert_header((
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "Authorization, Content-Type",
                ))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        }
        return Ok(req.into_response(res.finish()).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(value) = allow_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate, Retry-After"),
        );
    }
    Ok(res.map_into_left_body())
}
