//! Refresh-token rotation: grace window, concurrency, reuse detection, client binding.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_unauthorized, json, spawn_app, str_of};

async fn refresh(app: &TestApp, t: &str, client_id: &str, token: &str) -> (StatusCode, Value) {
    let res = app
        .token(
            t,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", client_id),
                ("refresh_token", token),
            ],
        )
        .await;
    let status = res.status();
    (status, json(res).await)
}

#[tokio::test]
async fn replay_within_the_grace_window_returns_the_same_successor_pair() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_grace_seconds": 30}))
        .await;
    let rt = str_of(&tokens, "refresh_token");
    let (s1, first) = refresh(&app, &t, "admin-cli", rt).await;
    let (s2, second) = refresh(&app, &t, "admin-cli", rt).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first, second, "the replay answers the identical pair");
    // The successor itself keeps working.
    let (s3, third) = refresh(&app, &t, "admin-cli", str_of(&first, "refresh_token")).await;
    assert_eq!(s3, StatusCode::OK);
    assert_ne!(third["refresh_token"], first["refresh_token"]);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_get_the_same_successor() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_grace_seconds": 30}))
        .await;
    let rt = str_of(&tokens, "refresh_token").to_owned();
    let attempts = (0..8).map(|_| refresh(&app, &t, "admin-cli", &rt));
    let answers = futures_util::future::join_all(attempts).await;
    let first = &answers[0];
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(
            body, &first.1,
            "every concurrent refresh answers the same pair"
        );
    }
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&first.1, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn replay_after_the_grace_window_revokes_the_family_and_is_audited() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user_id, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_grace_seconds": 1}))
        .await;
    let stolen = str_of(&tokens, "refresh_token").to_owned();
    let (status, successor) = refresh(&app, &t, "admin-cli", &stolen).await;
    assert_eq!(status, StatusCode::OK);
    // Let the 1-second grace window pass.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = refresh(&app, &t, "admin-cli", &stolen).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");

    // The legitimate holder's successor pair died with the family.
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&successor, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    let (status, body) = refresh(&app, &t, "admin-cli", str_of(&successor, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_grant");

    let slug = t.clone();
    let events = app
        .state
        .db
        .run(move |c| {
            let filter = latchkey::store::db::audit::AuditFilter {
                action: Some("refresh_token.reuse_detected".to_owned()),
                ..Default::default()
            };
            latchkey::store::db::audit::list(c, &slug, &filter, None, 10)
        })
        .await
        .expect("audit");
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].target.as_deref(), Some(user_id.as_str()));
}

