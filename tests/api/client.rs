//! latchkey-client (SPEC §10) against a real latchkey: the `Verifier`
//! (every §5 failure with its code, key rotation, forged `kid`s, the
//! revocation-aware mode) and the `TokenManager` (single flight, sign in
//! again, one retry on `token_expired`). Requests that reach latchkey are
//! counted by a proxy in front of it: the app's public URL is the proxy's.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::join_all;
use latchkey_client::{AuthError, SignInReason, TokenError, TokenManager, TokenSet, Verifier};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, USER_PASSWORD, json, spawn_app_with, str_of};

// ---------------------------------------------------------------------------
// A counting proxy in front of latchkey
// ---------------------------------------------------------------------------

/// Forwards every request to latchkey and counts them by method and path;
/// while `down`, counts them and answers 502 as a gateway whose upstream is
/// gone would.
pub(crate) struct CountingProxy {
    counts: Arc<parking_lot::Mutex<HashMap<(String, String), usize>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl CountingProxy {
    /// Serves on `listener`, forwarding to `upstream`.
    pub(crate) fn start(listener: std::net::TcpListener, upstream: String) -> Self {
        use axum::body::Body;
        use axum::extract::{Request, State};
        use axum::response::Response;

        type Shared = (
            Arc<parking_lot::Mutex<HashMap<(String, String), usize>>>,
            String,
            reqwest::Client,
            Arc<std::sync::atomic::AtomicBool>,
        );
        async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
            let (counts, upstream, http, down) = &*shared;
            let (parts, body) = req.into_parts();
            *counts
                .lock()
                .entry((parts.method.to_string(), parts.uri.path().to_owned()))
                .or_default() += 1;
            if down.load(Ordering::SeqCst) {
                return Response::builder()
                    .status(502)
                    .body(Body::empty())
                    .unwrap_or_default();
            }
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let path = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut request = http.request(parts.method.clone(), format!("{upstream}{path}"));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    request = request.header(name, value);
                }
            }
            let res = match request.body(body.to_vec()).send().await {
                Ok(res) => res,
                Err(_) => {
                    return Response::builder()
                        .status(502)
                        .body(Body::empty())
                        .unwrap_or_default();
                }
            };
            let mut builder = Response::builder().status(res.status());
            for (name, value) in res.headers() {
                if name != "transfer-encoding" && name != "content-length" && name != "connection" {
                    builder = builder.header(name, value);
                }
            }
            let bytes = res.bytes().await.unwrap_or_default();
            builder.body(Body::from(bytes)).unwrap_or_default()
        }

        let counts = Arc::new(parking_lot::Mutex::new(HashMap::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy client");
        let router = axum::Router::new().fallback(forward).with_state(Arc::new((
            counts.clone(),
            upstream,
            http,
            down.clone(),
        )));
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        tokio::spawn(async move { axum::serve(listener, router).await });
        CountingProxy { counts, down }
    }

    /// Makes latchkey unreachable through the proxy (502), or reachable again.
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Requests seen so far with this method and path.
    pub(crate) fn count(&self, method: &str, path: &str) -> usize {
        self.counts
            .lock()
            .get(&(method.to_owned(), path.to_owned()))
            .copied()
            .unwrap_or_default()
    }
}

/// A tenant with a user, a public client `web` (password and refresh grants)
/// whose tokens are meant for `tenant-api`, and the confidential client
/// `tenant-api` itself (client_credentials).
pub(crate) struct Env {
    pub app: TestApp,
    pub admin: String,
    pub t: String,
    pub issuer: String,
    pub user_id: String,
    pub email: String,
    pub api_secret: String,
    pub proxy: CountingProxy,
}

pub(crate) const AUDIENCE: &str = "tenant-api";
pub(crate) const WEB_CLIENT: &str = "web";

