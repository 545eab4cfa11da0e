//! The HTTP edge: parse, authenticate, authorize, call a service, answer.

pub mod admin;
pub mod authz;
pub mod extract;
pub mod me;
pub mod oauth;
pub mod ops;
pub mod wellknown;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, Route, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult, ErrorCode};

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Caps every request body.
pub fn payload_config() -> web::PayloadConfig {
    web::PayloadConfig::new(BODY_LIMIT)
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
                        format!("The body is larger than {BODY_LIMIT} bytes"),
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
    authz::configure(cfg);
    admin::configure(cfg);
}

/// 204 with no body.
pub fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}
