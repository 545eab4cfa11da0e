//! Health and readiness.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::resource;
use crate::error::AppError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/readyz").route(web::get().to(readyz)))
        .service(resource("/metrics").route(web::get().to(metrics)));
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// The process is up.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// Prometheus text exposition.
async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    if let Some(handle) = crate::metrics::handle() {
        crate::metrics::argon2_queue_depth(state.passwords.queue_depth());
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(handle.render())
    } else {
        HttpResponse::ServiceUnavailable().finish()
    }
}

#[derive(Serialize)]
struct Readiness {
    status: &'static str,
    database: &'static str,
    session_store: &'static str,
}

/// The database and the session store answer; 503 names what does not.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let (db, store) = tokio::join!(state.db.ping(), state.sessions.ping());
    let word = |ok: bool| if ok { "up" } else { "down" };
    let body = Readiness {
        status: if db.is_ok() && store.is_ok() {
            "ready"
        } else {
            "unavailable"
        },
        database: word(db.is_ok()),
        session_store: word(store.is_ok()),
    };
    if db.is_ok() && store.is_ok() {
        return Ok(HttpResponse::Ok().json(body));
    }
    let mut down = Vec::new();
    if let Err(e) = &db {
        tracing::warn!(error = %e, "readiness: database down");
        down.push("database");
    }
    if let Err(e) = &store {
        tracing::warn!(error = %e, "readiness: session store down");
        down.push("session store");
    }
    Err(AppError::unavailable(
        &down.join(" and "),
        anyhow::anyhow!("readiness check failed"),
    ))
}
