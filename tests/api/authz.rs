//! Roles per tenant, assignments, the policy decision point, and the 403
//! contract on every admin route.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, USER_PASSWORD, assert_problem, assert_unauthorized, json, spawn_app, str_of,
};

/// A client_credentials token of the tenant, for the PDP.
async fn app_token(app: &TestApp, admin: &str, t: &str) -> String {
    let (cid, secret) = app
        .create_confidential_client(admin, t, &["client_credentials"])
        .await;
    let res = app
        .token(
            t,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &cid),
                ("client_secret", &secret),
            ],
        )
        .await;
    str_of(&json(res).await, "access_token").to_owned()
}

async fn check(app: &TestApp, t: &str, token: &str, body: Value, explain: bool) -> Value {
    let q = if explain { "?explain=true" } else { "" };
    let res = app
        .post_json(&format!("/tenants/{t}/authz/check{q}"), token, &body)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

#[tokio::test]
async fn a_custom_role_allows_once_assigned_and_denies_once_removed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, _) = app.tenant_with_user(&admin, json!({})).await;
    let pdp = app_token(&app, &admin, &t).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/roles"),
            &admin,
            &json!({"name": "editor", "description": "Edits documents",
                    "permissions": [{"resource": "documents", "action": "edit"},
                                    {"resource": "reports", "action": "*"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let role = json(res).await;
    assert_eq!(role["builtin"], false);
    assert_eq!(role["permissions"].as_array().map(Vec::len), Some(2));

    let ask = json!({"subject": user, "resource": "documents", "action": "edit"});
    let before = check(&app, &t, &pdp, ask.clone(), false).await;
    assert_eq!(
        before,
        json!({"allowed": false, "roles": [], "matched": null})
    );

    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{t}/users/{user}/roles"),
            &admin,
            &json!({"roles": ["editor"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await, json!({"roles": ["editor"]}));
    let allowed = check(&app, &t, &pdp, ask.clone(), false).await;
    assert_eq!(
        allowed,
        json!({"allowed": true, "roles": ["editor"],
               "matched": {"role": "editor", "resource": "documents", "action": "edit"}})
    );
    let wildcard = check(
        &app,
        &t,
        &pdp,
        json!({"subject": user, "resource": "reports", "action": "export"}),
        false,
    )
    .await;
    assert_eq!(
        wildcard["matched"],
        json!({"role": "editor", "resource": "reports", "action": "*"})
    );

    let explained = check(
        &app,
        &t,
        &pdp,
        json!({"subject": user, "resource": "documents", "action": "delete"}),
        true,
    )
    .await;
    assert_eq!(explained["allowed"], false);
    assert_eq!(explained["explanation"][0]["role"], "editor");
    assert_eq!(explained["explanation"][0]["allowed"], false);
    assert!(
        str_of(&explained["explanation"][0], "reason").contains("delete"),
        "{explained}"
    );

    // New tokens carry the role; the change revoked nothing by itself.
    let fresh = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    assert_eq!(
        TestApp::claims_of(str_of(&fresh, "access_token")).roles,
        vec!["editor".to_owned()]
    );

    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{t}/users/{user}/roles"),
            &admin,
            &json!({"roles": []}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let after = check(&app, &t, &pdp, ask, true).await;
    assert_eq!(after["allowed"], false);
    assert_eq!(after["matched"], Value::Null);
    assert_eq!(after["explanation"], json!([]));
}

#[tokio::test]
async fn roles_are_validated_unique_and_builtins_are_protected() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, _) = app.tenant_with_user(&admin, json!({})).await;
    let roles = format!("/admin/tenants/{t}/roles");
    let list = json(app.get(&roles, &admin).await).await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| str_of(r, "name"))
        .collect();
    assert_eq!(names, vec!["admin", "viewer"]);
    assert_eq!(list["items"][0]["builtin"], true);

    for bad in [
        json!({"name": "Bad Name", "permissions": []}),
        json!({"name": "ok", "permissions": [{"resource": "Docs", "action": "read"}]}),
        json!({"name": "ok", "permissions": [{"resource": "*", "action": "read"}]}),
        json!({"name": "ok", "permissions": [{"resource": "docs", "action": "re ad"}]}),
        json!({"name": "ok", "permissions": [{"resource": "docs"}]}),
    ] {
        let res = app.post_json(&roles, &admin, &bad).await;
        assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    }
    let res = app
        .post_json(&roles, &admin, &json!({"name": "ops", "permissions": []}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .post_json(&roles, &admin, &json!({"name": "ops", "permissions": []}))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .post_json(&roles, &admin, &json!({"name": "admin", "permissions": []}))
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;

    let res = app
        .send_json(Method::PUT, &format!("{roles}/ops"), &admin,
            &json!({"description": "Operations", "permissions": [{"resource": "servers", "action": "restart"}]}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["description"], "Operations");
    let res = app
        .send_json(
            Method::PUT,
            &format!("{roles}/viewer"),
            &admin,
            &json!({"permissions": []}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = app
        .http
        .delete(app.url(&format!("{roles}/admin")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
    let res = app.get(&format!("{roles}/nope"), &admin).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Unknown roles cannot be assigned; deleting a role removes its assignments.
    let assign = format!("/admin/tenants/{t}/users/{user}/roles");
    let res = app
        .send_json(
            Method::PUT,
            &assign,
            &admin,
            &json!({"roles": ["ops", "ghost"]}),
        )
        .await;
    let body = assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    assert!(str_of(&body, "detail").contains("roles[1]"), "{body}");
    let res = app
        .send_json(Method::PUT, &assign, &admin, &json!({"roles": ["ops"]}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .http
        .delete(app.url(&format!("{roles}/ops")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        json(app.get(&assign, &admin).await).await,
        json!({"roles": []})
    );
}

#[tokio::test]
async fn a_role_of_one_tenant_is_not_a_role_of_another() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (a, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let (b, b_user, _) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{a}/roles"),
            &admin,
            &json!({"name": "auditor", "permissions": [{"resource": "ledger", "action": "read"}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{b}/users/{b_user}/roles"),
            &admin,
            &json!({"roles": ["auditor"]}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
    let res = app
        .post_json(&format!("/admin/tenants/{b}/roles"), &admin,
            &json!({"name": "auditor", "permissions": [{"resource": "invoices", "action": "read"}]}))
        .await;
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "the same name in B is another role"
    );
    let in_a = json(
        app.get(&format!("/admin/tenants/{a}/roles/auditor"), &admin)
            .await,
    )
    .await;
    assert_eq!(
        in_a["permissions"],
        json!([{"resource": "ledger", "action": "read"}])
    );
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{b}/users/{b_user}/roles"),
            &admin,
            &json!({"roles": ["auditor"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let pdp = app_token(&app, &admin, &b).await;
    let d = check(
        &app,
        &b,
        &pdp,
        json!({"subject": b_user, "resource": "ledger", "action": "read"}),
        false,
    )
    .await;
    assert_eq!(d["allowed"], false);
    let d = check(
        &app,
        &b,
        &pdp,
        json!({"subject": b_user, "resource": "invoices", "action": "read"}),
        false,
    )
    .await;
    assert_eq!(d["allowed"], true);
}

#[tokio::test]
async fn the_pdp_takes_app_tokens_and_users_holding_authz_read_only() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let ask = json!({"subject": user, "resource": "x", "action": "y"});
    let path = format!("/tenants/{t}/authz/check");
    let res = app
        .post_json(&path, str_of(&tokens, "access_token"), &ask)
        .await;
    let body = assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert!(str_of(&body, "detail").contains("authz:read"));
    let res = app
        .http
        .post(app.url(&path))
        .json(&ask)
        .send()
        .await
        .expect("request");
    assert_unauthorized(res, "token_missing").await;
    let res = app.post_json(&path, &admin, &ask).await;
    assert_unauthorized(res, "token_wrong_audience").await;

    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{t}/users/{user}/roles"),
            &admin,
            &json!({"roles": ["viewer"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let viewer = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;
    let res = app
        .post_json(&path, str_of(&viewer, "access_token"), &ask)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_json(
            &path,
            str_of(&viewer, "access_token"),
            &json!({"subject": user}),
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "validation_failed").await;
}

/// Fills a route template with ids that exist in tenant `t`.
fn concrete(path: &str, t: &str, user: &str) -> String {
    path.replace("{t}", t)
        .replace("{user_id}", user)
        .replace("{client_id}", "admin-cli")
        .replace("{role}", "viewer")
}

#[tokio::test]
async fn every_admin_route_answers_401_anonymous_and_403_without_a_role() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, user, _) = app.tenant_with_user(&admin, json!({})).await;
    let (other, other_user, _) = app.tenant_with_user(&admin, json!({})).await;
    // An admin of `t` has no business in `other` either.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/{t}/users/{user}/roles"),
            &admin,
            &json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let tenant_admin = app
        .login(&t, &format!("user@{t}.test"), USER_PASSWORD)
        .await;

    let spec = serde_json::to_value(latchkey::api::openapi()).expect("spec");
    let mut routes: Vec<(Method, String)> = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        if !path.starts_with("/admin") {
            continue;
        }
        for method in item.as_object().expect("item").keys() {
            if let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) {
                routes.push((m, path.clone()));
            }
        }
    }
    assert!(
        routes.len() >= 27,
        "every admin route is registered: {}",
        routes.len()
    );
    let no_roles_user = app
        .login(&other, &format!("user@{other}.test"), USER_PASSWORD)
        .await;
    for (method, path) in &routes {
        let in_t = concrete(path, &other, &other_user);
        let anonymous = app
            .http
            .request(method.clone(), app.url(&in_t))
            .json(&json!({}))
            .send()
            .await
            .expect("request");
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path} anonymous"
        );
        assert_eq!(json(anonymous).await["code"], "token_missing");

        for (who, token) in [
            (
                "a user without roles",
                str_of(&no_roles_user, "access_token"),
            ),
            (
                "an admin of another tenant",
                str_of(&tenant_admin, "access_token"),
            ),
        ] {
            let res = app
                .send_json(method.clone(), &in_t, token, &json!({}))
                .await;
            let status = res.status();
            let body = json(res).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} for {who}: {body}"
            );
            assert_eq!(body["code"], "forbidden");
        }
    }
}

#[tokio::test]
async fn only_a_platform_admin_may_act_on_platform_admin_powers() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let root_id = crate::helpers::TestApp::claims_of(&root).sub;
    // A system tenant `admin`: every admin permission in `system`.
    let email = format!(
        "ops-{}@platform.test",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ops_id = app.create_user(&root, "system", &email).await;
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/system/users/{ops_id}/roles"),
            &root,
            &json!({"roles": ["admin"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ops = str_of(
        &app.login("system", &email, USER_PASSWORD).await,
        "access_token",
    )
    .to_owned();

    // Granting itself platform-admin.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/system/users/{ops_id}/roles"),
            &ops,
            &json!({"roles": ["admin", "platform-admin"]}),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    // Taking over or locking out a platform admin.
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/admin/tenants/system/users/{root_id}"),
            json!({"password": "a takeover passphrase 123"}),
        ),
        (
            Method::PATCH,
            format!("/admin/tenants/system/users/{root_id}"),
            json!({"status": "disabled"}),
        ),
        (
            Method::DELETE,
            format!("/admin/tenants/system/users/{root_id}"),
            json!({}),
        ),
        (
            Method::PUT,
            format!("/admin/tenants/system/users/{root_id}/roles"),
            json!({"roles": []}),
        ),
        (
            Method::POST,
            format!("/admin/tenants/system/users/{root_id}/sessions/revoke"),
            json!({}),
        ),
        (
            Method::PUT,
            "/admin/tenants/system/roles/platform-admin".to_owned(),
            json!({"name": "platform-admin", "description": "mine", "permissions": [{"resource": "*", "action": "*"}]}),
        ),
    ] {
        let res = app.send_json(method.clone(), &path, &ops, &body).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // Still what it was: the platform admin signs in and works.
    let root = app.admin_token().await;
    assert_eq!(
        app.get("/admin/tenants", &root).await.status(),
        StatusCode::OK
    );
    // It may still manage ordinary system users, and a platform admin may grant.
    let res = app
        .send_json(
            Method::PUT,
            &format!("/admin/tenants/system/users/{ops_id}/roles"),
            &root,
            &json!({"roles": ["admin", "platform-admin"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
