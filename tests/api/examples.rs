//! The example applications against a real latchkey: `tenant-api` answers
//! 200/401/403 as SPEC §5 on both frameworks, and `web-app` signs a user
//! in, calls `tenant-api` and signs out.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::client::{AUDIENCE, Env, env};
use crate::delegated::{browser, location, sign_in};
use crate::helpers::{TestApp, USER_PASSWORD, json, str_of};

/// Roles `analyst` (reports:read) and `reader` (documents:read); `email`
/// gets the roles named.
async fn grant(env: &Env, user_id: &str, roles: &[&str]) {
    for (name, resource) in [("analyst", "reports"), ("reader", "documents")] {
        let res = env
            .app
            .post_json(
                &format!("/admin/tenants/{}/roles", env.t),
                &env.admin,
                &json!({"name": name, "description": name,
                        "permissions": [{"resource": resource, "action": "read"}]}),
            )
            .await;
        assert!(
            res.status() == StatusCode::CREATED || res.status() == StatusCode::CONFLICT,
            "role {name}: {}",
            res.status()
        );
    }
    let res = env
        .app
        .send_json(
            reqwest::Method::PUT,
            &format!("/admin/tenants/{}/users/{user_id}/roles", env.t),
            &env.admin,
            &json!({"roles": roles}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK, "{}", json(res).await);
}

/// Starts `tenant-api` on `framework` against `env`; answers its base URL.
async fn start_tenant_api(env: &Env, framework: &str) -> String {
    let settings = tenant_api::Settings {
        issuer: env.issuer.clone(),
        audience: AUDIENCE.to_owned(),
        client_id: AUDIENCE.to_owned(),
        client_secret: env.api_secret.clone(),
        revocation_check: Some(Duration::from_secs(1)),
    };
    let verifier = settings.verifier().await.expect("verifier");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    match framework {
        "axum" => {
            tokio::spawn(tenant_api::axum_app::serve(listener, verifier));
        }
        _ => {
            let server = tenant_api::actix_app::serve(listener, verifier).expect("server");
            tokio::spawn(server);
        }
    }
    base
}

fn www_authenticate(res: &Response) -> String {
    res.headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts a refusal: status, code, problem+json shape and challenge.
async fn refused(res: Response, status: StatusCode, code: &str, challenge: &str, what: &str) {
    assert_eq!(res.status(), status, "{what}");
    assert_eq!(
        www_authenticate(&res),
        challenge,
        "{what}: WWW-Authenticate"
    );
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{what}"
    );
    let body = json(res).await;
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["status"], status.as_u16(), "{what}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(body["type"].as_str().is_some_and(|s| s.ends_with(code)));
}

#[tokio::test]
async fn tenant_api_answers_200_401_and_403_as_the_spec_on_axum_and_actix_web() {
    let env = env().await;
    grant(&env, &env.user_id, &["analyst", "reader"]).await;
    let bob = format!("bob@{}.test", env.t);
    env.app.create_user(&env.admin, &env.t, &bob).await;
    let t = env.t.clone();
    let invalid = |d: &str| {
        format!("Bearer realm=\"{t}\", error=\"invalid_token\", error_description=\"{d}\"")
    };
    let expired_challenge = format!(
        "Bearer realm=\"{t}\", error=\"invalid_token\", error_description=\"The access token expired\""
    );
    let forbidden = format!("Bearer realm=\"{t}\", error=\"insufficient_scope\"");

    for framework in ["axum", "actix"] {
        let api = start_tenant_api(&env, framework).await;
        let http = reqwest::Client::new();
        let get = |path: &str, token: Option<&str>| {
            let mut req = http.get(format!("{api}{path}"));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            req.send()
        };
        let ada = env.sign_in(&env.email).await;
        let ada = str_of(&ada, "access_token").to_owned();
        let bob = env.sign_in(&bob).await;
        let bob = str_of(&bob, "access_token").to_owned();
        let mut expired = TestApp::claims_of(&ada);
        expired.exp = jsonwebtoken::get_current_timestamp() as i64 - 120;
        let expired = env.app.sign_as(&env.t, &expired).await;
        let revoked = env.sign_in(&env.email).await;
        let revoked = str_of(&revoked, "access_token").to_owned();
        env.logout(&revoked).await;

        for path in ["/me", "/reports", "/documents"] {
            let what = format!("{framework} {path}");
            let res = get(path, Some(&ada)).await.expect("request");
            assert_eq!(res.status(), StatusCode::OK, "{what}: valid");
            let body: Value = res.json().await.expect("JSON");
            assert!(body.to_string().contains(&env.user_id), "{what}: {body}");

            let res = get(path, None).await.expect("request");
            refused(
                res,
                StatusCode::UNAUTHORIZED,
                "token_missing",
                &format!("Bearer realm=\"{t}\""),
                &format!("{what}: missing"),
            )
            .await;

            let res = get(path, Some(&expired)).await.expect("request");
            refused(
                res,
                StatusCode::UNAUTHORIZED,
                "token_expired",
                &expired_challenge,
                &format!("{what}: expired"),
            )
            .await;

            let res = get(path, Some(&revoked)).await.expect("request");
            refused(
                res,
                StatusCode::UNAUTHORIZED,
                "session_revoked",
                &invalid("The session of this token has ended"),
                &format!("{what}: revoked"),
            )
            .await;

            let res = http
                .get(format!("{api}{path}"))
                .header("authorization", "Basic YWxpY2U6c2VjcmV0")
                .send()
                .await
                .expect("request");
            refused(
                res,
                StatusCode::UNAUTHORIZED,
                "token_malformed",
                &invalid("The Authorization scheme must be Bearer"),
                &format!("{what}: Basic"),
            )
            .await;

            let res = http
                .get(format!("{api}{path}?access_token={ada}"))
                .send()
                .await
                .expect("request");
            refused(
                res,
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Bearer realm=\"{t}\", error=\"invalid_request\""),
                &format!("{what}: token in the query"),
            )
            .await;

            // Bob is signed in but holds no role.
            let res = get(path, Some(&bob)).await.expect("request");
            if path == "/me" {
                assert_eq!(res.status(), StatusCode::OK, "{what}: bob");
            } else {
                refused(
                    res,
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &forbidden,
                    &format!("{what}: under-privileged"),
                )
                .await;
            }
        }
    }
}

