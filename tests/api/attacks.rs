//! Hostile access tokens: each is answered 401 (never 2xx, never 5xx), with
//! `error="invalid_token"`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app, str_of};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// The token with its header replaced (payload and signature kept).
fn with_header(token: &str, header: Value) -> String {
    let mut parts = token.split('.');
    let _ = parts.next();
    format!(
        "{}.{}.{}",
        b64(&header),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default()
    )
}

#[tokio::test]
async fn forged_and_tampered_tokens_are_401_invalid_token() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let header = jsonwebtoken::decode_header(&admin).expect("header");
    let kid = header.kid.clone().unwrap_or_default();
    let claims = serde_json::to_value(TestApp::claims_of(&admin)).expect("claims");
    let payload = b64(&claims);
    let sig = admin.rsplit('.').next().unwrap_or_default().to_owned();
    let es = |h: Value| with_header(&admin, h);
    // HS256 signed with the tenant's public key material (key confusion).
    let jwks: Value = app
        .http
        .get(app.url("/tenants/system/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let public = serde_json::to_vec(&jwks["keys"][0]).expect("jwk");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            alg: jsonwebtoken::Algorithm::HS256,
            kid: Some(kid.clone()),
            typ: Some("at+jwt".to_owned()),
            ..Default::default()
        },
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .expect("hs256");
    let mut cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{payload}.",
                b64(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}))
            ),
        ),
        (
            "alg None",
            format!(
                "{}.{payload}.",
                b64(&json!({"alg": "None", "typ": "at+jwt", "kid": kid}))
            ),
        ),
        (
            "alg NONE",
            format!(
                "{}.{payload}.",
                b64(&json!({"alg": "NONE", "typ": "at+jwt", "kid": kid}))
            ),
        ),
        (
            "empty signature",
            format!("{}.{payload}.", admin.split('.').next().unwrap_or_default()),
        ),
        (
            "stripped signature",
            format!("{}.{payload}", admin.split('.').next().unwrap_or_default()),
        ),
        ("HS256 with the public key", hs256),
        (
            "unknown kid",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": "nope"})),
        ),
        (
            "kid path traversal",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": "../../dev/null"})),
        ),
        (
            "kid SQL",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": "' OR '1'='1"})),
        ),
        (
            "kid not a string",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": 42})),
        ),
        (
            "kid 10 KB",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": "k".repeat(10_000)})),
        ),
        (
            "jku header",
            es(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jku": "http://127.0.0.1:9/jwks"}),
            ),
        ),
        (
            "x5u header",
            es(
                json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5u": "http://127.0.0.1:9/cert"}),
            ),
        ),
        (
            "inline jwk",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "jwk": jwks["keys"][0]})),
        ),
        (
            "x5c header",
            es(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x5c": ["MIIB"]})),
        ),
        (
            "typ JWT",
            es(json!({"alg": "ES256", "typ": "JWT", "kid": kid})),
        ),
        (
            "alg RS256 on an EC key",
            es(json!({"alg": "RS256", "typ": "at+jwt", "kid": kid})),
        ),
    ];
    let mut edited = claims.clone();
    edited["sub"] = json!("someone-else");
    cases.push((
        "edited payload",
        format!(
            "{}.{}.{sig}",
            admin.split('.').next().unwrap_or_default(),
            b64(&edited)
        ),
    ));
    for (name, token) in &cases {
        let res = app.get("/tenants/system/oauth/userinfo", token).await;
        let status = res.status();
        let www = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert!(www.contains("error=\"invalid_token\""), "{name}: {www}");
        assert!(
            ["token_invalid", "token_malformed"]
                .contains(&body["code"].as_str().unwrap_or_default()),
            "{name}: {body}"
        );
        eprintln!("attack {name}: {} {}", status.as_u16(), body["code"]);
    }
}

#[tokio::test]
async fn tokens_with_bad_claims_are_refused() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let keys = app.state.keys.keys("system").await.expect("keys");
    let signing = keys.signing.as_ref().expect("signing");
    let mut header = jsonwebtoken::Header::new(signing.alg);
    header.kid = Some(signing.kid.clone());
    header.typ = Some("at+jwt".to_owned());
    let base = serde_json::to_value(TestApp::claims_of(&admin)).expect("claims");
    let sign = |claims: &Value| jsonwebtoken::encode(&header, claims, &signing.key).expect("sign");
    let now = chrono::Utc::now().timestamp();
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut c = base.clone();
    c.as_object_mut().map(|o| o.remove("exp"));
    cases.push(("missing exp", c, "token_invalid"));
    let mut c = base.clone();
    c["exp"] = json!(now - 3600);
    cases.push(("past exp", c, "token_expired"));
    let mut c = base.clone();
    c["nbf"] = json!(now + 3600);
    cases.push(("future nbf", c, "token_not_yet_valid"));
    let mut c = base.clone();
    c["iss"] = json!("https://evil.example.com/tenants/system");
    cases.push(("wrong iss", c, "token_invalid"));
    let mut c = base.clone();
    c.as_object_mut().map(|o| o.remove("iss"));
    cases.push(("missing iss", c, "token_invalid"));
    let mut c = base.clone();
    c["tid"] = json!("other");
    cases.push(("wrong tid", c, "token_wrong_audience"));
    let mut c = base.clone();
    c.as_object_mut().map(|o| o.remove("aud"));
    cases.push(("missing aud", c, "token_invalid"));
    for (name, aud) in [
        ("empty aud", json!("")),
        ("empty aud list", json!([])),
        ("aud not a string", json!(42)),
        ("aud list with a blank", json!(["admin-cli", ""])),
    ] {
        let mut c = base.clone();
        c["aud"] = aud;
        cases.push((name, c, "token_invalid"));
    }
    for (name, claims, code) in cases {
        let res = app
            .get("/tenants/system/oauth/userinfo", &sign(&claims))
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{name}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], code, "{name}");
        eprintln!("attack {name}: 401 {code}");
    }
}

