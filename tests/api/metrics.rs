//! `GET /metrics` exposes real values after traffic.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, str_of};

/// The value of the first sample whose line starts with `name{` and holds every label.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_tokens_refusals_and_hashing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .refresh_grant(&t, str_of(&tokens, "refresh_token"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let _ = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), "not-a-token")
        .await;
    let _ = app
        .get(
            &format!("/admin/tenants/{t}/users"),
            str_of(&tokens, "access_token"),
        )
        .await;

    let res = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = res.text().await.expect("text");
    let at_least_one = |name: &str, labels: &[&str]| {
        let v = sample(&text, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"));
        assert!(v >= 1.0, "{name} {labels:?} = {v}");
    };
    at_least_one(
        "latchkey_http_requests_total",
        &["route=\"/tenants/{t}/oauth/token\"", "status=\"200\""],
    );
    at_least_one(
        "latchkey_http_request_duration_seconds_count",
        &["route=\"/tenants/{t}/oauth/token\""],
    );
    assert!(
        text.contains("latchkey_http_request_duration_seconds_bucket{"),
        "histogram buckets"
    );
    at_least_one("latchkey_tokens_issued_total", &["grant=\"password\""]);
    at_least_one("latchkey_tokens_issued_total", &["grant=\"refresh_token\""]);
    at_least_one(
        "latchkey_auth_failures_total",
        &["status=\"401\"", "code=\"token_malformed\""],
    );
    at_least_one(
        "latchkey_auth_failures_total",
        &["status=\"403\"", "code=\"forbidden\""],
    );
    assert!(
        sample(&text, "latchkey_argon2_queue_depth", &[]).is_some(),
        "argon2 queue depth"
    );
    if app.config.redis_url.is_some() {
        at_least_one(
            "latchkey_store_round_trip_seconds_count",
            &["op=\"access_state\""],
        );
    }
}

#[tokio::test]
async fn unauthenticated_callers_cannot_grow_caches_or_metric_series() {
    let app = crate::helpers::spawn_app().await;
    let admin = app.admin_token().await;
    let metrics_size = |app: &crate::helpers::TestApp| {
        let url = app.url("/metrics");
        let http = app.http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text")
                .len()
        }
    };
    // Tokens whose unverified `iss` names tenants that do not exist.
    let mut claims = crate::helpers::TestApp::claims_of(&admin);
    let keys_before = app.state.keys.cached_tenants().await;
    let mut tasks = Vec::new();
    for i in 0..5000 {
        let fake = format!("ghost-{i}");
        claims.iss = format!("{}/tenants/{fake}", app.base);
        claims.tid = fake;
        let token = app.sign_as("system", &claims).await;
        let (http, url) = (app.http.clone(), app.url("/admin/tenants"));
        tasks.push(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
        });
        if tasks.len() == 200 {
            for status in futures_util::future::join_all(tasks.drain(..)).await {
                assert_eq!(status, StatusCode::UNAUTHORIZED);
            }
        }
    }
    assert_eq!(
        app.state.keys.cached_tenants().await,
        keys_before,
        "no key set cached for a tenant that does not exist"
    );
    // Methods of any name: after the first, nothing more.
    let warm = reqwest::Method::from_bytes(b"WARMUP").expect("method");
    let _ = app.http.request(warm, app.url("/healthz")).send().await;
    metrics_size(&app).await;
    let before = metrics_size(&app).await;
    for i in 0..500 {
        let method = reqwest::Method::from_bytes(format!("FOO{i}").as_bytes()).expect("method");
        let _ = app.http.request(method, app.url("/healthz")).send().await;
    }
    let after = metrics_size(&app).await;
    println!("/metrics: {before} bytes before 500 invented methods, {after} after");
    assert!(
        after < before + 4096,
        "/metrics grew from {before} to {after} bytes"
    );
}