#[tokio::test]
async fn web_app_signs_in_calls_tenant_api_and_signs_out() {
    let env = env().await;
    let api = start_tenant_api(&env, "axum").await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let public = format!("http://{}", listener.local_addr().expect("addr"));
    let res = env
        .app
        .post_json(
            &format!("/admin/tenants/{}/clients", env.t),
            &env.admin,
            &json!({"client_id": "web-app", "name": "Web app", "type": "confidential",
                    "grant_types": ["authorization_code", "refresh_token"],
                    "redirect_uris": [format!("{public}/callback")],
                    "post_logout_redirect_uris": [format!("{public}/signed-out")],
                    "audience": [AUDIENCE]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let secret = str_of(&json(res).await, "client_secret").to_owned();
    let app = web_app::WebApp::new(web_app::Settings {
        issuer: env.issuer.clone(),
        client_id: "web-app".to_owned(),
        client_secret: secret,
        public_url: public.clone(),
        api_url: api,
    })
    .await
    .expect("web-app");
    tokio::spawn(web_app::serve(listener, app).expect("server"));

    let browser = browser();
    // Not signed in: /api sends the browser to /login.
    let res = browser
        .get(format!("{public}/api"))
        .send()
        .await
        .expect("api");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res).expect("Location").path(), "/login");

    // Sign in: /login → latchkey's login page → /callback → /.
    let res = browser
        .get(format!("{public}/login"))
        .send()
        .await
        .expect("login");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let authorize = location(&res).expect("Location");
    assert!(authorize.as_str().starts_with(&env.issuer), "{authorize}");
    let back = sign_in(&browser, authorize.as_str(), &env.email, USER_PASSWORD).await;
    assert!(
        back.as_str().starts_with(&format!("{public}/callback")),
        "{back}"
    );
    let res = browser.get(back).send().await.expect("callback");
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the callback succeeds");
    assert_eq!(location(&res).expect("Location").path(), "/");
    let home = browser
        .get(format!("{public}/"))
        .send()
        .await
        .expect("home")
        .text()
        .await
        .expect("html");
    assert!(home.contains(&env.email), "{home}");

    // The API call with the session's tokens.
    let res = browser
        .get(format!("{public}/api"))
        .send()
        .await
        .expect("api");
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.expect("JSON");
    assert_eq!(me["sub"], env.user_id.as_str());

    // Sign out: the session here, then latchkey's (end_session), then back.
    let res = browser
        .post(format!("{public}/logout"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let end_session = location(&res).expect("Location");
    assert!(
        end_session.path().ends_with("/oauth/end_session"),
        "{end_session}"
    );
    let res = browser.get(end_session).send().await.expect("end_session");
    assert_eq!(res.status(), StatusCode::FOUND);
    let signed_out = location(&res).expect("Location");
    assert_eq!(signed_out.as_str(), format!("{public}/signed-out"));
    let res = browser.get(signed_out).send().await.expect("signed out");
    assert_eq!(res.status(), StatusCode::OK);

    // Signed out here and at latchkey: /api asks for a sign-in, and
    // latchkey shows its login page again instead of answering a code.
    let res = browser
        .get(format!("{public}/api"))
        .send()
        .await
        .expect("api");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res).expect("Location").path(), "/login");
    let res = browser
        .get(format!("{public}/login"))
        .send()
        .await
        .expect("login");
    let authorize = location(&res).expect("Location");
    let res = browser.get(authorize).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let next = location(&res).expect("Location");
    assert!(
        next.path().ends_with("/login"),
        "the login page again: {next}"
    );
}

#[tokio::test]
async fn a_scope_requirement_answers_403_insufficient_scope_naming_the_scope() {
    use latchkey_client::{RequireScope, scope};
    scope!(Email = "email");
    async fn email(user: RequireScope<Email>) -> String {
        user.sub.clone()
    }
    let env = env().await;
    let verifier = env.verifier().await;
    let router = axum::Router::new()
        .route("/email", axum::routing::get(email))
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let api = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });

    let base = TestApp::claims_of(str_of(&env.sign_in(&env.email).await, "access_token"));
    let mut with = base.clone();
    with.scope = "openid email".to_owned();
    let mut without = base.clone();
    without.scope = "openid".to_owned();
    let http = reqwest::Client::new();
    let with = env.app.sign_as(&env.t, &with).await;
    let res = http
        .get(format!("{api}/email"))
        .bearer_auth(&with)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let without = env.app.sign_as(&env.t, &without).await;
    let res = http
        .get(format!("{api}/email"))
        .bearer_auth(&without)
        .send()
        .await
        .expect("request");
    refused(
        res,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
        &format!(
            "Bearer realm=\"{}\", error=\"insufficient_scope\", scope=\"email\"",
            env.t
        ),
        "without the scope",
    )
    .await;
}

