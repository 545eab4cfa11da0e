//! Admin sessions, signing keys and the audit log.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    TestApp, USER_PASSWORD, assert_problem, assert_unauthorized, json, spawn_app, spawn_app_with,
    str_of,
};

#[tokio::test]
async fn admins_list_and_revoke_a_users_sessions() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, first) = app.tenant_with_user(&admin, json!({})).await;
    let second = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let third = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let path = format!("/admin/tenants/{t}/users/{user}/sessions");
    let list = json(app.get(&path, &admin).await).await;
    let ids: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| str_of(s, "id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let first_sid = TestApp::claims_of(str_of(&first, "access_token"))
        .sid
        .expect("sid");
    let res = app
        .post_json(
            &format!("{path}/revoke"),
            &admin,
            &json!({"session_ids": [first_sid, "not-a-session"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await, json!({"revoked": 1}));
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&first, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&second, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = app
        .post_json(&format!("{path}/revoke"), &admin, &json!({}))
        .await;
    assert_eq!(json(res).await, json!({"revoked": 2}));
    for tokens in [&second, &third] {
        let res = app
            .get(
                &format!("/tenants/{t}/oauth/userinfo"),
                str_of(tokens, "access_token"),
            )
            .await;
        assert_unauthorized(res, "session_revoked").await;
    }
    let res = app
        .get(&format!("/admin/tenants/{t}/users/nobody/sessions"), &admin)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_old_tokens_keep_verifying() {
    let app = spawn_app_with(|c| c.key_activation_delay_seconds = 2).await;
    let admin = app.admin_token().await;
    let (t, _, before) = app.tenant_with_user(&admin, json!({})).await;
    let old_kid = jsonwebtoken::decode_header(str_of(&before, "access_token"))
        .expect("h")
        .kid
        .expect("kid");

    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/keys/rotate"),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let new_key = json(res).await;
    assert_eq!(new_key["status"], "pending");
    let new_kid = str_of(&new_key, "kid").to_owned();

    // A client that fetched the JWKS now already knows the key that will sign.
    let jwks = json(
        app.http
            .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
            .send()
            .await
            .expect("jwks"),
    )
    .await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| str_of(k, "kid"))
        .collect();
    assert!(
        kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()),
        "{kids:?}"
    );
    let during = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let kid = jsonwebtoken::decode_header(str_of(&during, "access_token"))
        .expect("h")
        .kid;
    assert_eq!(
        kid.as_deref(),
        Some(old_kid.as_str()),
        "the new key waits for caches"
    );

    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let after = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let kid = jsonwebtoken::decode_header(str_of(&after, "access_token"))
        .expect("h")
        .kid;
    assert_eq!(kid.as_deref(), Some(new_kid.as_str()));
    for tokens in [&before, &during, &after] {
        let res = app
            .get(
                &format!("/tenants/{t}/oauth/userinfo"),
                str_of(tokens, "access_token"),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let keys = json(app.get(&format!("/admin/tenants/{t}/keys"), &admin).await).await;
    let statuses: Vec<(&str, &str)> = keys["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|k| (str_of(k, "kid"), str_of(k, "status")))
        .collect();
    assert!(
        statuses.contains(&(new_kid.as_str(), "active")),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&(old_kid.as_str(), "retired")),
        "{statuses:?}"
    );
    assert!(
        keys["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|k| k.get("private_key").is_none())
    );
}

#[tokio::test]
async fn keys_due_for_rotation_are_rotated_once() {
    let app = spawn_app_with(|c| c.key_rotation_days = 1).await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    assert_eq!(
        latchkey::service::keys::rotate_due(&app.state)
            .await
            .expect("rotate"),
        0
    );
    // Age the tenant's key past the interval.
    let slug = t.clone();
    app.state
        .db
        .run(move |c| {
            use diesel::prelude::*;
            use latchkey::store::db::schema::signing_keys;
            let old = latchkey::store::db::now() - chrono::Duration::days(2);
            diesel::update(signing_keys::table.filter(signing_keys::tenant.eq(slug)))
                .set(signing_keys::created_at.eq(old))
                .execute(c)?;
            Ok(())
        })
        .await
        .expect("age");
    assert!(
        latchkey::service::keys::rotate_due(&app.state)
            .await
            .expect("rotate")
            >= 1
    );
    assert_eq!(
        latchkey::service::keys::rotate_due(&app.state)
            .await
            .expect("rotate"),
        0
    );
    let keys = json(app.get(&format!("/admin/tenants/{t}/keys"), &admin).await).await;
    assert_eq!(keys["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn the_audit_log_is_newest_first_filtered_paginated_and_secret_free() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, _) = app.tenant_with_user(&admin, json!({})).await;
    let _ = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &format!("user@{t}.test")),
                ("password", "wrong password entirely"),
            ],
        )
        .await;
    let res = app
        .send_json(
            Method::PATCH,
            &format!("/admin/tenants/{t}/users/{user}"),
            &admin,
            &json!({"password": "seven orange kites over quiet harbors"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let path = format!("/admin/tenants/{t}/audit");
    let all = json(app.get(&path, &admin).await).await;
    let items = all["items"].as_array().expect("items");
    let actions: Vec<&str> = items.iter().map(|e| str_of(e, "action")).collect();
    assert_eq!(
        actions.first(),
        Some(&"user.update"),
        "newest first: {actions:?}"
    );
    assert!(
        actions.contains(&"login") && actions.contains(&"user.create"),
        "{actions:?}"
    );
    let text = all.to_string();
    assert!(
        !text.contains("seven orange")
            && !text.contains("wrong password")
            && !text.contains(crate::helpers::USER_PASSWORD)
    );
    let event = &items[0];
    for field in [
        "id",
        "at",
        "action",
        "outcome",
        "actor",
        "target",
        "ip",
        "user_agent",
        "request_id",
    ] {
        assert!(event.get(field).is_some(), "{field} in {event}");
    }

    let failures = json(app.get(&format!("{path}?action=login"), &admin).await).await;
    let outcomes: Vec<&str> = failures["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| str_of(e, "outcome"))
        .collect();
    assert_eq!(outcomes, vec!["failure", "success"]);
    let admin_id = TestApp::claims_of(&admin).sub;
    let by_admin = json(app.get(&format!("{path}?actor={admin_id}"), &admin).await).await;
    assert!(
        by_admin["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["actor"] == admin_id.as_str())
    );
    let page = json(app.get(&format!("{path}?limit=1"), &admin).await).await;
    let next = json(
        app.get(
            &format!("{path}?limit=1&cursor={}", str_of(&page, "next_cursor")),
            &admin,
        )
        .await,
    )
    .await;
    assert_ne!(page["items"][0]["id"], next["items"][0]["id"]);
    let future = json(
        app.get(&format!("{path}?from=2999-01-01T00:00:00Z"), &admin)
            .await,
    )
    .await;
    assert_eq!(future["items"], json!([]));
    let res = app.get(&format!("{path}?from=yesterday"), &admin).await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
}