pub(crate) async fn env() -> Env {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let public = format!("http://{}", listener.local_addr().expect("addr"));
    let app = spawn_app_with(|c| c.public_url = Some(public.clone())).await;
    let proxy = CountingProxy::start(listener, app.base.clone());
    let admin = app.admin_token().await;
    let t = crate::helpers::slug("cl");
    app.create_tenant(&admin, &t, json!({})).await;
    let email = format!("ada@{t}.test");
    let user_id = app.create_user(&admin, &t, &email).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"client_id": WEB_CLIENT, "name": "Web", "type": "public",
                    "grant_types": ["password", "refresh_token"], "audience": [AUDIENCE]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{}", json(res).await);
    let res = app
        .post_json(
            &format!("/admin/tenants/{t}/clients"),
            &admin,
            &json!({"client_id": AUDIENCE, "name": "Tenant API", "type": "confidential",
                    "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let api_secret = str_of(&json(res).await, "client_secret").to_owned();
    Env {
        issuer: format!("{public}/tenants/{t}"),
        app,
        admin,
        t,
        user_id,
        email,
        api_secret,
        proxy,
    }
}

impl Env {
    /// Signs `email` in through `web`: the token answer.
    pub(crate) async fn sign_in(&self, email: &str) -> Value {
        let res = self
            .app
            .token(
                &self.t,
                &[
                    ("grant_type", "password"),
                    ("client_id", WEB_CLIENT),
                    ("username", email),
                    ("password", USER_PASSWORD),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "sign-in of {email}");
        json(res).await
    }

    pub(crate) async fn logout(&self, access: &str) {
        let res = self
            .app
            .http
            .post(self.app.url(&format!("/tenants/{}/logout", self.t)))
            .bearer_auth(access)
            .send()
            .await
            .expect("logout");
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
    }

    pub(crate) async fn verifier(&self) -> Verifier {
        Verifier::builder(&self.issuer, AUDIENCE)
            .build()
            .await
            .expect("verifier")
    }

    fn jwks_path(&self) -> String {
        format!("/tenants/{}/.well-known/jwks.json", self.t)
    }

    fn token_path(&self) -> String {
        format!("/tenants/{}/oauth/token", self.t)
    }
}

/// A token with its header replaced (the payload and signature kept).
fn with_header(token: &str, header: Value) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    let rest = parts.next().expect("payload and signature");
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

fn header_of(token: &str) -> Value {
    let part = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64")).expect("JSON")
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn code_of<T: std::fmt::Debug>(result: Result<T, AuthError>) -> &'static str {
    match result {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.code(),
    }
}

// ---------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verifier_accepts_a_valid_token_and_answers_every_failure_with_its_code() {
    let env = env().await;
    let verifier = env.verifier().await;
    assert_eq!(verifier.realm(), env.t);
    let tokens = env.sign_in(&env.email).await;
    let access = str_of(&tokens, "access_token");

    let claims = verifier.verify(access).await.expect("a valid token");
    assert_eq!(claims.sub, env.user_id);
    assert_eq!(claims.aud, vec![AUDIENCE.to_owned()]);
    assert_eq!(claims.tid, env.t);
    assert!(claims.sid.is_some());

    let base = TestApp::claims_of(access);
    let mut expired = base.clone();
    expired.exp = now() - 120;
    expired.iat = now() - 1000;
    expired.nbf = now() - 1000;
    let expired = env.app.sign_as(&env.t, &expired).await;
    assert_eq!(code_of(verifier.verify(&expired).await), "token_expired");

    let mut early = base.clone();
    early.nbf = now() + 600;
    early.exp = now() + 900;
    let early = env.app.sign_as(&env.t, &early).await;
    assert_eq!(
        code_of(verifier.verify(&early).await),
        "token_not_yet_valid"
    );

    // Within the leeway (30 s) both are still accepted.
    let mut barely = base.clone();
    barely.exp = now() - 10;
    let barely = env.app.sign_as(&env.t, &barely).await;
    verifier
        .verify(&barely)
        .await
        .expect("exp within the leeway");
    let mut soon = base.clone();
    soon.nbf = now() + 10;
    let soon = env.app.sign_as(&env.t, &soon).await;
    verifier.verify(&soon).await.expect("nbf within the leeway");

    // Another tenant's genuine token.
    let other = crate::helpers::slug("o");
    env.app.create_tenant(&env.admin, &other, json!({})).await;
    let email = format!("bob@{other}.test");
    env.app.create_user(&env.admin, &other, &email).await;
    let foreign = env.app.login(&other, &email, USER_PASSWORD).await;
    assert_eq!(
        code_of(verifier.verify(str_of(&foreign, "access_token")).await),
        "token_wrong_audience"
    );

    // Another audience: admin-cli's tokens are meant for admin-cli.
    let admin_cli = env.app.login(&env.t, &env.email, USER_PASSWORD).await;
    assert_eq!(
        code_of(verifier.verify(str_of(&admin_cli, "access_token")).await),
        "token_wrong_audience"
    );

    // alg none, with and without a signature.
    let kid = header_of(access)["kid"].clone();
    let none = with_header(access, json!({"alg": "none", "typ": "at+jwt", "kid": kid}));
    assert_eq!(code_of(verifier.verify(&none).await), "token_invalid");
    let unsigned = format!("{}.", none.rsplit_once('.').expect("parts").0);
    assert_eq!(code_of(verifier.verify(&unsigned).await), "token_invalid");

    // HS256 signed with the public key as the secret (the classic confusion).
    let jwks: Value = json(
        env.app
            .http
            .get(env.app.url(&env.jwks_path()))
            .send()
            .await
            .expect("jwks"),
    )
    .await;
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            alg: jsonwebtoken::Algorithm::HS256,
            typ: Some("at+jwt".to_owned()),
            kid: kid.as_str().map(str::to_owned),
            ..Default::default()
        },
        &base,
        &jsonwebtoken::EncodingKey::from_secret(jwks.to_string().as_bytes()),
    )
    .expect("HS256");
    assert_eq!(code_of(verifier.verify(&hs).await), "token_invalid");

    // Unknown kid, tampered payload, tampered signature, not a JWT, not an
    // access token.
    let unknown = with_header(
        access,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"}),
    );
    assert_eq!(code_of(verifier.verify(&unknown).await), "token_invalid");
    let mut tampered_claims = base.clone();
    tampered_claims.roles = vec!["admin".to_owned()];
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).expect("JSON"));
    let mut parts: Vec<&str> = access.split('.').collect();
    parts[1] = &payload;
    let tampered = parts.join(".");
    assert_eq!(code_of(verifier.verify(&tampered).await), "token_invalid");
    let mut sig = access.to_owned();
    let last = sig.pop().expect("a character");
    sig.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(code_of(verifier.verify(&sig).await), "token_invalid");
    assert_eq!(
        code_of(verifier.verify("not-a-jwt").await),
        "token_malformed"
    );
    assert_eq!(code_of(verifier.verify("").await), "token_malformed");
    let id_typ = with_header(access, json!({"alg": "ES256", "typ": "JWT", "kid": kid}));
    assert_eq!(code_of(verifier.verify(&id_typ).await), "token_invalid");
    let jku = with_header(
        access,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jku": "https://evil.example/jwks"}),
    );
    assert_eq!(code_of(verifier.verify(&jku).await), "token_invalid");

    // The refusals carry latchkey's challenge.
    assert_eq!(
        AuthError::TokenExpired.www_authenticate(&env.t).as_deref(),
        Some(&*format!(
            "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"The access token expired\"",
            env.t
        ))
    );
}

