//! The whole journey of SPEC §4 on the configured backends.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{USER_PASSWORD, assert_unauthorized, json, spawn_app, str_of};

#[tokio::test]
async fn bootstrap_admin_creates_a_tenant_whose_user_signs_in_refreshes_and_logs_out() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let t = crate::helpers::slug("acme");
    app.create_tenant(&admin, &t, json!({})).await;
    let email = format!("alice@{t}.test");
    let user_id = app.create_user(&admin, &t, &email).await;

    let tokens = app.login(&t, &email, USER_PASSWORD).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    let access = str_of(&tokens, "access_token").to_owned();
    let refresh = str_of(&tokens, "refresh_token").to_owned();

    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), &access)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let info = json(res).await;
    assert_eq!(info["sub"], user_id.as_str());
    assert_eq!(info["email"], email.as_str());

    let res = app.refresh_grant(&t, &refresh).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let rotated = json(res).await;
    let new_access = str_of(&rotated, "access_token").to_owned();
    let new_refresh = str_of(&rotated, "refresh_token").to_owned();
    assert_ne!(new_refresh, refresh, "every use rotates the refresh token");

    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/logout")))
        .bearer_auth(&new_access)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for token in [&access, &new_access] {
        let res = app
            .get(&format!("/tenants/{t}/oauth/userinfo"), token)
            .await;
        let www = assert_unauthorized(res, "session_revoked").await;
        assert!(www.starts_with(&format!("Bearer realm=\"{t}\", error=\"invalid_token\"")));
    }
    let res = app.refresh_grant(&t, &new_refresh).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body = json(res).await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["code"], "invalid_grant");
}

#[tokio::test]
async fn access_token_carries_the_claims_and_header_of_rfc_9068() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user_id, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let access = str_of(&tokens, "access_token");
    let header = jsonwebtoken::decode_header(access).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(header.kid.is_some());
    let claims = crate::helpers::TestApp::claims_of(access);
    assert_eq!(claims.iss, format!("{}/tenants/{t}", app.base));
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.azp, "admin-cli");
    assert_eq!(claims.tid, t);
    assert!(claims.sid.is_some());
    assert_eq!(claims.exp - claims.iat, 900);
    assert!(claims.scope.split(' ').any(|s| s == "openid"));
    assert!(claims.roles.is_empty());
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, first) = app.tenant_with_user(&admin, json!({})).await;
    let second = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let res = app
        .post_json(
            &format!("/tenants/{t}/logout"),
            str_of(&second, "access_token"),
            &json!({"all": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&first, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
}

#[tokio::test]
async fn me_sessions_lists_the_callers_sessions_and_ends_one() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, first) = app.tenant_with_user(&admin, json!({})).await;
    let second = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let token = str_of(&second, "access_token");
    let list = json(app.get(&format!("/tenants/{t}/me/sessions"), token).await).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(items.iter().all(|s| s["client_id"] == "admin-cli"));
    let other = items
        .iter()
        .find(|s| s["current"] == false)
        .map(|s| str_of(s, "id").to_owned())
        .expect("other session");
    let res = app
        .http
        .delete(app.url(&format!("/tenants/{t}/me/sessions/{other}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&first, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    let res = app
        .http
        .delete(app.url(&format!("/tenants/{t}/me/sessions/{other}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete");
    crate::helpers::assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn signup_creates_a_user_only_when_the_tenant_allows_it() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let closed = crate::helpers::slug("closed");
    app.create_tenant(&admin, &closed, json!({})).await;
    let res = app
        .http
        .post(app.url(&format!("/tenants/{closed}/signup")))
        .json(&json!({"email": "x@example.com", "password": USER_PASSWORD}))
        .send()
        .await
        .expect("signup");
    crate::helpers::assert_problem(res, StatusCode::FORBIDDEN, "signup_disabled").await;

    let open = crate::helpers::slug("open");
    app.create_tenant(&admin, &open, json!({"self_signup": true}))
        .await;
    let res = app
        .http
        .post(app.url(&format!("/tenants/{open}/signup")))
        .json(&json!({"email": "x@example.com", "password": USER_PASSWORD}))
        .send()
        .await
        .expect("signup");
    assert_eq!(res.status(), StatusCode::CREATED);
    let user = json(res).await;
    assert_eq!(user["email"], "x@example.com");
    assert!(user.get("password_hash").is_none());
    app.login(&open, "X@Example.com", USER_PASSWORD).await;

    let res = app
        .http
        .post(app.url(&format!("/tenants/{open}/signup")))
        .json(&json!({"email": "y@example.com", "password": "password1234"}))
        .send()
        .await
        .expect("signup");
    crate::helpers::assert_problem(res, StatusCode::BAD_REQUEST, "weak_password").await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert_eq!(body["database"], "up");
    assert_eq!(body["session_store"], "up");
}

#[tokio::test]
async fn discovery_names_the_tenant_endpoints() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/tenants/system/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery");
    assert_eq!(res.status(), StatusCode::OK);
    let d = json(res).await;
    let issuer = format!("{}/tenants/system", app.base);
    assert_eq!(d["issuer"], issuer.as_str());
    assert_eq!(
        d["token_endpoint"],
        format!("{issuer}/oauth/token").as_str()
    );
    assert_eq!(
        d["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json").as_str()
    );
    assert_eq!(
        d["revocation_endpoint"],
        format!("{issuer}/oauth/revoke").as_str()
    );
    assert_eq!(
        d["introspection_endpoint"],
        format!("{issuer}/oauth/introspect").as_str()
    );
    assert_eq!(
        d["userinfo_endpoint"],
        format!("{issuer}/oauth/userinfo").as_str()
    );
    let res = app
        .http
        .get(app.url("/tenants/nosuch/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery");
    crate::helpers::assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_admin_answers_are_not_cached() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    for res in [
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("healthz"),
        app.http
            .get(app.url("/no/such/path"))
            .send()
            .await
            .expect("404"),
        app.get("/admin/tenants", &admin).await,
        app.get("/tenants/system/oauth/userinfo", "bad").await,
    ] {
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "referrer-policy"), "no-referrer");
        assert_eq!(
            header(&res, "content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(header(&res, "x-frame-options"), "DENY");
    }
    // The API reference page: its own assets only, nothing inline.
    for path in ["/docs/", "/docs/swagger-ui-bundle.js"] {
        let res = app.http.get(app.url(path)).send().await.expect("docs");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let csp = header(&res, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
    }
    let page = app
        .http
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs")
        .text()
        .await
        .expect("html");
    assert!(
        !page.contains("<script>") && !page.contains("<style") && !page.contains(" style="),
        "inline script or style would be blocked by the CSP"
    );
    let res = app.get("/admin/tenants", &admin).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control"), "no-store");
}
