//! An API of a tenant application protected by latchkey-client, written
//! twice, once per framework, with the same routes and answers:
//!
//! - `GET /me`: any valid access token of the tenant meant for this API;
//! - `GET /reports`: the token must hold the role `analyst`;
//! - `GET /documents`: latchkey's `/authz/check` must allow `documents:read`
//!   to the token's subject.
//!
//! Refusals are latchkey's own (SPEC §5): 401 with `WWW-Authenticate`, 403
//! `forbidden`, problem+json bodies.

use std::time::Duration;

use latchkey_client::{Claims, Verifier, permission, role};
use serde_json::{Value, json};

role!(pub Analyst = "analyst");
permission!(pub ReadDocuments = "documents", "read");

/// What the API needs to start: where latchkey is and who the API is.
#[derive(Clone)]
pub struct Settings {
    /// The tenant's issuer, `{public_url}/tenants/{t}`.
    pub issuer: String,
    /// The identifier tokens must carry in `aud` (the API's client_id).
    pub audience: String,
    /// The API's confidential client (introspection, `/authz/check`).
    pub client_id: String,
    pub client_secret: String,
    /// Revocation-aware mode: how long an introspection answer is trusted;
    /// `None` verifies locally only.
    pub revocation_check: Option<Duration>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("revocation_check", &self.revocation_check)
            .finish()
    }
}

impl Settings {
    /// From the environment: `LATCHKEY_ISSUER`, `TENANT_API_AUDIENCE`
    /// (default `tenant-api`), `TENANT_API_CLIENT_ID` (default the
    /// audience), `TENANT_API_CLIENT_SECRET`, `TENANT_API_REVOCATION_SECONDS`
    /// (default 5; 0 verifies locally only).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let issuer = var("LATCHKEY_ISSUER").ok_or_else(|| {
            anyhow::anyhow!("LATCHKEY_ISSUER is not set (http://127.0.0.1:8080/tenants/acme)")
        })?;
        let audience = var("TENANT_API_AUDIENCE").unwrap_or_else(|| "tenant-api".to_owned());
        let client_id = var("TENANT_API_CLIENT_ID").unwrap_or_else(|| audience.clone());
        let client_secret = var("TENANT_API_CLIENT_SECRET")
            .ok_or_else(|| anyhow::anyhow!("TENANT_API_CLIENT_SECRET is not set"))?;
        let seconds: u64 = match var("TENANT_API_REVOCATION_SECONDS") {
            Some(v) => v.parse().map_err(|_| {
                anyhow::anyhow!("TENANT_API_REVOCATION_SECONDS is not a number of seconds")
            })?,
            None => 5,
        };
        Ok(Settings {
            issuer,
            audience,
            client_id,
            client_secret,
            revocation_check: (seconds > 0).then(|| Duration::from_secs(seconds)),
        })
    }

    /// The verifier these settings describe (reads discovery and the JWKS).
    pub async fn verifier(&self) -> anyhow::Result<Verifier> {
        let mut builder = Verifier::builder(&self.issuer, &self.audience)
            .client(&self.client_id, &self.client_secret);
        if let Some(ttl) = self.revocation_check {
            builder = builder.revocation_check(ttl);
        }
        Ok(builder.build().await?)
    }
}

fn me_body(claims: &Claims) -> Value {
    json!({"sub": claims.sub, "tenant": claims.tid, "roles": claims.roles, "scope": claims.scope})
}

fn reports_body(claims: &Claims) -> Value {
    json!({"reports": ["revenue-2026-q3", "churn-2026-q3"], "for": claims.sub})
}

fn documents_body(claims: &Claims) -> Value {
    json!({"documents": ["handbook.pdf", "roadmap.md"], "for": claims.sub})
}

/// The API on axum.
pub mod axum_app {
    use axum::routing::get;
    use axum::{Json, Router};
    use latchkey_client::{Authenticated, RequirePermission, RequireRole, Verifier};
    use serde_json::Value;

    use super::{Analyst, ReadDocuments};

    async fn me(user: Authenticated) -> Json<Value> {
        Json(super::me_body(&user))
    }

    async fn reports(user: RequireRole<Analyst>) -> Json<Value> {
        Json(super::reports_body(&user))
    }

    async fn documents(user: RequirePermission<ReadDocuments>) -> Json<Value> {
        Json(super::documents_body(&user))
    }

    /// The routes, with the verifier as state.
    pub fn router(verifier: Verifier) -> Router {
        Router::new()
            .route("/me", get(me))
            .route("/reports", get(reports))
            .route("/documents", get(documents))
            .with_state(verifier)
    }

    /// Serves the API on `listener` until the future is dropped.
    pub async fn serve(listener: std::net::TcpListener, verifier: Verifier) -> std::io::Result<()> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router(verifier)).await
    }
}

/// The same API on actix-web.
pub mod actix_app {
    use actix_web::{App, HttpResponse, HttpServer, dev::Server, web};
    use latchkey_client::{Authenticated, RequirePermission, RequireRole, Verifier};

    use super::{Analyst, ReadDocuments};

    async fn me(user: Authenticated) -> HttpResponse {
        HttpResponse::Ok().json(super::me_body(&user))
    }

    async fn reports(user: RequireRole<Analyst>) -> HttpResponse {
        HttpResponse::Ok().json(super::reports_body(&user))
    }

    async fn documents(user: RequirePermission<ReadDocuments>) -> HttpResponse {
        HttpResponse::Ok().json(super::documents_body(&user))
    }

    /// The routes; the verifier must be in the app data.
    pub fn configure(cfg: &mut web::ServiceConfig) {
        cfg.route("/me", web::get().to(me))
            .route("/reports", web::get().to(reports))
            .route("/documents", web::get().to(documents));
    }

    /// Serves the API on `listener`; run the returned server to completion.
    pub fn serve(listener: std::net::TcpListener, verifier: Verifier) -> std::io::Result<Server> {
        Ok(
            HttpServer::new(move || App::new().app_data(verifier.clone()).configure(configure))
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run(),
        )
    }
}
