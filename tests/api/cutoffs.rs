//! Cut-offs that nothing undoes or misses: ending all of a user's sessions
//! whatever the index says, and clients or tenants that come back without
//! bringing their earlier tokens back (issue cases, on both backend pairs).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, USER_PASSWORD, assert_unauthorized, json, spawn_app_with, str_of};

/// A confidential client with a chosen id: (client_id, secret).
async fn client_with_id(app: &TestApp, admin: &str, t: &str, id: &str) -> (String, String) {
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            admin,
            &json!({
                "client_id": id,
                "name": "backend",
                "type": "confidential",
                "grant_types": ["client_credentials", "password", "refresh_token"],
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body = json(res).await;
    (id.to_owned(), str_of(&body, "client_secret").to_owned())
}

async fn grant(
    app: &TestApp,
    t: &str,
    client: &(String, String),
    form: &[(&str, &str)],
) -> reqwest::Response {
    let mut all: Vec<(&str, &str)> = vec![("client_id", &client.0), ("client_secret", &client.1)];
    all.extend_from_slice(form);
    app.token(t, &all).await
}

/// Client tokens, a user's tokens, all through `client`.
async fn tokens_through(app: &TestApp, t: &str, client: &(String, String)) -> (String, Value) {
    let res = grant(app, t, client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let cc = str_of(&json(res).await, "access_token").to_owned();
    let email = format!("user@{t}.test");
    let res = grant(
        app,
        t,
        client,
        &[
            ("grant_type", "password"),
            ("username", &email),
            ("password", USER_PASSWORD),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    (cc, json(res).await)
}

/// The three ways an old token could come back: a client token on
/// `/authz/check`, a user's access token on userinfo, a refresh.
async fn assert_all_dead(
    app: &TestApp,
    t: &str,
    client: &(String, String),
    cc: &str,
    user: &Value,
    user_id: &str,
) {
    let res = app
        .post_json(
            &format!("/tenants/{t}/authz/check"),
            cc,
            &json!({"subject": user_id, "resource": "users", "action": "read"}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "client token on authz/check"
    );
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(user, "access_token"),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "user token on userinfo"
    );
    let res = grant(
        app,
        t,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(user, "refresh_token")),
        ],
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "refresh");
    assert_eq!(json(res).await["error"], "invalid_grant");
}

#[tokio::test]
async fn a_short_lived_session_does_not_hide_older_ones_from_ending_all() {
    let app = spawn_app_with(|c| c.clock_leeway_seconds = 1).await;
    let admin = app.admin_token().await;
    let (t, id, session_a) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            &admin,
            &json!({"settings": {
                "access_token_ttl_seconds": 1,
                "refresh_token_ttl_seconds": 1,
                "refresh_idle_timeout_seconds": 1,
            }}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    // Session B has ended by itself; session A lives on.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let res = app
        .get(&format!("/admin/tenants/{t}/users/{id}/sessions"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let listed = json(res).await;
    let count = listed
        .as_array()
        .or_else(|| listed["items"].as_array())
        .map_or(0, Vec::len);
    assert_eq!(count, 1, "the older session is listed: {listed}");
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/users/{id}/sessions/revoke"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(json(res).await, json!({"revoked": 1}));
    let res = app
        .refresh_grant(&t, str_of(&session_a, "refresh_token"))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
}

#[tokio::test]
async fn a_client_created_again_with_the_same_id_does_not_revive_old_tokens() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    let (t, user_id, _) = app.tenant_with_user(&admin, json!({})).await;
    let client = client_with_id(&app, &admin, &t, "reports").await;
    let (cc, user) = tokens_through(&app, &t, &client).await;
    let res = app
        .send_json(
            reqwest::Method::DELETE,
            &format!("/admin/tenants/{t}/clients/reports"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let again = client_with_id(&app, &admin, &t, "reports").await;
    assert_all_dead(&app, &t, &again, &cc, &user, &user_id).await;
    // The new client's own tokens work.
    let (cc, user) = tokens_through(&app, &t, &again).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&user, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_json(
            &format!("/tenants/{t}/authz/check"),
            &cc,
            &json!({"subject": user_id, "resource": "users", "action": "read"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_enabled_again_does_not_revive_tokens_cut_off_by_disabling_it() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    let (t, user_id, _) = app.tenant_with_user(&admin, json!({})).await;
    let client = client_with_id(&app, &admin, &t, "worker").await;
    let (cc, user) = tokens_through(&app, &t, &client).await;
    let path = format!("/admin/tenants/{t}/clients/worker");
    let res = app
        .patch_json(&path, &admin, &json!({"enabled": false}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&user, "access_token"),
        )
        .await;
    assert_unauthorized(res, "account_disabled").await;
    // Repeating the same PATCH is harmless (and repairs a half-done one).
    let res = app
        .patch_json(&path, &admin, &json!({"enabled": false}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .patch_json(&path, &admin, &json!({"enabled": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_all_dead(&app, &t, &client, &cc, &user, &user_id).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&user, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    let (_, fresh) = tokens_through(&app, &t, &client).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&fresh, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_tenant_reactivated_does_not_revive_tokens_cut_off_by_suspending_it() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    let (t, user_id, admin_cli_tokens) = app.tenant_with_user(&admin, json!({})).await;
    let client = client_with_id(&app, &admin, &t, "portal").await;
    let (cc, user) = tokens_through(&app, &t, &client).await;
    let path = format!("/admin/tenants/{t}");
    let res = app
        .patch_json(&path, &admin, &json!({"status": "suspended"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&user, "access_token"),
        )
        .await;
    assert_unauthorized(res, "account_disabled").await;
    let res = app
        .patch_json(&path, &admin, &json!({"status": "active"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_all_dead(&app, &t, &client, &cc, &user, &user_id).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&admin_cli_tokens, "access_token"),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "admin-cli tokens too"
    );
    let (_, fresh) = tokens_through(&app, &t, &client).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&fresh, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoked_access_tokens_stay_revoked_after_the_store_loses_its_data() {
    let app = spawn_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    let (t, _, user) = app.tenant_with_user(&admin, json!({})).await;
    let client = client_with_id(&app, &admin, &t, "ingest").await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let res = grant(&app, &t, &client, &[("grant_type", "client_credentials")]).await;
        tokens.push(str_of(&json(res).await, "access_token").to_owned());
    }
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/revoke")))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[("token", tokens[0].as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), StatusCode::OK);
    let check = |token: String| {
        let app = &app;
        let t = t.clone();
        async move {
            app.post_json(
                &format!("/tenants/{t}/authz/check"),
                &token,
                &json!({"subject": "nobody", "resource": "r", "action": "a"}),
            )
            .await
            .status()
        }
    };
    assert_eq!(check(tokens[0].clone()).await, StatusCode::UNAUTHORIZED);
    // The store loses every key of the tenant (restart without persistence,
    // failover to a replica that never saw them, a flush).
    app.state.sessions.purge_tenant(&t).await.expect("purge");
    assert_eq!(
        check(tokens[0].clone()).await,
        StatusCode::UNAUTHORIZED,
        "still revoked"
    );
    assert_eq!(
        check(tokens[1].clone()).await,
        StatusCode::OK,
        "others still work"
    );
    // A user's tokens die with their session record: nothing fails open.
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&user, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
}

/// Asks `app`'s policy decision point whether `user` may read documents.
async fn may_read(app: &TestApp, t: &str, token: &str, user: &str) -> bool {
    let res = app
        .post_json(
            &format!("/tenants/{t}/authz/check"),
            token,
            &json!({"subject": user, "resource": "documents", "action": "read"}),
        )
        .await;
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["allowed"] == true
}

#[tokio::test]
async fn a_role_removal_reaches_an_instance_that_misses_every_bus_message_within_a_second() {
    let a = spawn_app_with(|_| {}).await;
    // Instance B shares the database but not the bus: with Redis its key
    // prefix (and so its channel) differs, in process it has a store of its
    // own. Only the change log can tell it.
    let b = spawn_app_with(|c| {
        c.database_url = a.config.database_url.clone();
        c.master_key = a.config.master_key.clone();
        c.data_dir = a.config.data_dir.clone();
        // Instances behind one load balancer share the public URL.
        c.public_url = Some(a.base.clone());
    })
    .await;
    let admin = a.admin_token().await;
    let (t, user, _) = a.tenant_with_user(&admin, json!({})).await;
    let res = a
        .post_json(
            &format!("/admin/tenants/{t}/roles"),
            &admin,
            &json!({"name": "reader", "description": "Reads",
                    "permissions": [{"resource": "documents", "action": "read"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let roles = format!("/admin/tenants/{t}/users/{user}/roles");
    let res = a
        .send_json(
            reqwest::Method::PUT,
            &roles,
            &admin,
            &json!({"roles": ["reader"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let client = client_with_id(&a, &admin, &t, "pdp").await;
    let res = grant(&a, &t, &client, &[("grant_type", "client_credentials")]).await;
    let pdp = str_of(&json(res).await, "access_token").to_owned();
    // B learns the assignment (at the latest from the log) and caches it.
    let started = std::time::Instant::now();
    while !may_read(&b, &t, &pdp, &user).await {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "B never learned the role"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let res = a
        .send_json(reqwest::Method::PUT, &roles, &admin, &json!({"roles": []}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let removed = std::time::Instant::now();
    while may_read(&b, &t, &pdp, &user).await {
        assert!(
            removed.elapsed() < std::time::Duration::from_secs(1),
            "B still allows one second after the removal"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
