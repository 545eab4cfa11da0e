//! The admin API of this stage: tenants, users, clients.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{USER_PASSWORD, assert_problem, json, slug, spawn_app, str_of};

#[tokio::test]
async fn tenants_are_created_with_defaults_listed_patched_and_deleted() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("co");
    let created = app
        .create_tenant(
            &admin,
            &t,
            json!({"access_token_ttl_seconds": 60, "signing_alg": "EdDSA"}),
        )
        .await;
    assert_eq!(created["status"], "active");
    assert_eq!(created["settings"]["access_token_ttl_seconds"], 60);
    assert_eq!(created["settings"]["refresh_grace_seconds"], 10);
    assert_eq!(created["settings"]["signing_alg"], "EdDSA");
    assert_eq!(created["settings"]["password_min_length"], 12);

    let res = app
        .post_json(
            "/admin/tenants",
            &admin,
            &json!({"slug": t, "name": "again"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    for bad in [
        json!({"slug": "Bad_Slug", "name": "x"}),
        json!({"slug": "ok-slug", "name": "x", "color": "red"}),
        json!({"slug": "ok-slug", "name": "x", "settings": {"access_token_ttl_seconds": 0}}),
        json!({"slug": "ok-slug", "name": "x", "settings": {"nonsense": 1}}),
        json!({"slug": "ok-slug", "name": "x", "settings": {"signing_alg": "HS256"}}),
    ] {
        let res = app.post_json("/admin/tenants", &admin, &bad).await;
        assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    }
    let res = app
        .post_json(
            "/admin/tenants",
            &admin,
            &json!({"slug": "system", "name": "x"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;

    let page = json(app.get("/admin/tenants?limit=1", &admin).await).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let cursor = str_of(&page, "next_cursor");
    let next = json(
        app.get(&format!("/admin/tenants?limit=1&cursor={cursor}"), &admin)
            .await,
    )
    .await;
    assert_ne!(next["items"][0]["slug"], page["items"][0]["slug"]);

    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            &admin,
            &json!({"name": "Renamed", "settings": {"self_signup": true}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched = json(res).await;
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["settings"]["self_signup"], true);
    assert_eq!(
        patched["settings"]["access_token_ttl_seconds"], 60,
        "partial settings keep the rest"
    );

    let res = app
        .http
        .delete(app.url(&format!("/admin/tenants/{t}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get(&format!("/admin/tenants/{t}"), &admin).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_tenant_admin_may_rename_but_not_suspend_its_tenant() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, _) = app.tenant_with_user(&admin, json!({})).await;
    let slug_t = t.clone();
    app.state
        .db
        .run(move |c| latchkey::store::db::policies::assign_role(c, &slug_t, &id, "admin"))
        .await
        .expect("assign");
    app.state.authz.reload(&t).await.expect("reload");
    let tenant_admin = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let token = str_of(&tenant_admin, "access_token");
    assert_eq!(TestAppClaims::roles(token), vec!["admin".to_owned()]);
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            token,
            &json!({"name": "Mine"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            token,
            &json!({"status": "suspended"}),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app.get("/admin/tenants", token).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
}

struct TestAppClaims;
impl TestAppClaims {
    fn roles(token: &str) -> Vec<String> {
        crate::helpers::TestApp::claims_of(token).roles
    }
}

#[tokio::test]
async fn users_are_paginated_validated_and_deleted() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("u");
    app.create_tenant(&admin, &t, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create_user(&admin, &t, &format!("user{i}@example.com"))
                .await,
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/tenants/{t}/users?limit=2&cursor={c}"),
            None => format!("/admin/tenants/{t}/users?limit=2"),
        };
        let page = json(app.get(&path, &admin).await).await;
        for u in page["items"].as_array().expect("items") {
            assert!(u.get("password_hash").is_none());
            seen.push(str_of(u, "id").to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    let res = app
        .get(&format!("/admin/tenants/{t}/users?limit=500"), &admin)
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;

    for (body, code) in [
        (
            json!({"email": "not an email", "password": USER_PASSWORD}),
            "validation_failed",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "weak_password",
        ),
        (
            json!({"email": "a@example.com", "password": USER_PASSWORD, "role": "x"}),
            "validation_failed",
        ),
        (json!({"email": "a@example.com"}), "validation_failed"),
    ] {
        let res = app
            .post_json(&format!("/admin/tenants/{t}/users"), &admin, &body)
            .await;
        let problem = assert_problem(res, StatusCode::BAD_REQUEST, code).await;
        assert!(!str_of(&problem, "detail").is_empty());
    }
    let res = app
        .http
        .post(app.url(&format!("/admin/tenants/{t}/users")))
        .bearer_auth(&admin)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("request");
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let id = &ids[0];
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/users/{id}"),
            &admin,
            &json!({"email": "renamed@example.com"}),
        )
        .await;
    assert_eq!(json(res).await["email"], "renamed@example.com");
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/users/{id}"),
            &admin,
            &json!({"email": "user1@EXAMPLE.com"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .http
        .delete(app.url(&format!("/admin/tenants/{t}/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(&format!("/admin/tenants/{t}/users/{id}"), &admin)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_client_secret_is_shown_once_and_grants_are_enforced() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "api", "type": "confidential", "grant_types": ["client_credentials"],
                    "audience": ["https://api.example.com"], "client_id": "billing-api"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created = json(res).await;
    assert_eq!(created["client_id"], "billing-api");
    let secret = str_of(&created, "client_secret").to_owned();
    let fetched = json(
        app.get(&format!("/admin/tenants/{t}/clients/billing-api"), &admin)
            .await,
    )
    .await;
    assert!(fetched.get("client_secret").is_none());
    let list = json(
        app.get(&format!("/admin/tenants/{t}/clients"), &admin)
            .await,
    )
    .await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| str_of(c, "client_id"))
        .collect();
    assert_eq!(ids, vec!["admin-cli", "billing-api"]);

    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "dup", "type": "confidential", "grant_types": ["client_credentials"], "client_id": "billing-api"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "spa", "type": "public",
                    "grant_types": ["refresh_token", "password", "refresh_token", "password"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(
        json(res).await["grant_types"],
        json!(["refresh_token", "password"])
    );
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "bad", "type": "public", "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;

    // The audience is the client's configured list.
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "billing-api"),
                ("client_secret", &secret),
            ],
        )
        .await;
    let token = json(res).await;
    let claims = crate::helpers::TestApp::claims_of(str_of(&token, "access_token"));
    assert_eq!(
        serde_json::to_value(&claims.aud).expect("aud"),
        json!("https://api.example.com")
    );
    // A grant the client does not list is refused.
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "billing-api"),
                ("client_secret", &secret),
                ("username", &format!("user@{t}.test")),
                ("password", USER_PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["code"], "unauthorized_client");

    let res = app
        .http
        .delete(app.url(&format!("/admin/tenants/{t}/clients/billing-api")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "billing-api"),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cursor_this_list_did_not_issue_is_400_naming_cursor() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("cur");
    app.create_tenant(&admin, &t, json!({})).await;
    for i in 0..3 {
        app.create_user(&admin, &t, &format!("u{i}@{t}.test")).await;
    }
    let res = app
        .get(&format!("/admin/tenants/{t}/users?limit=1"), &admin)
        .await;
    let page = json(res).await;
    let users_cursor = str_of(&page, "next_cursor").to_owned();
    let res = app
        .get(
            &format!("/admin/tenants/{t}/users?limit=1&cursor={users_cursor}"),
            &admin,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    for path in [
        format!("/admin/tenants/{t}/users?cursor=!!not-a-cursor!!"),
        format!("/admin/tenants/{t}/users?cursor=bm90LWEtY3Vyc29y"),
        format!("/admin/tenants/{t}/clients?cursor={users_cursor}"),
        format!("/admin/tenants/{t}/roles?cursor={users_cursor}"),
        format!("/admin/tenants/{t}/audit?cursor={users_cursor}"),
        format!("/admin/tenants?cursor={users_cursor}"),
    ] {
        let res = app.get(&path, &admin).await;
        let body = assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
        assert!(body.to_string().contains("cursor"), "{path}: {body}");
    }
}

#[tokio::test]
async fn an_email_and_password_match_however_their_accents_are_composed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("nfc");
    app.create_tenant(&admin, &t, json!({})).await;
    let (email_nfc, email_nfd) = (format!("zo\u{eb}@{t}.test"), format!("zoe\u{308}@{t}.test"));
    let password_nfc = "cr\u{e8}me br\u{fb}l\u{e9}e apr\u{e8}s d\u{ee}ner";
    let password_nfd = "cre\u{300}me bru\u{302}le\u{301}e apre\u{300}s di\u{302}ner";
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/users"),
            &admin,
            &json!({"email": email_nfc, "password": password_nfc}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    for (email, password) in [
        (&email_nfd, password_nfd),
        (&email_nfc, password_nfd),
        (&email_nfd, password_nfc),
    ] {
        let res = app.password_grant(&t, email, password).await;
        assert_eq!(res.status(), StatusCode::OK, "{email:?} {password:?}");
    }
    // The same address typed the other way is the same user.
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/users"),
            &admin,
            &json!({"email": email_nfd, "password": password_nfc}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn without_a_bootstrap_password_only_embedded_mode_generates_one() {
    let app = crate::helpers::spawn_app_with(|c| c.bootstrap_admin_password = None).await;
    let users = app
        .state
        .db
        .run(latchkey::store::db::users::count)
        .await
        .expect("count");
    let embedded = app.config.database_url.starts_with("sqlite://");
    // Embedded: the admin exists with a generated password (printed once).
    // PostgreSQL: nothing is generated or printed; the log says how to
    // create the first admin.
    assert_eq!(
        users,
        i64::from(embedded),
        "database {}",
        app.config.database_url
    );
}

#[tokio::test]
async fn a_tenant_created_after_a_404_is_found_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("late");
    let discovery = format!("/tenants/{t}/.well-known/openid-configuration");
    let res = app
        .http
        .get(app.url(&discovery))
        .send()
        .await
        .expect("discovery");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.create_tenant(&admin, &t, json!({})).await;
    let res = app
        .http
        .get(app.url(&discovery))
        .send()
        .await
        .expect("discovery");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn native_app_and_loopback_redirect_uris_are_registrable_and_unsafe_ones_are_not() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = slug("redir");
    app.create_tenant(&admin, &t, json!({})).await;
    let create = |uris: serde_json::Value| {
        let (app, admin, t) = (&app, admin.clone(), t.clone());
        async move {
            app.post_json(
                &format!("/admin/tenants/{t}/clients"),
                &admin,
                &json!({"name": "app", "type": "public",
                        "grant_types": ["refresh_token"], "redirect_uris": uris}),
            )
            .await
        }
    };
    let res = create(json!([
        "com.example.app:/callback",
        "http://127.0.0.1/callback",
        "http://[::1]:8080/callback",
        "https://app.example.com/cb"
    ]))
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    for bad in [
        "javascript:alert(1)",
        "myapp:/callback",
        "https://app.example.com/cb#fragment",
        "data:text/html,x",
    ] {
        let res = create(json!([bad])).await;
        let body = assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
        assert!(body.to_string().contains("redirect_uris"), "{bad}: {body}");
    }
}
