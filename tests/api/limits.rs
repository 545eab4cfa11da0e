//! SPEC §7 rate limits: per client IP, two groups, 429 with `Retry-After`.

use reqwest::{Response, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, json, spawn_app_with};

/// An app with the shipped defaults for the auth group (10/s, burst 30).
async fn app_with_default_auth_limits(adjust: impl FnOnce(&mut latchkey::Config)) -> TestApp {
    spawn_app_with(|c| {
        let defaults = latchkey::Config::default();
        c.rate_limit_auth_per_second = defaults.rate_limit_auth_per_second;
        c.rate_limit_auth_burst = defaults.rate_limit_auth_burst;
        adjust(c);
    })
    .await
}

async fn bad_client_token_request(app: &TestApp, forwarded_for: Option<&str>) -> Response {
    let mut req = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
        ]);
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("request")
}

/// Counts answers that were not 429 in `n` back-to-back requests.
async fn admitted(
    app: &TestApp,
    n: usize,
    forwarded_for: impl Fn(usize) -> Option<String>,
) -> usize {
    let mut ok = 0;
    for i in 0..n {
        let res = bad_client_token_request(app, forwarded_for(i).as_deref()).await;
        if res.status() != StatusCode::TOO_MANY_REQUESTS {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn token_endpoint_answers_429_rate_limited_with_retry_after_after_the_burst() {
    let app = app_with_default_auth_limits(|_| {}).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..45 {
        let res = bad_client_token_request(&app, None).await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            limited = Some(res);
        }
    }
    let admitted = statuses.iter().filter(|s| **s != 429).count();
    // 30 from the burst, plus what 10/s refills while the loop runs.
    assert!(
        (30..=36).contains(&admitted),
        "admitted {admitted}: {statuses:?}"
    );
    assert!(statuses[..30].iter().all(|s| *s == 401), "{statuses:?}");
    let res = limited.expect("a 429");
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let body = json(res).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert!(body["error_description"].is_string());
}

#[tokio::test]
async fn the_auth_limit_refills_at_its_configured_rate() {
    let app = app_with_default_auth_limits(|c| {
        c.rate_limit_auth_per_second = 5;
        c.rate_limit_auth_burst = 5;
    })
    .await;
    let first = admitted(&app, 8, |_| None).await;
    assert!((5..=6).contains(&first), "admitted {first} of 8");
    // 5/s: one request is admitted again every 200 ms.
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let again = admitted(&app, 4, |_| None).await;
    assert!((2..=3).contains(&again), "admitted {again} after 450 ms");
}

#[tokio::test]
async fn signup_and_password_change_share_the_auth_limit_and_answer_problem_json() {
    let app = app_with_default_auth_limits(|c| c.rate_limit_auth_burst = 3).await;
    for _ in 0..3 {
        let res = app
            .http
            .post(app.url("/tenants/system/signup"))
            .json(&json!({"email": "a@b.test", "password": "x"}))
            .send()
            .await
            .expect("request");
        assert_ne!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let res = app
        .http
        .post(app.url("/tenants/system/me/password"))
        .json(&json!({"current_password": "a", "new_password": "b"}))
        .send()
        .await
        .expect("request");
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(body["type"], "https://latchkey.dev/problems/rate_limited");
    // Routes outside the auth group are not spent by it.
    let res = app
        .http
        .get(app.url("/tenants/system/.well-known/jwks.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_and_resource_routes_have_their_own_limit_and_health_checks_none() {
    let app = spawn_app_with(|c| {
        c.rate_limit_api_per_second = 1;
        c.rate_limit_api_burst = 4;
    })
    .await;
    for _ in 0..30 {
        for path in ["/healthz", "/readyz", "/metrics"] {
            let res = app.http.get(app.url(path)).send().await.expect("request");
            assert_eq!(res.status(), StatusCode::OK, "{path}");
        }
    }
    let mut statuses = Vec::new();
    for path in [
        "/admin/tenants",
        "/tenants/system/oauth/userinfo",
        "/tenants/system/.well-known/jwks.json",
        "/admin/tenants/system/users",
        "/tenants/system/.well-known/openid-configuration",
        "/admin/tenants",
    ] {
        let res = app.http.get(app.url(path)).send().await.expect("request");
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers().contains_key("retry-after"));
            assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        }
    }
    assert_eq!(statuses, [401, 401, 200, 401, 429, 429]);
    // The token endpoint is in the other group: still answered.
    let res = bad_client_token_request(&app, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_does_not_buy_a_fresh_limit() {
    let app = app_with_default_auth_limits(|c| c.rate_limit_auth_burst = 5).await;
    let n = admitted(&app, 12, |i| Some(format!("198.51.100.{i}"))).await;
    assert!(
        (5..=6).contains(&n),
        "admitted {n}: spoofed X-Forwarded-For must not split the bucket"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let app = app_with_default_auth_limits(|c| {
        c.rate_limit_auth_burst = 5;
        c.trusted_proxies = "127.0.0.1/32, ::1".to_owned();
    })
    .await;
    // Twelve different clients, two requests each: nobody is over the limit.
    let n = admitted(&app, 24, |i| Some(format!("6.6.6.6, 198.51.100.{}", i / 2))).await;
    assert_eq!(n, 24);
    // One client behind the proxy is limited like a direct one.
    let n = admitted(&app, 12, |_| Some("203.0.113.50".to_owned())).await;
    assert!((5..=6).contains(&n), "admitted {n}");
}