#[tokio::test]
async fn a_100_kb_authorization_header_is_answered_431_before_any_parsing() {
    let app = spawn_app().await;
    let huge = format!("Bearer {}", "a".repeat(100 * 1024));
    let res = app
        .http
        .get(app.url("/tenants/system/oauth/userinfo"))
        .header("Authorization", &huge)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let body = assert_problem(
        res,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert!(str_of(&body, "detail").contains("authorization"), "{body}");
    // The OAuth endpoints answer in their own format.
    let res = app
        .http
        .post(app.url("/tenants/system/oauth/token"))
        .header("Authorization", format!("Basic {}", "A".repeat(20 * 1024)))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["code"], "payload_too_large");
    // Many headers that are small one by one but large together.
    let mut req = app.http.get(app.url("/admin/tenants"));
    for i in 0..40 {
        req = req.header(format!("x-filler-{i}"), "f".repeat(1000));
    }
    let res = req.send().await.expect("answer");
    assert_problem(
        res,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Beyond what the HTTP parser buffers at all: the connection is closed
    // (or a 4xx), never a 5xx. A client of its own, so the closed connection
    // is not reused below.
    let res = reqwest::Client::new()
        .get(app.url("/tenants/system/oauth/userinfo"))
        .header(
            "Authorization",
            format!("Bearer {}", "a".repeat(300 * 1024)),
        )
        .send()
        .await;
    if let Ok(res) = res {
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    // The server is still serving.
    let res = reqwest::Client::new()
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(res.status(), StatusCode::OK);
}

/// A loopback listener that counts the connections made to it.
async fn counting_listener() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    (url, hits)
}

#[tokio::test]
async fn key_url_headers_are_never_fetched() {
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};

    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (url, hits) = counting_listener().await;
    let real_kid = jsonwebtoken::decode_header(&admin)
        .expect("header")
        .kid
        .unwrap_or_default();
    let claims = serde_json::to_value(TestApp::claims_of(&admin)).expect("claims");
    // The attacker's own key, published (they hope) at the URLs below.
    let attacker = SigningKey::from_slice(&[7u8; 32]).expect("key");
    let mut answers = Vec::new();
    for (kid, field, path) in [
        ("attacker", "jku", "/jwks.json"),
        ("attacker", "x5u", "/cert.pem"),
        (real_kid.as_str(), "jku", "/jwks.json"),
        (real_kid.as_str(), "x5u", "/cert.pem"),
    ] {
        let mut header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid});
        header[field] = json!(format!("{url}{path}"));
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let sig: Signature = attacker.sign(input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
        let res = app.get("/tenants/system/oauth/userinfo", &token).await;
        let status = res.status();
        let body: Value = res.json().await.expect("json");
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kid} {field}: {body}");
        assert_eq!(body["code"], "token_invalid", "{kid} {field}");
        answers.push(status.as_u16());
    }
    // Give any stray fetch time to arrive.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "latchkey connected to a URL named in a token header"
    );
    eprintln!("jku/x5u tokens answered {answers:?}; connections to the named URLs: 0");
}

#[tokio::test]
async fn token_kinds_and_tenants_cannot_stand_in_for_each_other() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let access = str_of(&tokens, "access_token");
    let refresh = str_of(&tokens, "refresh_token");

    // A refresh token presented as a bearer token.
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), refresh)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let www = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    let body: Value = res.json().await.expect("json");
    eprintln!("attack refresh token as bearer: 401 {}", body["code"]);

    // An access token presented as a refresh token.
    let res = app.refresh_grant(&t, access).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    eprintln!("attack access token as refresh token: 400 {}", body["code"]);

    // Another tenant's valid token on this tenant's resource endpoint.
    let res = app
        .get(&format!("/tenants/{t}/oauth/userinfo"), &admin)
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], "token_wrong_audience");
    eprintln!("attack another tenant's valid token: 401 {}", body["code"]);
}
