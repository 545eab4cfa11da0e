//! Every row of SPEC §5 this stage touches: status, `code`, WWW-Authenticate.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    TestApp, USER_PASSWORD, assert_problem, assert_unauthorized, json, spawn_app, str_of,
};

async fn userinfo_with_header(app: &TestApp, t: &str, value: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/tenants/{t}/oauth/userinfo")))
        .header("Authorization", value)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn missing_token_is_401_token_missing_with_a_bare_challenge() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/tenants/system/oauth/userinfo"))
        .send()
        .await
        .expect("request");
    let www = assert_unauthorized(res, "token_missing").await;
    assert_eq!(www, "Bearer realm=\"system\"");
}

#[tokio::test]
async fn other_scheme_empty_or_malformed_token_is_401_token_malformed() {
    let app = spawn_app().await;
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer ",
        "Bearer a.b",
        "Bearer %%%.%%%.%%%",
    ] {
        let res = userinfo_with_header(&app, "system", value).await;
        let www = assert_unauthorized(res, "token_malformed").await;
        assert!(
            www.starts_with(
                "Bearer realm=\"system\", error=\"invalid_token\", error_description=\""
            ),
            "{value}: {www}"
        );
    }
}

#[tokio::test]
async fn token_in_the_query_or_sent_twice_is_400_invalid_request() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let res = app
        .http
        .get(app.url(&format!(
            "/tenants/system/oauth/userinfo?access_token={admin}"
        )))
        .send()
        .await
        .expect("request");
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(www, "Bearer realm=\"system\", error=\"invalid_request\"");

    let res = app
        .http
        .get(app.url("/tenants/system/oauth/userinfo"))
        .header("Authorization", format!("Bearer {admin}"))
        .header("Authorization", format!("Bearer {admin}"))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn bad_signature_unknown_kid_and_foreign_alg_are_401_token_invalid() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let parts: Vec<&str> = admin.split('.').collect();
    // Signature of another token: valid base64, wrong bytes.
    let other = app.admin_token().await;
    let other_sig = other.split('.').nth(2).unwrap_or_default();
    let bad_sig = format!("{}.{}.{}", parts[0], parts[1], other_sig);
    let mut claims = TestApp::claims_of(&admin);
    claims.sub = "someone-else".to_owned();
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).expect("json"))
    };
    let edited = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let unknown_kid = {
        use base64::Engine;
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"});
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).expect("json"));
        format!("{h}.{}.{}", parts[1], parts[2])
    };
    let hmac = {
        use base64::Engine;
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "x"});
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).expect("json"));
        format!("{h}.{}.{}", parts[1], parts[2])
    };
    let none = {
        use base64::Engine;
        let header = json!({"alg": "none", "typ": "at+jwt"});
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).expect("json"));
        format!("{h}.{}.", parts[1])
    };
    for token in [&bad_sig, &edited, &unknown_kid, &hmac, &none] {
        let res = app.get("/tenants/system/oauth/userinfo", token).await;
        let www = assert_unauthorized(res, "token_invalid").await;
        assert!(www.contains("error=\"invalid_token\""), "{www}");
    }
}

#[tokio::test]
async fn a_token_verified_before_is_still_refused_once_it_expires() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let leeway = app.config.clock_leeway_seconds as i64;
    let mut claims = TestApp::claims_of(&admin);
    // Good for two more seconds, leeway included.
    claims.exp = chrono::Utc::now().timestamp() - leeway + 2;
    claims.iat = claims.exp - 900;
    claims.nbf = claims.iat;
    let token = app.sign_as("system", &claims).await;
    // The second use is answered from the remembered verification.
    for _ in 0..2 {
        let res = app.get("/tenants/system/oauth/userinfo", &token).await;
        assert_eq!(res.status(), reqwest::StatusCode::OK);
    }
    let past = claims.exp + leeway + 1 - chrono::Utc::now().timestamp();
    tokio::time::sleep(std::time::Duration::from_secs(past.max(0) as u64)).await;
    let res = app.get("/tenants/system/oauth/userinfo", &token).await;
    assert_unauthorized(res, "token_expired").await;
}

