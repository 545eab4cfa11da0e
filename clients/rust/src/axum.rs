//! axum glue (feature `axum`): the extractors take the [`Verifier`] from
//! the router's state (`Verifier: FromRef<S>`) and answer refusals as
//! SPEC §5.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use latchkey_client::{Authenticated, RequireRole, Verifier, role};
//!
//! role!(Analyst = "analyst");
//!
//! async fn me(user: Authenticated) -> String {
//!     user.sub.clone()
//! }
//! async fn reports(user: RequireRole<Analyst>) -> String {
//!     format!("reports for {}", user.sub)
//! }
//!
//! # fn app(verifier: Verifier) -> Router {
//! Router::new()
//!     .route("/me", get(me))
//!     .route("/reports", get(reports))
//!     .with_state(verifier)
//! # }
//! ```

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{self, HeaderValue};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::AuthError;
use crate::extract::{
    self, Authenticated, PermissionName, Rejection, RequirePermission, RequireRole, RequireScope,
    RoleName, ScopeName,
};
use crate::verifier::Verifier;

fn token_of(parts: &Parts) -> Result<String, AuthError> {
    extract::bearer_token(
        parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes),
        parts.uri.query().unwrap_or_default(),
    )
    .map(str::to_owned)
}

impl<S> FromRequestParts<S> for Authenticated
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        let verifier = Verifier::from_ref(state);
        Ok(Authenticated(
            extract::authenticate(&verifier, token_of(parts)).await?,
        ))
    }
}

impl<S, R: RoleName> FromRequestParts<S> for RequireRole<R>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        extract::require_role::<R>(&Verifier::from_ref(state), token_of(parts)).await
    }
}

impl<S, T: ScopeName> FromRequestParts<S> for RequireScope<T>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        extract::require_scope::<T>(&Verifier::from_ref(state), token_of(parts)).await
    }
}

impl<S, P: PermissionName> FromRequestParts<S> for RequirePermission<P>
where
    Verifier: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Rejection> {
        extract::require_permission::<P>(&Verifier::from_ref(state), token_of(parts)).await
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let parts = self.to_response_parts();
        let status = StatusCode::from_u16(parts.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut headers = HeaderMap::new();
        if let Some(challenge) = parts
            .www_authenticate
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = parts.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        (status, headers, parts.body).into_response()
    }
}
