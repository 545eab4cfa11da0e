//! Health and readiness.

use crate::api::responses::Unavailable;
use actix_web::get;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::AppError;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(healthz);
    cfg.service(readyz);
    cfg.service(metrics);
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    status: &'static str,
}

/// The process is up.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "The process is up", body = Health)
    )
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Prometheus text exposition.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")
    )
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(handle) = crate::metrics::handle() {
        crate::metrics::argon2_queue_depth(state.passwords.queue_depth());
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render())
    } else {
        HttpResponse::ServiceUnavailable().finish()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    status: &'static str,
    database: &'static str,
    session_store: &'static str,
}

/// The database and the session store answer; 503 names what does not.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Database and session store answer", body = Readiness),
        Unavailable
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let (db, store) = state.readiness().await;
    let word = |ok: bool| if ok { "up" } else { "down" };
    let body = Readiness {
        status: if db && store { "ready" } else { "unavailable" },
        database: word(db),
        session_store: word(store),
    };
    if db && store {
        return Ok(HttpResponse::Ok().json(body));
    }
    let mut down = Vec::new();
    if !db {
        down.push("database");
    }
    if !store {
        down.push("session store");
    }
    Err(AppError::unavailable(
        &down.join(" and "),
        anyhow::anyhow!("readiness check failed"),
    ))
}