#[tokio::test]
async fn expired_and_not_yet_valid_tokens_have_their_own_codes() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let now = chrono::Utc::now().timestamp();
    let leeway = app.config.clock_leeway_seconds as i64;

    let mut expired = TestApp::claims_of(&admin);
    expired.exp = now - leeway - 5;
    expired.iat = expired.exp - 900;
    expired.nbf = expired.iat;
    let token = app.sign_as("system", &expired).await;
    let res = app.get("/tenants/system/oauth/userinfo", &token).await;
    let www = assert_unauthorized(res, "token_expired").await;
    assert_eq!(
        www,
        "Bearer realm=\"system\", error=\"invalid_token\", error_description=\"The access token expired\""
    );

    // Within the leeway an expired token is still accepted.
    let mut lenient = TestApp::claims_of(&admin);
    lenient.exp = now - leeway / 2;
    let token = app.sign_as("system", &lenient).await;
    let res = app.get("/tenants/system/oauth/userinfo", &token).await;
    assert_eq!(res.status(), StatusCode::OK);

    let mut early = TestApp::claims_of(&admin);
    early.nbf = now + leeway + 60;
    let token = app.sign_as("system", &early).await;
    let res = app.get("/tenants/system/oauth/userinfo", &token).await;
    let www = assert_unauthorized(res, "token_not_yet_valid").await;
    assert!(www.contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn a_token_without_the_access_token_type_is_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let claims = TestApp::claims_of(&admin);
    let keys = app.state.keys.keys("system").await.expect("keys");
    let signing = keys.signing.as_ref().expect("signing");
    let mut header = jsonwebtoken::Header::new(signing.alg);
    header.kid = Some(signing.kid.clone());
    header.typ = Some("JWT".to_owned());
    let token = jsonwebtoken::encode(&header, &claims, &signing.key).expect("sign");
    let res = app.get("/tenants/system/oauth/userinfo", &token).await;
    assert_unauthorized(res, "token_invalid").await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_identical_answers() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let attempt = |email: String| {
        let app = &app;
        let t = t.clone();
        async move {
            let res = app
                .token(
                    &t,
                    &[
                        ("grant_type", "password"),
                        ("client_id", "admin-cli"),
                        ("username", &email),
                        ("password", "not the right password at all"),
                    ],
                )
                .await;
            (res.status(), res.text().await.expect("body"))
        }
    };
    let wrong_password = attempt(format!("user@{t}.test")).await;
    let unknown_email = attempt(format!("nobody@{t}.test")).await;
    let not_an_email = attempt("not-an-email".to_owned()).await;
    assert_eq!(wrong_password.0, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_password, unknown_email);
    assert_eq!(wrong_password, not_an_email);
    let body: serde_json::Value = serde_json::from_str(&wrong_password.1).expect("json");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["code"], "invalid_grant");
}

