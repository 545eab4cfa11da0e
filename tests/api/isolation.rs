//! Tenant isolation: users, tokens, listings and introspection stay in their tenant.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    USER_PASSWORD, assert_problem, assert_unauthorized, json, slug, spawn_app, str_of,
};

#[tokio::test]
async fn the_same_email_in_two_tenants_is_two_users() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, b) = (slug("a"), slug("b"));
    app.create_tenant(&admin, &a, json!({})).await;
    app.create_tenant(&admin, &b, json!({})).await;
    let ua = app.create_user(&admin, &a, "same@example.com").await;
    let ub = app.create_user(&admin, &b, "Same@Example.com").await;
    assert_ne!(ua, ub);
    let ta = app.login(&a, "same@example.com", USER_PASSWORD).await;
    let tb = app.login(&b, "same@example.com", USER_PASSWORD).await;
    let info = json(
        app.get(
            &format!("/tenants/{a}/oauth/userinfo"),
            str_of(&ta, "access_token"),
        )
        .await,
    )
    .await;
    assert_eq!(info["sub"], ua.as_str());
    let info = json(
        app.get(
            &format!("/tenants/{b}/oauth/userinfo"),
            str_of(&tb, "access_token"),
        )
        .await,
    )
    .await;
    assert_eq!(info["sub"], ub.as_str());
    // A duplicate within one tenant (any case) is a conflict.
    let res = app
        .post_json(
            &format!("/admin/tenants/{a}/users"),
            &admin,
            &json!({"email": "SAME@example.com", "password": USER_PASSWORD}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_token_of_tenant_a_is_wrong_audience_on_b_resources_and_forbidden_on_b_admin() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, a_user, _) = app.tenant_with_user(&admin, json!({})).await;
    let (b, _, _) = app.tenant_with_user(&admin, json!({})).await;
    // Make A's user an admin of A: still nothing in B.
    let slug_a = a.clone();
    app.state
        .db
        .run(move |c| latchkey::store::db::policies::assign_role(c, &slug_a, &a_user, "admin"))
        .await
        .expect("assign");
    app.state.authz.reload(&a).await.expect("reload");
    let ta = app
        .login(&a, &format!("user@{a}.test"), USER_PASSWORD)
        .await;
    let token = str_of(&ta, "access_token");

    let res = app.get(&format!("/admin/tenants/{a}/users"), token).await;
    assert_eq!(res.status(), StatusCode::OK, "an admin of A manages A");

    let res = app
        .get(&format!("/tenants/{b}/oauth/userinfo"), token)
        .await;
    let www = assert_unauthorized(res, "token_wrong_audience").await;
    assert!(www.starts_with(&format!("Bearer realm=\"{b}\", error=\"invalid_token\"")));
    for path in [
        format!("/admin/tenants/{b}"),
        format!("/admin/tenants/{b}/users"),
        format!("/admin/tenants/{b}/clients"),
    ] {
        let res = app.get(&path, token).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Platform admins' system tokens are foreign on a tenant's resource endpoints.
    let res = app
        .get(&format!("/tenants/{b}/oauth/userinfo"), &admin)
        .await;
    assert_unauthorized(res, "token_wrong_audience").await;
}

#[tokio::test]
async fn listings_never_show_another_tenants_rows() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, a_user, _) = app.tenant_with_user(&admin, json!({})).await;
    let (b, b_user, _) = app.tenant_with_user(&admin, json!({})).await;
    let list = json(app.get(&format!("/admin/tenants/{a}/users"), &admin).await).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| str_of(u, "id"))
        .collect();
    assert_eq!(ids, vec![a_user.as_str()]);
    let list = json(app.get(&format!("/admin/tenants/{b}/users"), &admin).await).await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| str_of(u, "id"))
        .collect();
    assert_eq!(ids, vec![b_user.as_str()]);
    // A user id of A is unknown under B.
    let res = app
        .get(&format!("/admin/tenants/{b}/users/{a_user}"), &admin)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn introspection_of_another_tenants_token_is_inactive() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let (b, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let (ca, sa) = app
        .create_confidential_client(&admin, &a, &["client_credentials"])
        .await;
    let (cb, sb) = app
        .create_confidential_client(&admin, &b, &["client_credentials"])
        .await;
    // A client may introspect the access tokens meant for it: make each
    // confidential client an audience of admin-cli's tokens.
    for (t, c) in [(&a, &ca), (&b, &cb)] {
        let res = app
            .patch_json(
                &format!("/admin/tenants/{t}/clients/admin-cli"),
                &admin,
                &json!({"audience": [c]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let ta = app
        .login(&a, &format!("user@{a}.test"), crate::helpers::USER_PASSWORD)
        .await;
    {
        let token = str_of(&ta, "access_token");
        let res = app
            .http
            .post(app.url(&format!("/tenants/{b}/oauth/introspect")))
            .basic_auth(&cb, Some(&sb))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(json(res).await, json!({"active": false}));
        let res = app
            .http
            .post(app.url(&format!("/tenants/{a}/oauth/introspect")))
            .basic_auth(&ca, Some(&sa))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        assert_eq!(json(res).await["active"], true);
    }
}