#[tokio::test]
async fn a_rotated_key_verifies_without_a_restart() {
    let env = env().await;
    let verifier = env.verifier().await;
    let before = env.sign_in(&env.email).await;
    verifier
        .verify(str_of(&before, "access_token"))
        .await
        .expect("the first key");
    let res = env
        .app
        .post_json(
            &format!("/admin/tenants/{}/keys/rotate", env.t),
            &env.admin,
            &json!({}),
        )
        .await;
    assert!(res.status().is_success(), "rotate: {}", res.status());
    let after = env.sign_in(&env.email).await;
    let (old_kid, new_kid) = (
        header_of(str_of(&before, "access_token"))["kid"].clone(),
        header_of(str_of(&after, "access_token"))["kid"].clone(),
    );
    assert_ne!(old_kid, new_kid, "the new key signs");
    let claims = verifier
        .verify(str_of(&after, "access_token"))
        .await
        .expect("a token of the rotated key");
    assert_eq!(claims.sub, env.user_id);
    verifier
        .verify(str_of(&before, "access_token"))
        .await
        .expect("the retired key still verifies its tokens");
}

#[tokio::test]
async fn a_thousand_forged_kids_fetch_the_jwks_at_most_once_per_ten_seconds() {
    let env = env().await;
    let verifier = env.verifier().await;
    let fetched = env.proxy.count("GET", &env.jwks_path());
    assert_eq!(fetched, 1, "the verifier read the JWKS once at start");
    let tokens = env.sign_in(&env.email).await;
    let access = str_of(&tokens, "access_token");
    let forged: Vec<String> = (0..1000)
        .map(|_| {
            with_header(
                access,
                json!({"alg": "ES256", "typ": "at+jwt", "kid": uuid::Uuid::new_v4().to_string()}),
            )
        })
        .collect();
    let started = Instant::now();
    let answers = join_all(forged.iter().map(|t| verifier.verify(t))).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    for answer in answers {
        assert_eq!(code_of(answer), "token_invalid");
    }
    assert_eq!(
        env.proxy.count("GET", &env.jwks_path()) - fetched,
        1,
        "1,000 unknown kids cause one refetch in 10 s"
    );
    // A genuine token still verifies, without a fetch.
    verifier.verify(access).await.expect("a genuine token");
    assert_eq!(env.proxy.count("GET", &env.jwks_path()) - fetched, 1);
}

