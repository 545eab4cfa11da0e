//! actix-web glue (feature `actix-web`): the extractors take the
//! [`Verifier`] from the app data (`App::app_data(verifier)` or
//! `web::Data<Verifier>`) and answer refusals as SPEC §5.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
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
//! # async fn run(verifier: Verifier) -> std::io::Result<()> {
//! HttpServer::new(move || {
//!     App::new()
//!         .app_data(verifier.clone())
//!         .route("/me", web::get().to(me))
//!         .route("/reports", web::get().to(reports))
//! })
//! .bind("127.0.0.1:8081")?
//! .run()
//! .await
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};

use crate::error::AuthError;
use crate::extract::{
    self, Authenticated, PermissionName, Rejection, RequirePermission, RequireRole, RequireScope,
    RoleName, ScopeName,
};
use crate::verifier::Verifier;

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

fn verifier_of(req: &HttpRequest) -> Result<Verifier, actix_web::Error> {
    if let Some(verifier) = req.app_data::<Verifier>() {
        return Ok(verifier.clone());
    }
    if let Some(verifier) = req.app_data::<web::Data<Verifier>>() {
        return Ok(verifier.get_ref().clone());
    }
    tracing::error!("no latchkey_client::Verifier in the app data");
    Err(actix_web::error::ErrorInternalServerError(
        "the API is not configured to verify tokens",
    ))
}

fn token_of(req: &HttpRequest) -> Result<String, AuthError> {
    extract::bearer_token(
        req.headers()
            .get_all(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
        req.query_string(),
    )
    .map(str::to_owned)
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = verifier_of(req);
        let token = token_of(req);
        Box::pin(async move {
            let verifier = verifier?;
            Ok(Authenticated(
                extract::authenticate(&verifier, token).await?,
            ))
        })
    }
}

impl<R: RoleName> FromRequest for RequireRole<R> {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = verifier_of(req);
        let token = token_of(req);
        Box::pin(async move { Ok(extract::require_role::<R>(&verifier?, token).await?) })
    }
}

impl<S: ScopeName> FromRequest for RequireScope<S> {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = verifier_of(req);
        let token = token_of(req);
        Box::pin(async move { Ok(extract::require_scope::<S>(&verifier?, token).await?) })
    }
}

impl<P: PermissionName> FromRequest for RequirePermission<P> {
    type Error = actix_web::Error;
    type Future = Extracted<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = verifier_of(req);
        let token = token_of(req);
        Box::pin(async move { Ok(extract::require_permission::<P>(&verifier?, token).await?) })
    }
}

impl ResponseError for Rejection {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let parts = self.to_response_parts();
        let mut builder = HttpResponse::build(self.status_code());
        if let Some(challenge) = parts
            .www_authenticate
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            builder.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let Some(seconds) = parts.retry_after {
            builder.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        builder
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::CONTENT_TYPE, "application/problem+json"))
            .body(parts.body)
    }
}
