//! Our tokens are standard: verified by an independent implementation
//! (the `p256` crate, not the library latchkey signs with) against the
//! published JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{json, spawn_app, str_of};

#[tokio::test]
async fn an_access_token_verifies_against_the_published_jwks_with_another_library() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let token = str_of(&tokens, "access_token");

    let res = app
        .http
        .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
        .send()
        .await
        .expect("jwks");
    assert_eq!(res.status(), StatusCode::OK);
    let jwks = json(res).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    assert_eq!(jwk["alg"], "ES256");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none(), "no private part is published");

    let mut parts = token.split('.');
    let (h, p, s) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
    assert_eq!(header["kid"], jwk["kid"]);

    let x = URL_SAFE_NO_PAD.decode(str_of(jwk, "x")).expect("x");
    let y = URL_SAFE_NO_PAD.decode(str_of(jwk, "y")).expect("y");
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).expect("public key");
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("sig")).expect("sig");
    key.verify(format!("{h}.{p}").as_bytes(), &signature)
        .expect("the signature verifies with the published key");

    // And a tampered payload does not.
    let claims = URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#);
    assert!(
        key.verify(format!("{h}.{claims}").as_bytes(), &signature)
            .is_err()
    );
}

#[tokio::test]
async fn eddsa_and_rs256_tenants_issue_tokens_latchkey_verifies() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for alg in ["EdDSA", "RS256"] {
        let (t, _, tokens) = app
            .tenant_with_user(&admin, json!({"signing_alg": alg}))
            .await;
        let token = str_of(&tokens, "access_token");
        let header = jsonwebtoken::decode_header(token).expect("header");
        assert_eq!(format!("{:?}", header.alg), alg);
        let res = app
            .get(&format!("/tenants/{t}/oauth/userinfo"), token)
            .await;
        assert_eq!(res.status(), StatusCode::OK, "{alg}");
        let jwks = json(
            app.http
                .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
                .send()
                .await
                .expect("jwks"),
        )
        .await;
        assert_eq!(jwks["keys"][0]["alg"], alg);
    }
}

#[tokio::test]
async fn changing_the_signing_algorithm_keeps_old_tokens_verifiable() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (t, _, tokens) = app.tenant_with_user(&admin, json!({})).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{t}"),
            &admin,
            &json!({"settings": {"signing_alg": "EdDSA"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .get(
            &format!("/tenants/{t}/oauth/userinfo"),
            str_of(&tokens, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let jwks = json(
        app.http
            .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
            .send()
            .await
            .expect("jwks"),
    )
    .await;
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    let fresh = app
        .login(&t, &format!("user@{t}.test"), crate::helpers::USER_PASSWORD)
        .await;
    let header = jsonwebtoken::decode_header(str_of(&fresh, "access_token")).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
}

#[tokio::test]
async fn the_jwks_is_never_cached_longer_than_a_new_key_waits_to_sign() {
    for (delay, expected) in [
        (3, "public, max-age=3"),
        (0, "public, max-age=0"),
        (900, "public, max-age=300"),
    ] {
        let app = crate::helpers::spawn_app_with(|c| c.key_activation_delay_seconds = delay).await;
        let res = app
            .http
            .get(app.url("/tenants/system/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some(expected),
            "delay {delay}"
        );
    }
}

#[tokio::test]
async fn discovery_and_keys_answer_any_origin_and_the_rfc_8414_location_too() {
    let app = spawn_app().await;
    for path in [
        "/tenants/system/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenants/system",
        "/tenants/system/.well-known/jwks.json",
    ] {
        let res = app
            .http
            .get(app.url(path))
            .header("Origin", "https://spa.example")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .and_then(|v| v.to_str().ok()),
            Some("*"),
            "{path}"
        );
        let body = json(res).await;
        if !path.ends_with("jwks.json") {
            assert_eq!(
                body["issuer"],
                format!("{}/tenants/system", app.base),
                "{path}"
            );
        }
    }
    let res = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server/tenants/no-such-tenant"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
