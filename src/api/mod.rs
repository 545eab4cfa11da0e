//! The HTTP edge: parse, authenticate, authorize, call a service, answer.

pub mod admin;
pub mod extract;
pub mod me;
pub mod oauth;
pub mod ops;
pub mod wellknown;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{HttpRequest, HttpResponse, Route, web};
use serde::{Deserialize, Serialize};

use crate::error::{AppError, ErrorCode};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Maps JSON body failures to 400/413/415 problem documents.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(BODY_LIMIT)
        .error_handler(|err, req| {
            let realm = extract::realm(req);
            let e = match &err {
                JsonPayloadError::ContentType => AppError::new(
                    ErrorCode::UnsupportedMediaType,
                    "The body must be application/json",
                ),
                JsonPayloadError::Overflow { .. }
                | JsonPayloadError::OverflowKnownLength { .. } => AppError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("The body is larger than {BODY_LIMIT} bytes"),
                ),
                JsonPayloadError::Deserialize(e) => AppError::validation("body", e),
                other => AppError::validation("body", other),
            };
            e.with_realm(&realm).into()
        })
}

/// Maps query-string failures to 400.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, req| {
        AppError::validation("query", err)
            .with_realm(&extract::realm(req))
            .into()
    })
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
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
#[derive(Debug, Serialize)]
pub struct ListResponse<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Formats a stored time as RFC 3339 UTC.
pub fn rfc3339(t: chrono::NaiveDateTime) -> String {
    t.and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The body of every request to an unknown path.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::not_found("The resource").with_realm(&extract::realm(&req)))
}

/// The body of every request with a method the path does not take.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed here", req.method()),
    )
    .with_realm(&extract::realm(&req)))
}

/// A resource whose other methods answer 405 problem+json.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// Sugar for building routes.
pub fn get() -> Route {
    web::get()
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    ops::configure(cfg);
    wellknown::configure(cfg);
    oauth::configure(cfg);
    me::configure(cfg);
    admin::configure(cfg);
}

/// 204 with no body.
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
