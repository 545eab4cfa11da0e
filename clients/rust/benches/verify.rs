//! What one access-token verification costs with a warm JWKS (target:
//! ≤ 60 µs on the project's 2-core machine).
//!
//! `cargo bench -p latchkey-client --bench verify`
//!
//! A local issuer on loopback serves discovery and a JWKS of one P-256 key
//! (ES256, latchkey's default); tokens shaped as latchkey's (RFC 9068
//! header, SPEC §4 claims) are signed with it. The verifier is built from
//! the issuer URL as an application builds it and warmed up. Then
//! `LATCHKEY_BENCH_VERIFICATIONS` (default 10,000) different tokens are
//! verified one at a time, twice: the first pass is each token's first
//! sight (the full check, signature included), the second the same tokens
//! again, as an API sees a user's token on every request until it expires
//! (the signature is not checked twice; times, `kid` and everything else
//! are). Prints the mean, p50 and p99 of both passes, and the cost of the
//! ES256 signature check alone, the floor of a first sight.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_client::Verifier;
use serde_json::json;

const AUDIENCE: &str = "orders-api";
const KID: &str = "bench-key";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("LATCHKEY_BENCH_VERIFICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("the key pair");
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let issuer = format!("{base}/tenants/bench");
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "token_endpoint": format!("{issuer}/oauth/token"),
    });
    let jwks = json!({"keys": [jwk]});
    let router = axum::Router::new()
        .route(
            "/tenants/bench/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(discovery) }),
        )
        .route(
            "/tenants/bench/.well-known/jwks.json",
            axum::routing::get(move || async move {
                ([("cache-control", "public, max-age=300")], axum::Json(jwks))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "at+jwt", "kid": KID}).to_string());
    let sign = |i: usize| {
        let t = now();
        let claims = json!({
            "iss": issuer, "sub": format!("0190f7a2-0000-7000-8000-{i:012}"), "aud": [AUDIENCE],
            "azp": "web", "client_id": "web", "exp": t + 900, "iat": t, "nbf": t,
            "jti": format!("0190f7a2-1111-7000-8000-{i:012}"), "tid": "bench",
            "sid": "0190f7a2-2222-7000-8000-000000000000", "scope": "openid email",
            "roles": ["analyst", "reader"],
        });
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = pair.sign(&rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    };
    let warm: Vec<String> = (0..100).map(|i| sign(n + i)).collect();
    let tokens: Vec<String> = (0..n).map(sign).collect();

    let verifier = Verifier::builder(&issuer, AUDIENCE)
        .cache_capacity(2 * n as u64 + 1_000)
        .build()
        .await
        .expect("the verifier reads discovery and the JWKS");
    for token in &warm {
        verifier.verify(token).await.expect("a valid token");
    }
    let mut each = Vec::with_capacity(n);
    let started = Instant::now();
    for token in &tokens {
        let t = Instant::now();
        verifier.verify(token).await.expect("a valid token");
        each.push(t.elapsed());
    }
    let total = started.elapsed();
    let mut again = Vec::with_capacity(n);
    let again_started = Instant::now();
    for token in &tokens {
        let t = Instant::now();
        verifier.verify(token).await.expect("a valid token");
        again.push(t.elapsed());
    }
    let again_total = again_started.elapsed();
    again.sort();
    // The floor: the signature checks alone, with the key parsed once.
    let public = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        &point,
    )
    .expect("the public key");
    let split: Vec<(&str, Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let (input, signature) = t.rsplit_once('.').expect("a JWS");
            (input, URL_SAFE_NO_PAD.decode(signature).expect("base64url"))
        })
        .collect();
    let floor_started = Instant::now();
    for (input, signature) in &split {
        public
            .verify_sig(input.as_bytes(), signature)
            .expect("a valid signature");
    }
    let floor = floor_started.elapsed();
    each.sort();
    let at = |q: f64| each[((each.len() as f64 * q) as usize).min(each.len() - 1)];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "verify (ES256, warm JWKS, first sight of each of {n} tokens): mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs, {:.0}/s on one core",
        us(total) / n as f64,
        us(at(0.50)),
        us(at(0.99)),
        n as f64 / total.as_secs_f64()
    );
    let at_again = |q: f64| again[((again.len() as f64 * q) as usize).min(again.len() - 1)];
    println!(
        "verify (ES256, warm JWKS, token seen before): mean {:.1} µs, p50 {:.1} µs, p99 {:.1} µs (target ≤ 60 µs)",
        us(again_total) / n as f64,
        us(at_again(0.50)),
        us(at_again(0.99)),
    );
    println!(
        "  of which the ES256 signature check alone (aws-lc-rs, key parsed once): mean {:.1} µs",
        us(floor) / n as f64
    );
}
