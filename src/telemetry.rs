//! Logging set-up and the per-request context (request id, route).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// What every log line and error body of one request may name.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub id: String,
    pub route: String,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// The context of the request being served, or a placeholder outside one.
pub fn current_request() -> RequestContext {
    REQUEST
        .try_with(Clone::clone)
        .unwrap_or_else(|_| RequestContext {
            id: "-".to_owned(),
            route: "-".to_owned(),
        })
}

/// Installs the global subscriber. Safe to call more than once (tests).
pub fn init(filter: &str, format: LogFormat) {
    let env_filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Accepts a caller's request id only when it is short and plain.
fn acceptable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Middleware: assigns a request id, makes it available to error bodies and
/// logs, and echoes it in `X-Request-Id`.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let ctx = RequestContext {
        id: id.clone(),
        route: format!("{} {}", req.method(), req.path()),
    };
    let mut res = REQUEST.scope(ctx, next.call(req)).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// Largest single request header value (twice the longest token latchkey
/// reads, so an oversized token is still answered 401 by the verifier), and
/// all header lines together.
pub const MAX_HEADER_VALUE: usize = 16 * 1024;
pub const MAX_HEADERS_TOTAL: usize = 32 * 1024;

/// Middleware: refuses oversized request headers with 431 before any
/// handler parses them.
pub async fn header_limits(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let mut total = 0usize;
    let mut oversized = None;
    for (name, value) in req.headers() {
        let len = value.len();
        total += name.as_str().len() + len + 4;
        if len > MAX_HEADER_VALUE && oversized.is_none() {
            oversized = Some(name.as_str().to_owned());
        }
    }
    let problem = match oversized {
        Some(name) => Some(format!(
            "The {name} header is longer than {MAX_HEADER_VALUE} bytes."
        )),
        None if total > MAX_HEADERS_TOTAL => Some(format!(
            "The request headers are longer than {MAX_HEADERS_TOTAL} bytes in all."
        )),
        None => None,
    };
    let Some(detail) = problem else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let error = crate::error::AppError::headers_too_large(detail)
        .in_flavor(crate::ratelimit::flavor_of(req.path()));
    let response = actix_web::ResponseError::error_response(&error);
    Ok(req.into_response(response).map_into_right_body())
}

/// The API reference page loads its script, styles and images from
/// latchkey itself and fetches only `/openapi.json`; nothing from elsewhere,
/// never framed. The one inline style Swagger UI injects is allowed by its
/// hash (`.ci/docs-browser` renders the page in Chromium and fails on any
/// violation, so a Swagger UI upgrade that changes it is caught).
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
    img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The hosted pages (SPEC §9) when no page set its own (errors answered
/// before a handler ran): latchkey's stylesheet only, never framed.
pub const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every other answer is data, never a document to render or frame.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Middleware: headers every response carries; admin answers are never cached.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use actix_web::http::header;
    let admin = req.path().starts_with("/admin");
    let docs = req.path() == "/docs" || req.path().starts_with("/docs/");
    let hosted = crate::ratelimit::is_hosted_page(req.path());
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A hosted page sets its own policy (its form's redirect target).
    if !(hosted && headers.contains_key(header::CONTENT_SECURITY_POLICY)) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if docs {
                DOCS_CSP
            } else if hosted {
                PAGE_CSP
            } else {
                API_CSP
            }),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if admin {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

/// Runs blocking work on the blocking pool, keeping the caller's span so its
/// logs still carry the request's fields.
pub async fn spawn_blocking<F, R>(f: F) -> Result<R, tokio::task::JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        f()
    })
    .await
}
