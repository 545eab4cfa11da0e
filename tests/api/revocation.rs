//! Revocation that works on the next request: disable, suspend, password,
//! RFC 7009, and introspection of what was revoked.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{USER_PASSWORD, assert_problem, assert_unauthorized, json, spawn_app, str_of};

#[tokio::test]
async fn disabling_a_user_makes_their_access_tokens_401_account_disabled() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/users/{id}"),
            &admin,
            &json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["status"], "disabled");
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_unauthorized(res, "account_disabled").await;
    // No new sign-in, and the same answer as a wrong password.
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &format!("user@{t}.test")),
                ("password", USER_PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["code"], "invalid_grant");
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", str_of(&tokens, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(json(res).await["code"], "invalid_grant");
}

#[tokio::test]
async fn suspending_a_tenant_makes_its_tokens_401_account_disabled() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            &admin,
            &json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_unauthorized(res, "account_disabled").await;
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &format!("user@{t}.test")),
                ("password", USER_PASSWORD),
            ],
        )
        .await;
    assert_eq!(json(res).await["code"], "invalid_grant");
    // Reactivated: the old sessions stay ended, new sign-ins work.
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            &admin,
            &json!({"status": "active"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
}

#[tokio::test]
async fn changing_the_password_ends_every_other_session() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, other) = app.tenant_with_user(&admin, json!({})).await;
    let mine = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let new_password = "seven orange kites over quiet harbors";
    let res = app
        .post_json(
            &format!("/tenants/{t}/me/password"),
            str_of(&mine, "access_token"),
            &json!({"current_password": "wrong wrong wrong wrong", "new_password": new_password}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    let res = app
        .post_json(
            &format!("/tenants/{t}/me/password"),
            str_of(&mine, "access_token"),
            &json!({"current_password": USER_PASSWORD, "new_password": "password1234"}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "weak_password").await;
    let res = app
        .post_json(
            &format!("/tenants/{t}/me/password"),
            str_of(&mine, "access_token"),
            &json!({"current_password": USER_PASSWORD, "new_password": new_password}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&other, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&mine, "access_token"),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the caller's own session stays"
    );
    app.login(&t, &format!("user@{t}.test"), new_password).await;
}

#[tokio::test]
async fn an_admin_password_reset_ends_every_session() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, id, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/users/{id}"),
            &admin,
            &json!({"password": "seven orange kites over quiet harbors"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
}

#[tokio::test]
async fn rfc_7009_revocation_kills_refresh_families_and_access_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let revoke = |token: String| {
        let app = &app;
        let t = t.clone();
        async move {
            app.http
                .post(app.url(&format!("/tenants/{t}/oauth/revoke")))
                .form(&[("token", token.as_str()), ("client_id", "admin-cli")])
                .send()
                .await
                .expect("revoke")
        }
    };
    let res = revoke(str_of(&tokens, "refresh_token").to_owned()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;

    let second = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let res = revoke(str_of(&second, "access_token").to_owned()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&second, "access_token"),
        )
        .await;
    assert_unauthorized(res, "session_revoked").await;
    // Unknown tokens are answered 200 too (RFC 7009 §2.2).
    let res = revoke("not-a-token".to_owned()).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn introspection_needs_a_confidential_client_and_reports_revocation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user_id, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let (cid, secret) = app
        .create_confidential_client(&admin, &t, &["client_credentials"])
        .await;
    let access = str_of(&tokens, "access_token");
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/introspect")))
        .form(&[("token", access), ("client_id", "admin-cli")])
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["code"], "invalid_client");

    let introspect = |token: String| {
        let app = &app;
        let (t, cid, secret) = (t.clone(), cid.clone(), secret.clone());
        async move {
            json(
                app.http
                    .post(app.url(&format!("/tenants/{t}/oauth/introspect")))
                    .basic_auth(&cid, Some(&secret))
                    .form(&[("token", token.as_str())])
                    .send()
                    .await
                    .expect("introspect"),
            )
            .await
        }
    };
    let active = introspect(access.to_owned()).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], user_id.as_str());
    assert_eq!(active["client_id"], "admin-cli");
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/logout")))
        .bearer_auth(access)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        introspect(access.to_owned()).await,
        json!({"active": false})
    );
    assert_eq!(
        introspect(str_of(&tokens, "refresh_token").to_owned()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn client_credentials_tokens_work_until_the_client_is_disabled() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let (cid, secret) = app
        .create_confidential_client(&admin, &t, &["client_credentials"])
        .await;
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/token")))
        .basic_auth(&cid, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    assert!(body.get("refresh_token").is_none());
    let token = str_of(&body, "access_token").to_owned();
    let claims = crate::helpers::TestApp::claims_of(&token);
    assert_eq!(claims.sub, format!("client:{cid}"));
    assert!(claims.sid.is_none());

    let introspect = |token: String| {
        let app = &app;
        let (t, cid, secret) = (t.clone(), cid.clone(), secret.clone());
        async move {
            json(
                app.http
                    .post(app.url(&format!("/tenants/{t}/oauth/introspect")))
                    .form(&[
                        ("token", token.as_str()),
                        ("client_id", &cid),
                        ("client_secret", &secret),
                    ])
                    .send()
                    .await
                    .expect("introspect"),
            )
            .await
        }
    };
    assert_eq!(introspect(token.clone()).await["active"], true);
    let other = app
        .create_confidential_client(&admin, &t, &["client_credentials"])
        .await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/clients/{}", other.0),
            &admin,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/clients/{cid}"),
            &admin,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/token")))
        .basic_auth(&cid, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The token it already holds dies too.
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), &token)
        .await;
    assert_unauthorized(res, "account_disabled").await;
}

#[tokio::test]
async fn disabling_admin_cli_stops_sign_in_through_it() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}/clients/admin-cli"),
            &admin,
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &format!("user@{t}.test")),
                ("password", USER_PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["code"], "invalid_client");
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_unauthorized(res, "account_disabled").await;
}
