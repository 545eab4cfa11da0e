//! The HTTP edge: parse, authenticate, authorize, call a service, answer.

pub mod admin;
pub mod authz;
pub mod cors;
pub mod extract;
pub mod me;
pub mod oauth;
pub mod ops;
pub mod pages;
pub mod responses;
pub mod wellknown;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::{AppError, AppResult, ErrorCode};

/// Caps every request body at `LATCHKEY_MAX_BODY_BYTES`.
pub fn payload_config(limit: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(limit)
}

/// The body cap in force for a request.
pub fn body_limit(req: &HttpRequest) -> usize {
    req.app_data::<web::Data<crate::state::AppState>>()
        .map_or(64 * 1024, |s| s.config.max_body_bytes)
}

/// Whether a request's body is `application/x-www-form-urlencoded`
/// (parameters after `;`, such as a charset, allowed).
pub fn is_form_urlencoded(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Reads a form-encoded body of at most `LATCHKEY_MAX_BODY_BYTES`: 415 for
/// another content type, 413 beyond the cap (each caller's flavor).
pub async fn read_form_body(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> AppResult<web::BytesMut> {
    use futures_util::StreamExt;
    if !is_form_urlencoded(req) {
        return Err(AppError::new(
            ErrorCode::UnsupportedMediaType,
            "The body must be application/x-www-form-urlencoded",
        ));
    }
    let limit = body_limit(req);
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| AppError::new(ErrorCode::InvalidRequest, "The body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("The body is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A JSON body whose problems are reported only when the handler asks for
/// it ([`Json::into_inner`]), that is after authentication and authorization:
/// actix polls a handler's extractors together, and a bad body must never
/// answer before "who are you?" and "you may not" have been asked.
pub struct Json<T>(AppResult<T>);

impl<T> Json<T> {
    pub fn into_inner(self) -> AppResult<T> {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let realm = extract::realm(req);
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
        let bytes = web::Bytes::from_request(req, payload);
        let limit = body_limit(req);
        Box::pin(async move {
            let parsed = match bytes.await {
                _ if !is_json => Err(AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "The body must be application/json",
                )),
                Ok(body) => {
                    serde_json::from_slice::<T>(&body).map_err(|e| AppError::validation("body", e))
                }
                Err(e) if matches!(e.as_error::<PayloadError>(), Some(PayloadError::Overflow)) => {
                    Err(AppError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("The body is larger than {limit} bytes"),
                    ))
                }
                Err(e) => Err(AppError::validation("body", e)),
            };
            Ok(Json(parsed.map_err(|e| e.with_realm(&realm))))
        })
    }
}

/// A query string, deferred like [`Json`].
pub struct Query<T>(AppResult<T>);

impl<T> Query<T> {
    pub fn into_inner(self) -> AppResult<T> {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = serde_urlencoded::from_str::<T>(req.query_string())
            .map_err(|e| AppError::validation("query", e).with_realm(&extract::realm(req)));
        std::future::ready(Ok(Query(parsed)))
    }
}

/// Path segments that do not parse are unknown resources.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_, req| {
        AppError::not_found("The resource")
            .with_realm(&extract::realm(req))
            .into()
    })
}

/// `?limit=&cursor=` of every listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn limit(&self) -> Result<usize, AppError> {
        match self.limit {
            None => Ok(50),
            Some(n) if (1..=200).contains(&n) => Ok(n),
            Some(_) => Err(AppError::validation("limit", "must be between 1 and 200")),
        }
    }
}

/// `{"items": [...], "next_cursor": ...}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Formats a stored time as RFC 3339 UTC.
pub use crate::domain::rfc3339;

/// The API description's fixed parts; paths and schemas are collected from
/// the handlers as they are registered.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "latchkey",
        description = "A multi-tenant identity provider: JWT access tokens (RFC 9068), rotating refresh tokens, immediate revocation, per-tenant roles (Casbin) and a policy decision point. Every error is `application/problem+json` (RFC 9457) with a stable `code`; the OAuth endpoints answer RFC 6749 §5.2 bodies with `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(crate::error::Problem, crate::error::OAuthError, crate::error::ErrorCode)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "oauth", description = "RFC 6749 token endpoint, RFC 7009 revocation, RFC 7662 introspection"),
        (name = "discovery", description = "OIDC discovery and JWKS"),
        (name = "me", description = "The signed-in user's own endpoints"),
        (name = "authorization", description = "Policy decision point for tenant applications"),
        (name = "tenants", description = "Tenants (platform admins; tenant admins read and rename their own)"),
        (name = "users", description = "Users of a tenant"),
        (name = "roles", description = "Roles and role assignments of a tenant"),
        (name = "clients", description = "OAuth clients of a tenant"),
        (name = "sessions", description = "Sessions of a tenant's users"),
        (name = "keys", description = "Signing keys of a tenant"),
        (name = "audit", description = "Audit log of a tenant"),
        (name = "operations", description = "Health, readiness, metrics")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("An access token of the tenant (or of `system` for platform admins on admin routes)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("client_secret_basic: client_id and client_secret"))
                    .build(),
            ),
        );
    }
}

