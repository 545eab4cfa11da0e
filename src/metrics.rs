//! Prometheus metrics: one recorder per process, rendered at `GET /metrics`.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from a store round trip to a slow login.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide recorder once; later calls reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".to_owned()), BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the histograms' raw samples into their buckets every
/// `UPKEEP_INTERVAL`. The recorder keeps every sample until then: without
/// this, each request would grow memory until the next scrape of `/metrics`,
/// and without bound where nobody scrapes.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread not started");
    }
}

fn describe() {
    metrics::describe_counter!(
        "latchkey_http_requests_total",
        "HTTP requests by route template and status"
    );
    metrics::describe_histogram!(
        "latchkey_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route template"
    );
    metrics::describe_counter!(
        "latchkey_tokens_issued_total",
        "Access tokens issued, by grant"
    );
    metrics::describe_counter!(
        "latchkey_refresh_reuse_detected_total",
        "Refresh tokens replayed outside the grace window (family revoked)"
    );
    metrics::describe_counter!(
        "latchkey_auth_failures_total",
        "401 and 403 answers, by status and code"
    );
    metrics::describe_counter!(
        "latchkey_rate_limited_total",
        "Requests refused with 429, by limit group (auth, api)"
    );
    metrics::describe_counter!(
        "latchkey_accounts_locked_total",
        "Accounts locked after repeated failed logins"
    );
    metrics::describe_counter!(
        "latchkey_revocations_unreplicated_total",
        "Revocations no Redis replica acknowledged in time (a failover could lose them)"
    );
    metrics::describe_gauge!(
        "latchkey_argon2_queue_depth",
        "Password hashes running or waiting"
    );
    metrics::describe_histogram!(
        "latchkey_store_round_trip_seconds",
        metrics::Unit::Seconds,
        "Session-store (Redis) round trips, by operation"
    );
}

/// Middleware: counts and times every request under its route template.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16().to_string();
    metrics::counter!("latchkey_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// A method as a label: the standard ones by name, anything else `other`,
/// so no caller can add series at will.
fn method_label(method: &actix_web::http::Method) -> String {
    use actix_web::http::Method;
    let known = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    if known.contains(method) {
        method.as_str().to_owned()
    } else {
        "other".to_owned()
    }
}

pub fn token_issued(grant: &'static str) {
    metrics::counter!("latchkey_tokens_issued_total", "grant" => grant).increment(1);
}

pub fn reuse_detected() {
    metrics::counter!("latchkey_refresh_reuse_detected_total").increment(1);
}

pub fn auth_failure(status: u16, code: &'static str) {
    metrics::counter!("latchkey_auth_failures_total", "status" => status.to_string(), "code" => code)
        .increment(1);
}

pub fn rate_limited(group: &'static str) {
    metrics::counter!("latchkey_rate_limited_total", "group" => group).increment(1);
}

pub fn account_locked() {
    metrics::counter!("latchkey_accounts_locked_total").increment(1);
}

/// A revocation no replica acknowledged within the wait (Redis `WAIT`).
pub fn revocation_unreplicated() {
    metrics::counter!("latchkey_revocations_unreplicated_total").increment(1);
}

pub fn argon2_queue_depth(depth: usize) {
    metrics::gauge!("latchkey_argon2_queue_depth").set(depth as f64);
}

pub fn store_round_trip(op: &'static str, started: Instant) {
    metrics::histogram!("latchkey_store_round_trip_seconds", "op" => op)
        .record(started.elapsed().as_secs_f64());
}
