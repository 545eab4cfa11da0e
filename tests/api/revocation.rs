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
        .refresh_grant(&t, str_of(&tokens, "refresh_token"))
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
    // A resource server for the tokens admin-cli gets (their audience).
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"name": "api", "type": "confidential",
                    "grant_types": ["client_credentials"], "audience": ["admin-cli"]}),
        )
        .await;
    let body = json(res).await;
    let (cid, secret) = (
        str_of(&body, "client_id").to_owned(),
        str_of(&body, "client_secret").to_owned(),
    );
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

/// Introspects `token` as the confidential client `(id, secret)`.
async fn introspect_as(
    app: &crate::helpers::TestApp,
    t: &str,
    client: &(String, String),
    token: &str,
    hint: Option<&str>,
) -> serde_json::Value {
    let mut form = vec![("token", token)];
    if let Some(hint) = hint {
        form.push(("token_type_hint", hint));
    }
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/introspect")))
        .basic_auth(&client.0, Some(&client.1))
        .form(&form)
        .send()
        .await
        .expect("introspect");
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

#[tokio::test]
async fn a_client_learns_only_about_tokens_meant_for_it() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let mut clients = Vec::new();
    for (name, audience) in [
        ("web", json!([])),
        ("api", json!(["https://api.example"])),
        ("spy", json!([])),
    ] {
        let res = app
            .post_json(
                &format!("/admin/tenants/{t}/clients"),
                &admin,
                &json!({"client_id": name, "name": name, "type": "confidential",
                        "grant_types": ["client_credentials", "password", "refresh_token"],
                        "audience": audience}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body = json(res).await;
        clients.push((name.to_owned(), str_of(&body, "client_secret").to_owned()));
    }
    let (web, api, spy) = (&clients[0], &clients[1], &clients[2]);
    // A user signs in through "web" (tokens for web) and through "api"
    // (tokens whose audience is https://api.example).
    let sign_in = |client: &(String, String)| {
        let (app, t, client) = (&app, t.clone(), client.clone());
        async move {
            let email = format!("user@{t}.test");
            let res = app
                .token(
                    &t,
                    &[
                        ("grant_type", "password"),
                        ("client_id", &client.0),
                        ("client_secret", &client.1),
                        ("username", &email),
                        ("password", USER_PASSWORD),
                    ],
                )
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            json(res).await
        }
    };
    let via_web = sign_in(web).await;
    let via_api = sign_in(api).await;
    let web_access = str_of(&via_web, "access_token");
    let web_refresh = str_of(&via_web, "refresh_token");
    let api_access = str_of(&via_api, "access_token");
    // Its own refresh token and the access tokens it is the audience or
    // authorized party of: active.
    assert_eq!(
        introspect_as(&app, &t, web, web_refresh, None).await["active"],
        true
    );
    assert_eq!(
        introspect_as(&app, &t, web, web_access, None).await["active"],
        true
    );
    assert_eq!(
        introspect_as(&app, &t, api, api_access, None).await["active"],
        true
    );
    // Another client's refresh token, or an access token not meant for the
    // caller: exactly what an unknown token gets.
    let inactive = json!({"active": false});
    for hint in [None, Some("refresh_token"), Some("access_token")] {
        assert_eq!(
            introspect_as(&app, &t, spy, web_refresh, hint).await,
            inactive
        );
        assert_eq!(
            introspect_as(&app, &t, spy, web_access, hint).await,
            inactive
        );
        assert_eq!(
            introspect_as(&app, &t, api, web_refresh, hint).await,
            inactive
        );
        assert_eq!(
            introspect_as(&app, &t, web, api_access, hint).await,
            inactive
        );
    }
    // The hint only orders the lookups: a wrong hint still finds the token.
    assert_eq!(
        introspect_as(&app, &t, web, web_refresh, Some("access_token")).await["active"],
        true
    );
    assert_eq!(
        introspect_as(&app, &t, web, web_access, Some("refresh_token")).await["active"],
        true
    );
}