/// Registers every route, through utoipa-actix-web so the OpenAPI document
/// is collected from the same registrations.
pub fn configure(cfg: &mut ServiceConfig) {
    // The router tries routes in this order, one pattern match each: the
    // hot paths (token, revoke, introspect, userinfo, authz/check) first.
    oauth::configure(cfg);
    me::configure(cfg);
    authz::configure(cfg);
    ops::configure(cfg);
    wellknown::configure(cfg);
    pages::configure(cfg);
    admin::configure(cfg);
}

/// The OpenAPI 3.1 document generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    use utoipa_actix_web::AppExt;
    let (_, api) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(configure)
        .split_for_parts();
    // utoipa states neither of the two below; they are added on the JSON form.
    let Ok(mut value) = serde_json::to_value(&api) else {
        return api;
    };
    if let Some(schemas) = value.pointer_mut("/components/schemas") {
        // The hosted pages' forms ignore what they do not know (RFC 6749
        // §3.1, OIDC RP-Initiated Logout §2): they stay open.
        for form in ["LoginForm", "EndSessionForm"] {
            if let Some(schema) = schemas.get_mut(form).and_then(|f| f.as_object_mut()) {
                schema.insert(
                    "additionalProperties".to_owned(),
                    serde_json::Value::Bool(true),
                );
            }
        }
        close_objects(schemas);
    }
    add_limit_responses(&mut value);
    serde_json::from_value(value).unwrap_or(api)
}

/// Adds the answers every operation can give before its handler runs: 429
/// (rate limits; not on health, readiness and metrics) and 431 (oversized
/// headers), in the operation's error format.
fn add_limit_responses(api: &mut serde_json::Value) {
    use serde_json::json;
    let Some(paths) = api.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let oauth = crate::ratelimit::is_oauth_endpoint(path);
        let limited = crate::ratelimit::group_of(path).is_some();
        let (media, schema) = if oauth {
            ("application/json", "#/components/schemas/OAuthError")
        } else {
            ("application/problem+json", "#/components/schemas/Problem")
        };
        let Some(methods) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in methods.iter_mut() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            if limited {
                responses.entry("429").or_insert_with(|| {
                    json!({
                        "description": "`rate_limited`: too many requests from this client address",
                        "headers": {"Retry-After": {
                            "description": "Seconds to wait before retrying",
                            "schema": {"type": "integer", "minimum": 1}
                        }},
                        "content": {media: {"schema": {"$ref": schema}}}
                    })
                });
            }
            responses.entry("431").or_insert_with(|| {
                json!({
                    "description": "`payload_too_large`: a header over 16 KiB, or 32 KiB of headers in all",
                    "content": {media: {"schema": {"$ref": schema}}}
                })
            });
        }
    }
}

/// Marks every object schema with named properties `additionalProperties:
/// false`: request bodies refuse unknown fields and views carry exactly
/// their fields, which utoipa does not state for every shape (enum variants).
fn close_objects(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert(
                    "additionalProperties".to_owned(),
                    serde_json::Value::Bool(false),
                );
            }
            map.values_mut().for_each(close_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// The route templates and their methods, for 405 answers with `Allow`.
#[derive(Debug, Default)]
pub struct RouteTable(Vec<(Vec<String>, Vec<String>)>);

impl RouteTable {
    pub fn from_openapi(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect();
                let methods = serde_json::to_value(item)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .map(|o| {
                        o.keys()
                            .filter(|k| {
                                ["get", "post", "put", "patch", "delete", "head", "options"]
                                    .contains(&k.as_str())
                            })
                            .map(|k| k.to_ascii_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                (segments, methods)
            })
            .collect();
        Self(routes)
    }

    /// The methods a concrete path takes, if any route template matches it.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|(segments, _)| {
                segments.len() == parts.len()
                    && segments
                        .iter()
                        .zip(&parts)
                        .all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p)
            })
            .map(|(_, methods)| methods.clone())
    }
}

/// Unknown paths are 404; known paths with another method are 405 with `Allow`.
pub async fn fallback(
    req: HttpRequest,
    routes: web::Data<RouteTable>,
) -> Result<HttpResponse, AppError> {
    let realm = extract::realm(&req);
    // The hosted pages answer in HTML, whatever went wrong.
    let flavor = if crate::ratelimit::is_hosted_page(req.path()) {
        crate::error::Flavor::Html
    } else {
        crate::error::Flavor::Problem
    };
    let error = match routes.allowed(req.path()) {
        Some(methods) => AppError::new(
            ErrorCode::MethodNotAllowed,
            format!("{} is not allowed here", req.method()),
        )
        .with_allow(&methods.join(", ")),
        None => AppError::not_found("The resource"),
    };
    Err(error.with_realm(&realm).in_flavor(flavor))
}

/// 204 with no body.
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