#[tokio::test]
async fn tenant_api_fails_closed_with_503_while_latchkey_cannot_be_asked() {
    let env = env().await;
    grant(&env, &env.user_id, &["reader"]).await;
    for framework in ["axum", "actix"] {
        let api = start_tenant_api(&env, framework).await;
        let token = env.sign_in(&env.email).await;
        let token = str_of(&token, "access_token").to_owned();
        env.proxy.set_down(true);
        for path in ["/me", "/documents"] {
            let res = reqwest::Client::new()
                .get(format!("{api}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("request");
            env.proxy.set_down(false);
            assert_eq!(
                res.status(),
                StatusCode::SERVICE_UNAVAILABLE,
                "{framework} {path}"
            );
            assert_eq!(
                res.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
                Some("1")
            );
            assert!(res.headers().get("www-authenticate").is_none());
            let body = json(res).await;
            assert_eq!(body["code"], "store_unavailable", "{body}");
            assert!(
                !body.to_string().contains("502"),
                "no cause answered: {body}"
            );
            // Fresh tokens for the permission route: the decision is not
            // remembered from the failure.
            env.proxy.set_down(true);
        }
        env.proxy.set_down(false);
        let res = reqwest::Client::new()
            .get(format!("{api}/documents"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{framework}: recovered");
    }
}

#[tokio::test]
async fn permission_checks_recover_after_the_api_client_is_disabled_and_enabled_again() {
    let env = env().await;
    grant(&env, &env.user_id, &["reader"]).await;
    let carol = format!("carol@{}.test", env.t);
    let carol_id = env.app.create_user(&env.admin, &env.t, &carol).await;
    grant(&env, &carol_id, &["reader"]).await;
    let api = start_tenant_api(&env, "axum").await;
    let http = reqwest::Client::new();
    let ada = env.sign_in(&env.email).await;
    let res = http
        .get(format!("{api}/documents"))
        .bearer_auth(str_of(&ada, "access_token"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the API's service token works"
    );
    // Disabling the client kills its tokens for good, enabling it again
    // does not bring them back: the API must get a new one by itself.
    for enabled in [false, true] {
        let res = env
            .app
            .patch_json(
                &format!("/admin/tenants/{}/clients/{AUDIENCE}", env.t),
                &env.admin,
                &json!({"enabled": enabled}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let carol = env.sign_in(&carol).await;
    let res = http
        .get(format!("{api}/documents"))
        .bearer_auth(str_of(&carol, "access_token"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a new service token, not a 503: {}",
        res.text().await.unwrap_or_default()
    );
}