#[tokio::test]
async fn bad_client_credentials_are_401_invalid_client_with_basic_challenge() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let (client_id, _) = app
        .create_confidential_client(&admin, &t, &["client_credentials"])
        .await;
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/oauth/token")))
        .basic_auth(&client_id, Some("wrong-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Basic realm=\"{t}\"").as_str())
    );
    let body = json(res).await;
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["code"], "invalid_client");

    let res = app
        .token(
            &t,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", "wrong"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.headers().get("www-authenticate").is_none());
    assert_eq!(json(res).await["code"], "invalid_client");

    let res = app
        .token(
            &t,
            &[("grant_type", "password"), ("client_id", "no-such-client")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn token_endpoint_rejects_bad_requests_with_rfc_6749_bodies() {
    let app = spawn_app().await;
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form, StatusCode, &str)> = vec![
        (
            vec![("client_id", "admin-cli")],
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vec![("grant_type", "magic"), ("client_id", "admin-cli")],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "admin-cli"),
            ],
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", crate::helpers::ADMIN_EMAIL),
                ("password", crate::helpers::ADMIN_PASSWORD),
                ("scope", "openid admin:everything"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("client_id", "admin-cli"),
                ("refresh_token", "nope"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
    ];
    for (form, status, code) in cases {
        let res = app.token("system", &form).await;
        assert_eq!(res.status(), status, "{form:?}");
        let body = json(res).await;
        assert_eq!(body["error"], code, "{form:?}");
        assert_eq!(body["code"], code);
        assert!(body["error_description"].is_string());
    }
    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .json(&json!({"grant_type": "password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(json(res).await["code"], "unsupported_media_type");

    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&grant_type=refresh_token&client_id=admin-cli")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["code"], "invalid_request");

    // Unrecognised parameters are ignored, even repeated (RFC 6749 §3.1).
    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=magic&x=1&x=2&client_id=admin-cli")
        .send()
        .await
        .expect("request");
    assert_eq!(json(res).await["code"], "unsupported_grant_type");

    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&junk={}",
            "x".repeat(70 * 1024)
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(res).await["code"], "payload_too_large");
}

#[tokio::test]
async fn admin_routes_without_permission_are_403_forbidden_with_insufficient_scope() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let user = str_of(&tokens, "access_token");
    let res = app.get(&format!("/admin/tenants/{t}/users"), user).await;
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(
        www,
        format!("Bearer realm=\"{t}\", error=\"insufficient_scope\"")
    );
    assert!(str_of(&body, "detail").contains("users:read"));

    let res = app.get("/admin/tenants", user).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;

    let res = app
        .http
        .get(app.url(&format!("/admin/tenants/{t}/users")))
        .send()
        .await
        .expect("request");
    let www = assert_unauthorized(res, "token_missing").await;
    assert_eq!(www, format!("Bearer realm=\"{t}\""));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_problem_documents() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/no/such/thing"))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .http
        .delete(app.url("/tenants/system/oauth/token"))
        .send()
        .await
        .expect("request");
    assert_problem(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn userinfo_needs_a_users_token_with_openid() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, _) = app.tenant_with_user(&admin, json!({})).await;
    let scoped = app
        .token(
            &t,
            &[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", &format!("user@{t}.test")),
                ("password", USER_PASSWORD),
                ("scope", "email"),
            ],
        )
        .await;
    let scoped = json(scoped).await;
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&scoped, "access_token"),
        )
        .await;
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_problem(res, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
}

#[tokio::test]
async fn the_body_cap_is_configurable_for_json_and_form_bodies() {
    let app = crate::helpers::spawn_app_with(|c| c.max_body_bytes = 2048).await;
    let admin = app.admin_token().await;
    let big = json!({"slug": "capped", "name": "x".repeat(3000)});
    let res = app.post_json("/admin/tenants", &admin, &big).await;
    crate::helpers::assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Just under the cap is read (padding is JSON whitespace).
    let res = app
        .http
        .post(app.url("/admin/tenants"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"slug\": \"capped\",{}\"name\": \"Capped\"}}",
            " ".repeat(1900)
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=password&junk={}", "x".repeat(3000)))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(res).await["code"], "payload_too_large");
}

#[tokio::test]
async fn logout_with_a_json_null_body_ends_only_this_session() {
    let app = crate::helpers::spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, first) = app.tenant_with_user(&admin, json!({})).await;
    let email = format!("user@{t}.test");
    let second = app.login(&t, &email, crate::helpers::USER_PASSWORD).await;
    let first = crate::helpers::str_of(&first, "access_token");
    let res = app
        .http
        .post(app.url(&format!("/tenants/{t}/logout")))
        .bearer_auth(first)
        .header("content-type", "application/json")
        .body("null")
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), first)
        .await;
    crate::helpers::assert_unauthorized(res, "session_revoked").await;
    let second = crate::helpers::str_of(&second, "access_token");
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), second)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_token_in_a_form_body_is_400_invalid_request_before_any_other_check() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let access = str_of(&tokens, "access_token");
    for (path, with_header) in [
        (format!("/tenants/{t}/logout"), false),
        (format!("/tenants/{t}/logout"), true),
        (format!("/tenants/{t}/authz/check"), false),
        (format!("/tenants/{t}/me/password"), true),
        (format!("/admin/tenants/{t}/users"), false),
        ("/admin/tenants".to_owned(), true),
    ] {
        let mut req = app
            .http
            .post(app.url(&path))
            .form(&[("access_token", access)]);
        if with_header {
            req = req.bearer_auth(access);
        }
        let res = req.send().await.expect("request");
        let www = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(www.contains("error=\"invalid_request\""), "{path}: {www}");
    }
    // A query parameter too, whatever the method.
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo?access_token={access}"),
            access,
        )
        .await;
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The session is untouched by those calls.
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), access)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}