#[tokio::test]
async fn revocation_aware_mode_refuses_a_logged_out_token_within_its_cache_time() {
    let env = env().await;
    let ttl = Duration::from_secs(1);
    let verifier = Verifier::builder(&env.issuer, AUDIENCE)
        .client(AUDIENCE, &env.api_secret)
        .revocation_check(ttl)
        .build()
        .await
        .expect("verifier");
    let tokens = env.sign_in(&env.email).await;
    let access = str_of(&tokens, "access_token");
    let introspect = format!("/tenants/{}/oauth/introspect", env.t);
    verifier.verify(access).await.expect("active");
    verifier.verify(access).await.expect("still active");
    assert_eq!(
        env.proxy.count("POST", &introspect),
        1,
        "the active answer is remembered"
    );
    env.logout(access).await;
    let logged_out = Instant::now();
    let refused = loop {
        match verifier.verify(access).await {
            Ok(_) => {
                assert!(
                    logged_out.elapsed() < ttl + Duration::from_millis(300),
                    "still accepted {:?} after the logout",
                    logged_out.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(refused.code(), "session_revoked");
    assert!(logged_out.elapsed() <= ttl + Duration::from_millis(300));

    // A token never seen before is asked about at once.
    let fresh = env.sign_in(&env.email).await;
    env.logout(str_of(&fresh, "access_token")).await;
    assert_eq!(
        code_of(verifier.verify(str_of(&fresh, "access_token")).await),
        "session_revoked"
    );

    // latchkey unreachable (a gateway answers 502): fail closed, 503.
    let other = env.sign_in(&env.email).await;
    env.proxy.set_down(true);
    let e = verifier
        .verify(str_of(&other, "access_token"))
        .await
        .expect_err("refused");
    env.proxy.set_down(false);
    assert_eq!(e.code(), "store_unavailable");
    assert_eq!(e.status(), 503);
    verifier
        .verify(str_of(&other, "access_token"))
        .await
        .expect("accepted once latchkey answers again (failures are not remembered)");

    // The API's client refused (a wrong secret): a configuration error, 500.
    let misconfigured = Verifier::builder(&env.issuer, AUDIENCE)
        .client(AUDIENCE, "not-the-secret")
        .revocation_check(ttl)
        .build()
        .await
        .expect("verifier");
    let e = misconfigured
        .verify(str_of(&other, "access_token"))
        .await
        .expect_err("refused");
    assert_eq!((e.code(), e.status()), ("internal", 500));
}

// ---------------------------------------------------------------------------
// TokenManager
// ---------------------------------------------------------------------------

/// The tokens of `answer`, as if they had expired a moment ago.
fn expired_set(answer: &Value) -> TokenSet {
    let now = now() as u64;
    TokenSet {
        access_token: str_of(answer, "access_token").to_owned(),
        refresh_token: Some(str_of(answer, "refresh_token").to_owned()),
        expires_at: now - 1,
        received_at: now - 900,
        id_token: None,
        scope: None,
    }
}

fn new_manager(env: &Env) -> TokenManager {
    TokenManager::builder(&env.issuer, WEB_CLIENT).build()
}

fn sign_in_reason(result: Result<String, TokenError>) -> SignInReason {
    match result {
        Err(TokenError::SignInRequired(reason)) => reason,
        other => panic!("expected sign in again, got {other:?}"),
    }
}

#[tokio::test]
async fn fifty_concurrent_callers_on_an_expired_token_share_one_refresh() {
    let env = env().await;
    let answer = env.sign_in(&env.email).await;
    let manager = new_manager(&env);
    manager.set_tokens(expired_set(&answer)).await.expect("set");
    let tokens = join_all((0..50).map(|_| manager.access_token())).await;
    let tokens: Vec<String> = tokens.into_iter().map(|t| t.expect("a token")).collect();
    assert_eq!(env.proxy.count("POST", &env.token_path()), 1, "one refresh");
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    assert_ne!(tokens[0], str_of(&answer, "access_token"));
    // The refreshed token works, and a fresh token is not refreshed again.
    let res = env
        .app
        .get(&format!("/tenants/{}/oauth/userinfo", env.t), &tokens[0])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    manager.access_token().await.expect("fresh");
    assert_eq!(env.proxy.count("POST", &env.token_path()), 1);
    let held = manager.tokens().await.expect("store").expect("tokens");
    assert_ne!(
        held.refresh_token.as_deref(),
        Some(str_of(&answer, "refresh_token"))
    );
}

#[tokio::test]
async fn a_revoked_refresh_token_ends_in_sign_in_again_for_every_caller_and_no_more_requests() {
    let env = env().await;
    let answer = env.sign_in(&env.email).await;
    let res = env
        .app
        .http
        .post(env.app.url(&format!("/tenants/{}/oauth/revoke", env.t)))
        .form(&[
            ("token", str_of(&answer, "refresh_token")),
            ("client_id", WEB_CLIENT),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(res.status(), StatusCode::OK);
    let manager = new_manager(&env);
    manager.set_tokens(expired_set(&answer)).await.expect("set");
    let answers = join_all((0..50).map(|_| manager.access_token())).await;
    let reasons: Vec<SignInReason> = answers.into_iter().map(sign_in_reason).collect();
    assert!(
        reasons.iter().all(|r| *r == SignInReason::InvalidGrant),
        "{reasons:?}"
    );
    assert_eq!(env.proxy.count("POST", &env.token_path()), 1, "one refresh");
    for _ in 0..10 {
        assert_eq!(
            sign_in_reason(manager.access_token().await),
            SignInReason::InvalidGrant
        );
        let sent = manager
            .send(env.app.http.get(format!("{}/oauth/userinfo", env.issuer)))
            .await;
        assert!(
            matches!(sent, Err(TokenError::SignInRequired(_))),
            "{sent:?}"
        );
    }
    assert_eq!(
        env.proxy.count("POST", &env.token_path()),
        1,
        "no more requests"
    );
    assert_eq!(
        env.proxy
            .count("GET", &format!("/tenants/{}/oauth/userinfo", env.t)),
        0
    );
    assert!(
        manager.tokens().await.expect("store").is_none(),
        "tokens dropped"
    );

    // New tokens end the signed-out state.
    manager
        .set_tokens(expired_set(&env.sign_in(&env.email).await))
        .await
        .expect("set");
    manager.access_token().await.expect("signed in again");
}

#[tokio::test]
async fn a_logged_out_session_ends_in_sign_in_again_after_one_api_call() {
    let env = env().await;
    let answer = env.sign_in(&env.email).await;
    let manager = new_manager(&env);
    let mut set = expired_set(&answer);
    set.expires_at = now() as u64 + 900;
    manager.set_tokens(set).await.expect("set");
    env.logout(str_of(&answer, "access_token")).await;
    let userinfo = format!("{}/oauth/userinfo", env.issuer);
    let answers = join_all((0..10).map(|_| manager.send(env.app.http.get(&userinfo)))).await;
    for answer in answers {
        match answer {
            Err(TokenError::SignInRequired(SignInReason::SessionRevoked)) => {}
            other => panic!("expected session_revoked, got {other:?}"),
        }
    }
    let path = format!("/tenants/{}/oauth/userinfo", env.t);
    let calls = env.proxy.count("GET", &path);
    assert!(calls <= 10, "at most one call per caller: {calls}");
    for _ in 0..5 {
        let again = manager.send(env.app.http.get(&userinfo)).await;
        assert!(
            matches!(again, Err(TokenError::SignInRequired(_))),
            "{again:?}"
        );
    }
    assert_eq!(env.proxy.count("GET", &path), calls, "no request after");
    assert_eq!(env.proxy.count("POST", &env.token_path()), 0, "no refresh");
}

/// An API that answers `401 token_expired` to the tokens in `refuse` (or to
/// every token when `always`) and 200 otherwise; counts its calls.
async fn expiring_api(always: bool, refuse: String) -> (String, Arc<AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode as S};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = axum::Router::new().route(
        "/orders",
        axum::routing::get(move |headers: HeaderMap| {
            let counted = counted.clone();
            let refuse = refuse.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let sent = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                if always || sent == format!("Bearer {refuse}") {
                    (
                        S::UNAUTHORIZED,
                        [
                            ("www-authenticate", "Bearer realm=\"acme\", error=\"invalid_token\", error_description=\"The access token expired\""),
                            ("content-type", "application/problem+json"),
                        ],
                        r#"{"type":"https://latchkey.dev/problems/token_expired","title":"Access token expired","status":401,"detail":"The access token expired","code":"token_expired","request_id":"x"}"#,
                    )
                } else {
                    (
                        S::OK,
                        [
                            ("cache-control", "no-store"),
                            ("content-type", "application/json"),
                        ],
                        r#"{"orders":[]}"#,
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, calls)
}

#[tokio::test]
async fn token_expired_from_an_api_causes_one_refresh_and_one_retry() {
    let env = env().await;
    let answer = env.sign_in(&env.email).await;
    let access = str_of(&answer, "access_token").to_owned();
    let mut set = expired_set(&answer);
    set.expires_at = now() as u64 + 900; // the manager believes it valid

    // The API refuses the held token as expired: one refresh, one retry, 200.
    let (api, calls) = expiring_api(false, access.clone()).await;
    let manager = new_manager(&env);
    manager.set_tokens(set.clone()).await.expect("set");
    let res = manager
        .send(env.app.http.get(format!("{api}/orders")))
        .await
        .expect("an answer");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the call and one retry");
    assert_eq!(env.proxy.count("POST", &env.token_path()), 1, "one refresh");

    // An API that always says token_expired: still exactly one retry, and
    // its 401 comes back (no loop).
    let answer = env.sign_in(&env.email).await;
    let mut set = expired_set(&answer);
    set.expires_at = now() as u64 + 900;
    let (api, calls) = expiring_api(true, String::new()).await;
    let manager = new_manager(&env);
    manager.set_tokens(set).await.expect("set");
    let res = manager
        .send(env.app.http.get(format!("{api}/orders")))
        .await
        .expect("an answer");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("the problem survives the read");
    assert_eq!(body["code"], "token_expired");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "exactly one retry");
    assert_eq!(
        env.proxy.count("POST", &env.token_path()),
        2,
        "one more refresh"
    );

    // Concurrent callers refused at once share the one refresh.
    let answer = env.sign_in(&env.email).await;
    let mut set = expired_set(&answer);
    set.expires_at = now() as u64 + 900;
    let (api, calls) = expiring_api(false, str_of(&answer, "access_token").to_owned()).await;
    let manager = new_manager(&env);
    manager.set_tokens(set).await.expect("set");
    let answers =
        join_all((0..20).map(|_| manager.send(env.app.http.get(format!("{api}/orders"))))).await;
    assert!(
        answers
            .into_iter()
            .all(|a| a.expect("an answer").status() == StatusCode::OK)
    );
    assert_eq!(
        env.proxy.count("POST", &env.token_path()),
        3,
        "one refresh for all"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        40,
        "each of the 20 calls and its one retry"
    );
}

/// A store that keeps its tokens where another manager can find them (a
/// session store, a file), and counts the writes.
#[derive(Default)]
struct SharedStore {
    tokens: parking_lot::Mutex<Option<TokenSet>>,
    saves: AtomicUsize,
}

#[async_trait::async_trait]
impl latchkey_client::TokenStore for SharedStore {
    async fn load(&self) -> Result<Option<TokenSet>, latchkey_client::StoreError> {
        Ok(self.tokens.lock().clone())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), latchkey_client::StoreError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        *self.tokens.lock() = Some(tokens.clone());
        Ok(())
    }
    async fn clear(&self) -> Result<(), latchkey_client::StoreError> {
        *self.tokens.lock() = None;
        Ok(())
    }
}

#[tokio::test]
async fn tokens_persist_through_the_store_and_a_new_manager_continues_the_rotation() {
    let env = env().await;
    let store = Arc::new(SharedStore::default());
    let first = TokenManager::builder(&env.issuer, WEB_CLIENT)
        .store(store.clone())
        .build();
    first
        .set_tokens(expired_set(&env.sign_in(&env.email).await))
        .await
        .expect("set");
    let refreshed = first.access_token().await.expect("refreshed");
    assert_eq!(
        store.saves.load(Ordering::SeqCst),
        2,
        "set, then the rotation"
    );
    // A new process reads the store and goes on where the first left off:
    // its refresh spends the rotated refresh token, not the first one.
    drop(first);
    let second = TokenManager::builder(&env.issuer, WEB_CLIENT)
        .store(store.clone())
        .build();
    assert_eq!(second.access_token().await.expect("held"), refreshed);
    let mut held = store.tokens.lock().clone().expect("tokens");
    held.expires_at = now() as u64 - 1;
    *store.tokens.lock() = Some(held);
    let again = second.access_token().await.expect("refreshed again");
    assert_ne!(again, refreshed);
    assert_eq!(env.proxy.count("POST", &env.token_path()), 2);
    // revoke() ends the session at latchkey and forgets the tokens.
    second.revoke().await.expect("revoked");
    assert!(store.tokens.lock().is_none());
    let res = env
        .app
        .get(&format!("/tenants/{}/oauth/userinfo", env.t), &again)
        .await;
    crate::helpers::assert_unauthorized(res, "session_revoked").await;
}

#[tokio::test]
async fn a_refresh_finishes_and_is_saved_even_when_its_caller_gives_up() {
    let env = env().await;
    let manager = new_manager(&env);
    let answer = env.sign_in(&env.email).await;
    manager.set_tokens(expired_set(&answer)).await.expect("set");
    // The caller stops waiting at once; the refresh goes on without it.
    let gave_up = tokio::time::timeout(Duration::from_micros(1), manager.access_token()).await;
    assert!(gave_up.is_err(), "the caller gave up");
    let token = manager.access_token().await.expect("a token");
    assert_ne!(token, str_of(&answer, "access_token"));
    assert_eq!(
        env.proxy.count("POST", &env.token_path()),
        1,
        "the abandoned refresh was saved and reused: no second refresh"
    );
}

#[tokio::test]
async fn a_refresh_ahead_of_expiry_that_fails_keeps_the_valid_token_and_backs_off() {
    let env = env().await;
    let answer = env.sign_in(&env.email).await;
    let manager = new_manager(&env);
    let mut set = expired_set(&answer);
    set.expires_at = now() as u64 + 20; // within the 60 s margin: refreshed ahead
    manager.set_tokens(set).await.expect("set");
    env.proxy.set_down(true);
    for _ in 0..10 {
        let token = manager.access_token().await.expect("the held token");
        assert_eq!(token, str_of(&answer, "access_token"));
    }
    let sent = env.proxy.count("POST", &env.token_path());
    assert_eq!(sent, 1, "one attempt, then no request during the back-off");
    env.proxy.set_down(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = manager.access_token().await.expect("refreshed");
    assert_ne!(token, str_of(&answer, "access_token"));
    assert_eq!(env.proxy.count("POST", &env.token_path()), 2);

    // Once the held token has expired, the failure is the caller's.
    let manager = new_manager(&env);
    manager
        .set_tokens(expired_set(&env.sign_in(&env.email).await))
        .await
        .expect("set");
    env.proxy.set_down(true);
    let refused = manager.access_token().await;
    env.proxy.set_down(false);
    match refused {
        Err(TokenError::Refused { status: 502, .. }) => {}
        other => panic!("expected the 502, got {other:?}"),
    }
}