#[tokio::test]
async fn an_older_token_is_reuse_even_inside_the_grace_window() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_grace_seconds": 60}))
        .await;
    let rt0 = str_of(&tokens, "refresh_token").to_owned();
    let (_, one) = refresh(&app, &t, "admin-cli", &rt0).await;
    let (status, two) = refresh(&app, &t, "admin-cli", str_of(&one, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    // rt0 is two generations old: its successor is no longer current.
    let (status, body) = refresh(&app, &t, "admin-cli", &rt0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_grant");
    let (status, _) = refresh(&app, &t, "admin-cli", str_of(&two, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the family is revoked");
}

#[tokio::test]
async fn a_refresh_token_of_one_client_is_invalid_grant_for_another() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "spa", "type": "public", "grant_types": ["password", "refresh_token"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let other = json(res).await;
    let (status, body) = refresh(
        &app,
        &t,
        str_of(&other, "client_id"),
        str_of(&tokens, "refresh_token"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_grant");
    // The rightful client can still use it.
    let (status, _) = refresh(&app, &t, "admin-cli", str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_access_token_is_not_a_refresh_token() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (status, body) = refresh(&app, "system", "admin-cli", &admin).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_grant");
}

#[tokio::test]
async fn a_refresh_token_unused_past_the_idle_timeout_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_idle_timeout_seconds": 1}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = refresh(&app, &t, "admin-cli", str_of(&tokens, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_grant");
}

#[tokio::test]
async fn refreshed_tokens_may_narrow_but_not_widen_the_scope() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let rt = str_of(&tokens, "refresh_token");
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", rt),
                ("scope", "openid offline_access"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["code"], "invalid_scope");
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", rt),
                ("scope", "openid"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["scope"], "openid");
}

#[tokio::test]
async fn a_narrower_refresh_scope_shapes_that_token_only_and_the_family_keeps_its_grant() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let email = format!("user@{t}.test");
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &email),
                ("password", crate::helpers::USER_PASSWORD),
                ("scope", "openid profile"),
            ],
        )
        .await;
    let first = json(res).await;
    assert_eq!(first["scope"], "openid profile");
    let step = |token: String, scope: Option<&'static str>| {
        let (app, t) = (&app, t.clone());
        async move {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", token.as_str()),
            ];
            if let Some(scope) = scope {
                form.push(("scope", scope));
            }
            let res = app.token(&t, &form).await;
            let status = res.status();
            (status, json(res).await)
        }
    };
    let (status, narrow) = step(str_of(&first, "refresh_token").to_owned(), Some("openid")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(narrow["scope"], "openid");
    let (status, again) = step(str_of(&narrow, "refresh_token").to_owned(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["scope"], "openid profile",
        "no scope: the family's grant"
    );
    let (status, wide) = step(
        str_of(&again, "refresh_token").to_owned(),
        Some("openid profile"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{wide}");
    assert_eq!(wide["scope"], "openid profile");
    let (status, beyond) = step(
        str_of(&wide, "refresh_token").to_owned(),
        Some("openid email"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "never more than granted: {beyond}"
    );
    assert_eq!(beyond["error"], "invalid_scope");
}

#[tokio::test]
async fn a_thousand_rotations_leave_the_store_holding_a_few_kilobytes() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app
        .tenant_with_user(&admin, json!({"refresh_grace_seconds": 1}))
        .await;
    let (_, before) = app
        .state
        .sessions
        .tenant_footprint(&t)
        .await
        .expect("footprint");
    let mut current = str_of(&tokens, "refresh_token").to_owned();
    let first = current.clone();
    for _ in 0..1000 {
        let (status, body) = refresh(&app, &t, "admin-cli", &current).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        current = str_of(&body, "refresh_token").to_owned();
    }
    // The grace data of the last rotation outlives the window by at most 2 s.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (keys, bytes) = app
        .state
        .sessions
        .tenant_footprint(&t)
        .await
        .expect("footprint");
    println!(
        "store for the tenant's one user: {before} bytes after sign-in, {bytes} bytes in {keys} keys after 1000 rotations"
    );
    assert!(bytes < 8 * 1024, "{bytes} bytes in {keys} keys");
    // The first token is still recognised, as reuse.
    let (status, _) = refresh(&app, &t, "admin-cli", &first).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refresh(&app, &t, "admin-cli", &current).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the family was revoked on reuse"
    );
}

/// Writes a refresh token the way the previous version stored them (one
/// record per token, a family holding only its current hash) for the
/// session of `tokens`; answers the token.
async fn earlier_version_token(app: &TestApp, t: &str, tokens: &Value) -> Option<String> {
    let url = app.config.redis_url.clone()?;
    let claims = TestApp::claims_of(str_of(tokens, "access_token"));
    let token = latchkey::authn::random_token();
    let hash = latchkey::authn::sha256_hex(&token);
    let family = uuid::Uuid::new_v4().to_string();
    let prefix = format!("{}:{{{t}}}:", app.config.redis_key_prefix);
    let now = chrono::Utc::now().timestamp();
    let fields = [
        ("family", family.clone()),
        ("sid", claims.sid.clone().expect("sid")),
        ("client", "admin-cli".to_owned()),
        ("user", claims.sub.clone()),
        ("exp", (now + 600).to_string()),
        ("fexp", (now + 3600).to_string()),
        ("scope", "openid".to_owned()),
        ("state", "current".to_owned()),
        // Clients of the previous version keep generation "" after the
        // migration; this tenant's admin-cli was created with one.
        (
            "cgen",
            app.state
                .client(t, "admin-cli")
                .await
                .expect("client")
                .expect("admin-cli")
                .generation
                .clone(),
        ),
    ];
    let mut pipe = redis::pipe();
    pipe.hset_multiple(format!("{prefix}rt:{hash}"), &fields)
        .expire(format!("{prefix}rt:{hash}"), 3600)
        .hset_multiple(
            format!("{prefix}fam:{family}"),
            &[("current", hash.as_str()), ("status", "active")],
        )
        .expire(format!("{prefix}fam:{family}"), 3600);
    // One node, or the cluster (the keys share the tenant's slot).
    use latchkey::store::session::Topology;
    match Topology::parse(&url).expect("redis url") {
        Topology::Single(url) => {
            let mut conn = redis::Client::open(url)
                .expect("redis url")
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let _: () = pipe.query_async(&mut conn).await.expect("write");
        }
        Topology::Cluster(nodes) => {
            let mut conn = redis::cluster::ClusterClient::new(nodes)
                .expect("cluster")
                .get_async_connection()
                .await
                .expect("redis cluster");
            let _: () = pipe.query_async(&mut conn).await.expect("write");
        }
    }
    Some(token)
}

#[tokio::test]
#[ignore = "needs Redis (an in-process store never holds tokens of an earlier version): run with --include-ignored and LATCHKEY_TEST_REDIS_URL"]
async fn refresh_tokens_of_the_previous_version_rotate_once_into_the_new_format() {
    crate::helpers::required_env("LATCHKEY_TEST_REDIS_URL");
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let old = earlier_version_token(&app, &t, &tokens)
        .await
        .expect("a Redis store");
    let (status, first) = refresh(&app, &t, "admin-cli", &old).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let successor = str_of(&first, "refresh_token").to_owned();
    assert_eq!(successor.len(), 64, "the successor names its family");
    // Within the grace window: the same pair.
    let (status, again) = refresh(&app, &t, "admin-cli", &old).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, first);
    let (status, next) = refresh(&app, &t, "admin-cli", &successor).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    // Two rotations later the old token is reuse: the family ends.
    let (status, _) = refresh(&app, &t, "admin-cli", &old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refresh(&app, &t, "admin-cli", str_of(&next, "refresh_token")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
