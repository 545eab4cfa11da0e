//! Several latchkey processes sharing PostgreSQL and Redis agree: a policy
//! change through one is enforced by the other within a second, a session
//! revoked through one is refused by the other at once, and a key rotated
//! through one is honoured by the other on its next request, whatever each
//! process has cached.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_LOGIN, USER_PASSWORD, assert_unauthorized, json, process_env, slug, start, str_of,
    test_config,
};

async fn token(http: &reqwest::Client, base: &str, t: &str, form: &[(&str, &str)]) -> Value {
    let res = http
        .post(format!("{base}/tenants/{t}/oauth/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

async fn call(
    http: &reqwest::Client,
    method: Method,
    url: String,
    bearer: &str,
    body: &Value,
) -> reqwest::Response {
    http.request(method, url)
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .expect("request")
}

/// GET userinfo of tenant `t` at `base` with `bearer`.
async fn userinfo(http: &reqwest::Client, base: &str, t: &str, bearer: &str) -> reqwest::Response {
    http.get(format!("{base}/tenants/{t}/oauth/userinfo"))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("userinfo")
}

/// Two latchkey processes sharing PostgreSQL and Redis, a platform admin's
/// token, and a tenant (created through the first) with one user.
struct Shared {
    one: crate::helpers::Instance,
    two: crate::helpers::Instance,
    http: reqwest::Client,
    admin: String,
    t: String,
    user: String,
    _cleanup: crate::helpers::Cleanup,
    _dir: tempfile::TempDir,
}

async fn two_processes_with_a_user(prefix: &str, email: &str) -> Shared {
    crate::helpers::required_env("LATCHKEY_TEST_DATABASE_URL");
    crate::helpers::required_env("LATCHKEY_TEST_REDIS_URL");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    let cleanup = crate::helpers::Cleanup::of(&config);
    let env = process_env(&config, dir.path());
    let (one, two) = tokio::join!(start(&env), start(&env));
    let http = reqwest::Client::new();
    let admin = token(&http, &one.base, "system", &ADMIN_LOGIN).await;
    let admin = str_of(&admin, "access_token").to_owned();
    let t = slug(prefix);
    let res = call(
        &http,
        Method::POST,
        format!("{}/admin/tenants", one.base),
        &admin,
        &json!({"slug": t, "name": prefix}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = call(
        &http,
        Method::POST,
        format!("{}/admin/tenants/{t}/users", one.base),
        &admin,
        &json!({"email": email, "password": USER_PASSWORD}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let user = str_of(&json(res).await, "id").to_owned();
    Shared {
        one,
        two,
        http,
        admin,
        t,
        user,
        _cleanup: cleanup,
        _dir: dir,
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL, LATCHKEY_TEST_REDIS_URL"]
async fn two_processes_sharing_postgres_and_redis_agree_within_a_second() {
    let shared = two_processes_with_a_user("multi", "u@multi.test").await;
    let Shared {
        one,
        two,
        http,
        admin,
        t,
        user,
        ..
    } = &shared;
    let res = call(
        http,
        Method::POST,
        format!("{}/admin/tenants/{t}/roles", one.base),
        admin,
        &json!({"name": "pilot", "permissions": [{"resource": "planes", "action": "fly"}]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = call(
        http,
        Method::POST,
        format!("{}/admin/tenants/{t}/clients", one.base),
        admin,
        &json!({"name": "app", "type": "confidential", "grant_types": ["client_credentials"]}),
    )
    .await;
    let client = json(res).await;
    let app = token(
        http,
        &two.base,
        t,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", str_of(&client, "client_id")),
            ("client_secret", str_of(&client, "client_secret")),
        ],
    )
    .await;
    let app = str_of(&app, "access_token").to_owned();

    // Instance two loads the tenant's policy: denied.
    let ask = json!({"subject": user, "resource": "planes", "action": "fly"});
    let check_url = format!("{}/tenants/{t}/authz/check", two.base);
    let decision = json(call(http, Method::POST, check_url.clone(), &app, &ask).await).await;
    assert_eq!(decision["allowed"], false);

    // The assignment goes through instance one; instance two enforces it within a second.
    let res = call(
        http,
        Method::PUT,
        format!("{}/admin/tenants/{t}/users/{user}/roles", one.base),
        admin,
        &json!({"roles": ["pilot"]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let changed = Instant::now();
    loop {
        let decision = json(call(http, Method::POST, check_url.clone(), &app, &ask).await).await;
        if decision["allowed"] == true {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "instance two still denies after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let propagation = changed.elapsed();
    eprintln!("policy change seen by the other instance after {propagation:?}");

    // A session revoked through instance one is refused by instance two at once.
    let tokens = token(
        http,
        &two.base,
        t,
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "u@multi.test"),
            ("password", USER_PASSWORD),
        ],
    )
    .await;
    let access = str_of(&tokens, "access_token");
    let res = http
        .get(format!("{}/tenants/{t}/oauth/userinfo", two.base))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(res.status(), StatusCode::OK);
    let res = call(
        http,
        Method::POST,
        format!(
            "{}/admin/tenants/{t}/users/{user}/sessions/revoke",
            one.base
        ),
        admin,
        &json!({}),
    )
    .await;
    assert_eq!(json(res).await, json!({"revoked": 1}));
    let res = http
        .get(format!("{}/tenants/{t}/oauth/userinfo", two.base))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    assert_unauthorized(res, "session_revoked").await;

    // Failed sign-ins are counted across instances: two here and two there
    // lock an account whose tenant locks after four.
    let res = call(
        http,
        Method::PATCH,
        format!("{}/admin/tenants/{t}", one.base),
        admin,
        &json!({"settings": {"lockout_threshold": 4}}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let attempt = |base: String, password: &'static str| {
        let http = http.clone();
        let t = t.clone();
        async move {
            http.post(format!("{base}/tenants/{t}/oauth/token"))
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", "admin-cli"),
                    ("username", "u@multi.test"),
                    ("password", password),
                ])
                .send()
                .await
                .expect("token")
                .status()
        }
    };
    for base in [&one.base, &two.base, &one.base, &two.base] {
        assert_eq!(
            attempt(base.clone(), "definitely wrong").await,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        attempt(one.base.clone(), USER_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "locked across instances"
    );
    let res = call(
        http,
        Method::GET,
        format!("{}/admin/tenants/{t}/users/{user}", one.base),
        admin,
        &json!(null),
    )
    .await;
    let view = json(res).await;
    assert_eq!(view["locked"], true, "{view}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL, LATCHKEY_TEST_REDIS_URL"]
async fn a_user_changed_through_one_process_is_seen_by_the_other_within_a_second() {
    let shared = two_processes_with_a_user("users", "before@users.test").await;
    let Shared {
        one,
        two,
        http,
        admin,
        t,
        user,
        ..
    } = &shared;
    let login = [
        ("grant_type", "password"),
        ("client_id", "admin-cli"),
        ("username", "before@users.test"),
        ("password", USER_PASSWORD),
    ];
    let access = token(http, &two.base, t, &login).await;
    let access = str_of(&access, "access_token").to_owned();
    let email = |v: Value| v["email"].as_str().unwrap_or_default().to_owned();
    // Instance two holds the user in its view now.
    let res = userinfo(http, &two.base, t, &access).await;
    assert_eq!(email(json(res).await), "before@users.test");

    // A new e-mail through instance one: instance two answers it within a second.
    let res = call(
        http,
        Method::PATCH,
        format!("{}/admin/tenants/{t}/users/{user}", one.base),
        admin,
        &json!({"email": "after@users.test"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let started = Instant::now();
    loop {
        let res = userinfo(http, &two.base, t, &access).await;
        if email(json(res).await) == "after@users.test" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance two still answers the old e-mail after a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Deleted through instance one: instance two refuses its token at once.
    let res = call(
        http,
        Method::DELETE,
        format!("{}/admin/tenants/{t}/users/{user}", one.base),
        admin,
        &json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = userinfo(http, &two.base, t, &access).await;
    assert_unauthorized(res, "session_revoked").await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL, LATCHKEY_TEST_REDIS_URL"]
async fn a_client_disabled_through_one_process_is_refused_by_the_other_with_its_view_warm() {
    let shared = two_processes_with_a_user("clients", "u@clients.test").await;
    let Shared {
        one,
        two,
        http,
        admin,
        t,
        ..
    } = &shared;
    let access = token(
        http,
        &two.base,
        t,
        &[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", "u@clients.test"),
            ("password", USER_PASSWORD),
        ],
    )
    .await;
    let access = str_of(&access, "access_token").to_owned();
    // Instance two's view holds the tenant, the client and the user now.
    let res = userinfo(http, &two.base, t, &access).await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = call(
        http,
        Method::PATCH,
        format!("{}/admin/tenants/{t}/clients/admin-cli", one.base),
        admin,
        &json!({"enabled": false}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let started = Instant::now();
    loop {
        let res = userinfo(http, &two.base, t, &access).await;
        if res.status() == StatusCode::UNAUTHORIZED {
            assert_unauthorized(res, "account_disabled").await;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance two still accepts a disabled client's token after a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `kid` in a JWS compact token's header.
fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("JWS header")
        .kid
        .expect("kid")
}

#[tokio::test]
#[ignore = "needs PostgreSQL and Redis: run with --include-ignored and LATCHKEY_TEST_DATABASE_URL, LATCHKEY_TEST_REDIS_URL"]
async fn a_key_rotated_through_one_process_is_honoured_by_the_other_on_its_next_request() {
    let shared = two_processes_with_a_user("keys", "u@keys.test").await;
    let Shared {
        one,
        two,
        http,
        admin,
        t,
        ..
    } = &shared;
    let login = [
        ("grant_type", "password"),
        ("client_id", "admin-cli"),
        ("scope", "openid"),
        ("username", "u@keys.test"),
        ("password", USER_PASSWORD),
    ];
    let status = |token: String| async move {
        let res = userinfo(http, &two.base, t, &token).await;
        let status = res.status();
        (status, res.text().await.unwrap_or_default())
    };
    let before = token(http, &two.base, t, &login).await;
    let before = str_of(&before, "access_token").to_owned();
    // Instance two's view holds the tenant's keys as they are now.
    {
        let (code, body) = status(before.clone()).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }

    let res = call(
        http,
        Method::POST,
        format!("{}/admin/tenants/{t}/keys/rotate", one.base),
        admin,
        &json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // Instance two signs with the new key within a second (the change bus).
    let started = Instant::now();
    let after = loop {
        let after = token(http, &two.base, t, &login).await;
        let after = str_of(&after, "access_token").to_owned();
        if kid_of(&after) != kid_of(&before) {
            break after;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "instance two still signs with the previous key after a second"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Its tokens of the new key and of the previous one (good until they
    // expire) verify, the first time each is shown.
    {
        let (code, body) = status(after.clone()).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    {
        let (code, body) = status(before).await;
        assert_eq!(code, StatusCode::OK, "{body}");
    }
    let jwks = http
        .get(format!("{}/tenants/{t}/.well-known/jwks.json", two.base))
        .send()
        .await
        .expect("jwks");
    assert_eq!(jwks.status(), StatusCode::OK);
    let jwks = json(jwks).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&kid_of(&after).as_str()),
        "instance two publishes the new key: {kids:?}"
    );
}
