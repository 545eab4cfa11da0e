//! What one access-token verification costs with a warm JWKS (target:
//! ≤ 60 µs on the project's 2-core machine).
//!
//! `cargo bench -p latchkey-client --bench verify`
//!
//! A local issuer on loopback serves discovery and a JWKS for two tenants,
//! one signing with ES256 (latchkey's default) and one with EdDSA; tokens
//! shaped as latchkey's (RFC 9068 header, SPEC §4 claims) are signed with
//! their keys. Each verifier is built from its issuer URL as an application
//! builds it and warmed up. Then `LATCHKEY_BENCH_VERIFICATIONS` (default
//! 10,000) different tokens are verified one at a time, twice: the first
//! pass is each token's first sight (the full check, signature included),
//! the second the same tokens again, as an API sees a user's token on every
//! request until it expires (the signature is not checked twice; times,
//! `kid` and everything else are). Prints the mean, p50 and p99 of both
//! passes, and the cost of the signature check alone: the floor of a first
//! sight on this machine.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair, ParsedPublicKey, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_client::Verifier;
use serde_json::{Value, json};

const AUDIENCE: &str = "orders-api";
const KID: &str = "bench-key";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Signs a JWS signing input; answers the signature bytes.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// One tenant's key: its JWK, its signer, and the parsed public key.
struct Tenant {
    slug: &'static str,
    alg: &'static str,
    jwk: Value,
    sign: Signer,
    public: Vec<u8>,
    verification: &'static dyn VerificationAlgorithm,
}

fn es256() -> Tenant {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("a P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("the key pair");
    let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
    Tenant {
        slug: "bench-es256",
        alg: "ES256",
        jwk: json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
        sign: Box::new(move |input| pair.sign(&rng, input).expect("sign").as_ref().to_vec()),
        public: point,
        verification: &ECDSA_P256_SHA256_FIXED,
    }
}

fn eddsa() -> Tenant {
    let pair = Ed25519KeyPair::generate().expect("an Ed25519 key");
    let public = pair.public_key().as_ref().to_vec();
    Tenant {
        slug: "bench-eddsa",
        alg: "EdDSA",
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID,
            "x": URL_SAFE_NO_PAD.encode(&public),
        }),
        sign: Box::new(move |input| pair.sign(input).as_ref().to_vec()),
        public,
        verification: &ED25519,
    }
}

struct Pass {
    total: Duration,
    each: Vec<Duration>,
}

impl Pass {
    fn report(&self, n: usize) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at =
            |q: f64| self.each[((self.each.len() as f64 * q) as usize).min(self.each.len() - 1)];
        format!(
            "mean {:>5.1} µs, p50 {:>5.1} µs, p99 {:>5.1} µs",
            us(self.total) / n as f64,
            us(at(0.50)),
            us(at(0.99)),
        )
    }
}

async fn pass(verifier: &Verifier, tokens: &[String]) -> Pass {
    let mut each = Vec::with_capacity(tokens.len());
    let started = Instant::now();
    for token in tokens {
        let t = Instant::now();
        verifier.verify(token).await.expect("a valid token");
        each.push(t.elapsed());
    }
    let total = started.elapsed();
    each.sort();
    Pass { total, each }
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("LATCHKEY_BENCH_VERIFICATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tenants = [es256(), eddsa()];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut router = axum::Router::new();
    for tenant in &tenants {
        let issuer = format!("{base}/tenants/{}", tenant.slug);
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "token_endpoint": format!("{issuer}/oauth/token"),
        });
        let jwks = json!({"keys": [tenant.jwk]});
        router = router
            .route(
                &format!("/tenants/{}/.well-known/openid-configuration", tenant.slug),
                axum::routing::get(move || async move { axum::Json(discovery) }),
            )
            .route(
                &format!("/tenants/{}/.well-known/jwks.json", tenant.slug),
                axum::routing::get(move || async move {
                    ([("cache-control", "public, max-age=300")], axum::Json(jwks))
                }),
            );
    }
    tokio::spawn(async move { axum::serve(listener, router).await });

    println!("latchkey-client verify benchmark: {n} tokens per pass, one at a time");
    for tenant in &tenants {
        let issuer = format!("{base}/tenants/{}", tenant.slug);
        let header = URL_SAFE_NO_PAD
            .encode(json!({"alg": tenant.alg, "typ": "at+jwt", "kid": KID}).to_string());
        let sign = |i: usize| {
            let t = now();
            let claims = json!({
                "iss": issuer, "sub": format!("0190f7a2-0000-7000-8000-{i:012}"), "aud": [AUDIENCE],
                "azp": "web", "client_id": "web", "exp": t + 900, "iat": t, "nbf": t,
                "jti": format!("0190f7a2-1111-7000-8000-{i:012}"), "tid": tenant.slug,
                "sid": "0190f7a2-2222-7000-8000-000000000000", "scope": "openid email",
                "roles": ["analyst", "reader"],
            });
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
            let signature = (tenant.sign)(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
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
        let first = pass(&verifier, &tokens).await;
        let again = pass(&verifier, &tokens).await;

        // The floor: the signature checks alone, with the key parsed once.
        let public = ParsedPublicKey::new(tenant.verification, &tenant.public).expect("the key");
        let split: Vec<(&str, Vec<u8>)> = tokens
            .iter()
            .map(|t| {
                let (input, signature) = t.rsplit_once('.').expect("a JWS");
                (input, URL_SAFE_NO_PAD.decode(signature).expect("base64url"))
            })
            .collect();
        let started = Instant::now();
        for (input, signature) in &split {
            public
                .verify_sig(input.as_bytes(), signature)
                .expect("a valid signature");
        }
        let floor = started.elapsed().as_secs_f64() * 1e6 / n as f64;

        println!(
            "{:<6} first sight:      {}   (the signature check alone: {floor:.1} µs)",
            tenant.alg,
            first.report(n)
        );
        println!(
            "{:<6} seen before:      {}   (target ≤ 60 µs)",
            tenant.alg,
            again.report(n)
        );
    }
}
