//! Per-tenant signing keys: generation, sealing at rest, the JWKS, and an
//! in-process cache that every token check reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::NaiveDateTime;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rand::RngCore;
use serde::Serialize;

use crate::domain::SigningAlg;
use crate::store::StoreError;
use crate::store::db::keys::{self as key_rows, KeyRow};
use crate::store::db::{Db, DbConnection};

/// The AES-256-GCM key that seals private keys in the database.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// Accepts 32 bytes as 64 hex characters or base64 (standard or url-safe).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|e| e.to_string())?
        } else {
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| "expected 32 bytes as 64 hex characters or base64".to_owned())?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "expected exactly 32 bytes (256 bits)".to_owned())?;
        Ok(Self(key))
    }

    /// A key derived from a high-entropy secret: seals a value only the
    /// holder of that secret can open again.
    pub fn derived(label: &str, secret: &str) -> Self {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(label.as_bytes());
        h.update([0u8]);
        h.update(secret.as_bytes());
        Self(h.finalize().into())
    }

    /// HMAC-SHA256 of `message` under a key derived from this one for
    /// `label` (one key per purpose): values latchkey hands out and must
    /// recognise as its own, such as a browser's binding cookie.
    pub fn mac(&self, label: &str, message: &[u8]) -> [u8; 32] {
        use aws_lc_rs::hmac;
        let mut derived = self.0.to_vec();
        derived.extend_from_slice(label.as_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA256, &derived);
        let tag = hmac::sign(&key, message);
        let mut out = [0u8; 32];
        out.copy_from_slice(&tag.as_ref()[..32]);
        out
    }

    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// Reads the embedded-mode key file, creating it (mode 0600) if missing.
    pub fn load_or_create_file(path: &Path) -> Result<Self, String> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            return Self::parse(&text);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, hex::encode(key.0).as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(key)
    }

    /// Seals `plain`, bound to `context` (the key id): base64(nonce || ciphertext).
    pub fn seal(&self, plain: &[u8], context: &str) -> Result<String, String> {
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|e| e.to_string())?;
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`MasterKey::seal`] produced with the same context.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, String> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| "sealed value is not base64".to_owned())?;
        if bytes.len() < 12 + 16 {
            return Err("sealed value is too short".to_owned());
        }
        let (nonce, body) = bytes.split_at(12);
        let nonce: [u8; 12] = nonce
            .try_into()
            .map_err(|_| "sealed value is too short".to_owned())?;
        let cipher = Aes256Gcm::new_from_slice(&self.0).map_err(|e| e.to_string())?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "cannot open: wrong master key or corrupted value".to_owned())
    }
}

/// A public key as published in the JWKS.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Jwk {
    pub kty: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

fn jwt_alg(alg: SigningAlg) -> Algorithm {
    match alg {
        SigningAlg::ES256 => Algorithm::ES256,
        SigningAlg::EdDSA => Algorithm::EdDSA,
        SigningAlg::RS256 => Algorithm::RS256,
    }
}

/// Generates a key pair: PKCS#8 DER private key and the public JWK.
fn generate(alg: SigningAlg, kid: &str) -> Result<(Vec<u8>, Jwk), String> {
    let rng = SystemRandom::new();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    let mut jwk = Jwk {
        kty: String::new(),
        kid: kid.to_owned(),
        alg: alg.as_str().to_owned(),
        use_: "sig".to_owned(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
    };
    let der = match alg {
        SigningAlg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| "EC key generation failed".to_owned())?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|e| e.to_string())?;
            // Uncompressed point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err("unexpected EC public key length".to_owned());
            }
            jwk.kty = "EC".to_owned();
            jwk.crv = Some("P-256".to_owned());
            jwk.x = Some(b64(&point[1..33]));
            jwk.y = Some(b64(&point[33..65]));
            doc.as_ref().to_vec()
        }
        SigningAlg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| "Ed25519 key generation failed".to_owned())?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|e| e.to_string())?;
            jwk.kty = "OKP".to_owned();
            jwk.crv = Some("Ed25519".to_owned());
            jwk.x = Some(b64(pair.public_key().as_ref()));
            doc.as_ref().to_vec()
        }
        SigningAlg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| "RSA key generation failed".to_owned())?;
            let public = pair.public_key();
            jwk.kty = "RSA".to_owned();
            jwk.n = Some(b64(public.modulus().big_endian_without_leading_zero()));
            jwk.e = Some(b64(public.exponent().big_endian_without_leading_zero()));
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
                .as_der()
                .map_err(|_| "RSA key export failed".to_owned())?;
            der.as_ref().to_vec()
        }
    };
    Ok((der, jwk))
}

/// Reads one DER TLV: (tag, contents, rest).
fn der_next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = der_next(pkcs8)? else {
        return None;
    };
    let (0x02, _, rest) = der_next(info)? else {
        return None;
    };
    let (0x30, _, rest) = der_next(rest)? else {
        return None;
    };
    let (0x04, key, _) = der_next(rest)? else {
        return None;
    };
    Some(key)
}

fn encoding_key(alg: SigningAlg, pkcs8: &[u8]) -> Result<EncodingKey, String> {
    Ok(match alg {
        SigningAlg::ES256 => EncodingKey::from_ec_der(pkcs8),
        SigningAlg::EdDSA => EncodingKey::from_ed_der(pkcs8),
        SigningAlg::RS256 => EncodingKey::from_rsa_der(
            pkcs8_to_pkcs1(pkcs8).ok_or_else(|| "malformed RSA private key".to_owned())?,
        ),
    })
}

fn decoding_key(jwk: &Jwk) -> Result<DecodingKey, String> {
    let field = |v: &Option<String>| v.clone().ok_or_else(|| "incomplete JWK".to_owned());
    match jwk.kty.as_str() {
        "EC" => DecodingKey::from_ec_components(&field(&jwk.x)?, &field(&jwk.y)?),
        "OKP" => DecodingKey::from_ed_components(&field(&jwk.x)?),
        "RSA" => DecodingKey::from_rsa_components(&field(&jwk.n)?, &field(&jwk.e)?),
        other => return Err(format!("unsupported key type {other}")),
    }
    .map_err(|e| e.to_string())
}

/// The key that signs a tenant's new tokens.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub key: EncodingKey,
}

/// A key that verifies a tenant's tokens.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Everything about one tenant's keys that a request needs.
pub struct TenantKeys {
    pub signing: Option<SigningKey>,
    pub verifying: HashMap<String, VerifyingKey>,
    pub jwks: Vec<Jwk>,
    loaded_at: Instant,
    /// The cache must be re-read by then: its TTL, or the next time a key
    /// starts or stops signing.
    valid_until: Instant,
    /// Names this set's verdicts in the ring's memory of verified tokens.
    /// A reload that keeps every verifying key keeps the generation (and so
    /// the verdicts); a set that lost a key, or that follows a key change
    /// announced by any instance, starts a new one.
    generation: u64,
}

/// Publishes a new key at once; it signs from `now + delay`. The tenant's
/// current keys sign until then and stay published until every token they
/// signed has expired (`max_token_life` after they stop signing, plus the
/// cache TTL of other instances). Runs in the caller's transaction.
pub fn rotate(
    conn: &mut DbConnection,
    master: &MasterKey,
    tenant: &str,
    alg: SigningAlg,
    delay: chrono::Duration,
    max_token_life: chrono::Duration,
) -> Result<String, StoreError> {
    lock_tenant_keys(conn, tenant)?;
    let activates = crate::store::db::now() + delay;
    let cache = chrono::Duration::seconds(CACHE_TTL.as_secs() as i64);
    key_rows::retire_active(conn, tenant, activates, activates + cache + max_token_life)?;
    create_key(conn, master, tenant, alg, activates)
}

/// Serialises key rotations of one tenant across instances.
pub fn lock_tenant_keys(conn: &mut DbConnection, tenant: &str) -> Result<(), StoreError> {
    key_rows::lock_tenant(conn, tenant)
}

/// Creates a new key for the tenant inside the caller's transaction.
pub fn create_key(
    conn: &mut DbConnection,
    master: &MasterKey,
    tenant: &str,
    alg: SigningAlg,
    activates_at: NaiveDateTime,
) -> Result<String, StoreError> {
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let (der, jwk) = generate(alg, &kid).map_err(|e| StoreError::other(anyhow::anyhow!(e)))?;
    let sealed = master
        .seal(&der, &kid)
        .map_err(|e| StoreError::other(anyhow::anyhow!(e)))?;
    key_rows::insert(
        conn,
        &KeyRow {
            kid: kid.clone(),
            tenant: tenant.to_owned(),
            alg: alg.as_str().to_owned(),
            private_key: sealed,
            public_jwk: serde_json::to_string(&jwk).map_err(StoreError::other)?,
            status: "active".to_owned(),
            created_at: crate::store::db::now(),
            activates_at,
            retired_at: None,
            expires_at: None,
        },
    )?;
    Ok(kid)
}

/// How long a tenant's keys are trusted from cache before being re-read.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// An unknown `kid` may trigger a re-read at most this often per tenant.
const MISS_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The cache of every tenant's keys.
pub struct KeyRing {
    db: Db,
    master: MasterKey,
    /// Bounded: a token naming a tenant that does not exist costs one
    /// lookup per cache lifetime, never an entry that stays.
    cache: crate::cache::Cached<String, Arc<TenantKeys>>,
    /// Access tokens a key set verified, by (the set's generation, SHA-256
    /// of the whole token): a client presents its token many times, and a
    /// remembered one needs its time checks only. Only verified tokens
    /// enter, at most `VERIFIED_CAPACITY` in all.
    verified: moka::future::Cache<(u64, [u8; 32]), Arc<crate::authn::tokens::AccessClaims>>,
    generations: std::sync::atomic::AtomicU64,
}

/// Verified access tokens one instance remembers at most, and for how long
/// at most (a token's own `exp` is checked on every use).
const VERIFIED_CAPACITY: u64 = 50_000;
const VERIFIED_TTL: Duration = Duration::from_secs(300);

/// Tenants whose keys one instance holds at most.
const KEY_CACHE_CAPACITY: u64 = 10_000;

impl KeyRing {
    pub fn new(db: Db, master: MasterKey) -> Self {
        Self {
            db,
            master,
            cache: crate::cache::Cached::new(KEY_CACHE_CAPACITY, CACHE_TTL),
            verified: moka::future::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
            generations: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The claims of a token `keys` verified before (by SHA-256 of the
    /// whole token), if remembered. Time-dependent checks are the caller's.
    pub async fn verified(
        &self,
        keys: &TenantKeys,
        digest: &[u8; 32],
    ) -> Option<Arc<crate::authn::tokens::AccessClaims>> {
        self.verified.get(&(keys.generation, *digest)).await
    }

    /// Remembers that `keys` verified the token with this SHA-256.
    pub async fn remember(
        &self,
        keys: &TenantKeys,
        digest: [u8; 32],
        claims: Arc<crate::authn::tokens::AccessClaims>,
    ) {
        self.verified
            .insert((keys.generation, digest), claims)
            .await;
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The tenant's keys, from cache while fresh (one load at a time).
    pub async fn keys(&self, tenant: &str) -> Result<Arc<TenantKeys>, StoreError> {
        let key = tenant.to_owned();
        let keys = self
            .cache
            .get_or_load(&key, || self.load(tenant, None))
            .await?;
        if Instant::now() < keys.valid_until {
            return Ok(keys);
        }
        self.reload(tenant, &keys).await
    }

    /// The tenant's keys, re-read if `kid` is unknown and the last read is not too recent.
    pub async fn keys_with(&self, tenant: &str, kid: &str) -> Result<Arc<TenantKeys>, StoreError> {
        let keys = self.keys(tenant).await?;
        if keys.verifying.contains_key(kid) || keys.loaded_at.elapsed() < MISS_RELOAD_INTERVAL {
            return Ok(keys);
        }
        self.reload(tenant, &keys).await
    }

    /// How many tenants' keys this instance holds (approximate).
    pub async fn cached_tenants(&self) -> u64 {
        self.cache.settled_len().await
    }

    /// Drops the cached keys of a tenant (after a rotation or deletion).
    pub fn forget(&self, tenant: &str) {
        self.cache.invalidate(&tenant.to_owned());
    }

    /// Drops every cached key set.
    pub fn forget_all(&self) {
        self.cache.invalidate_all();
    }

    /// Reads the tenant's keys again now.
    async fn reload(
        &self,
        tenant: &str,
        previous: &TenantKeys,
    ) -> Result<Arc<TenantKeys>, StoreError> {
        self.forget(tenant);
        let key = tenant.to_owned();
        self.cache
            .get_or_load(&key, || self.load(tenant, Some(previous)))
            .await
    }

    /// Reads the tenant's keys. The set keeps `previous`'s generation when
    /// it still holds every key `previous` verified with.
    async fn load(
        &self,
        tenant: &str,
        previous: Option<&TenantKeys>,
    ) -> Result<Arc<TenantKeys>, StoreError> {
        let tenant_owned = tenant.to_owned();
        let now = crate::store::db::now();
        let rows = self
            .db
            .run(move |c| key_rows::usable(c, &tenant_owned, now))
            .await?;
        // Every tenant has a key from its creation on: none means no such
        // tenant, and that is not cached (a caller could name any).
        if rows.is_empty() {
            return Err(StoreError::NotFound("tenant keys"));
        }
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let mut signing = None;
        // The signer: the most recently activated key not yet retired.
        let signer = rows
            .iter()
            .filter(|r| r.activates_at <= now && r.retired_at.is_none_or(|t| t > now))
            .max_by_key(|r| (r.activates_at, r.created_at))
            .map(|r| r.kid.clone());
        let next_event = rows
            .iter()
            .flat_map(|r| [Some(r.activates_at), r.retired_at])
            .flatten()
            .filter(|t| *t > now)
            .min();
        let mut valid_until = Instant::now() + CACHE_TTL;
        if let Some(next) = next_event
            && let Ok(wait) = (next - now).to_std()
        {
            valid_until = valid_until.min(Instant::now() + wait);
        }
        for row in &rows {
            let Some(alg) = SigningAlg::parse(&row.alg) else {
                continue;
            };
            let jwk: Jwk = serde_json::from_str(&row.public_jwk).map_err(StoreError::other)?;
            let key = decoding_key(&jwk).map_err(|e| StoreError::other(anyhow::anyhow!(e)))?;
            verifying.insert(
                row.kid.clone(),
                VerifyingKey {
                    alg: jwt_alg(alg),
                    key,
                },
            );
            jwks.push(jwk);
            if signer.as_deref() == Some(row.kid.as_str()) {
                let der = self
                    .master
                    .open(&row.private_key, &row.kid)
                    .map_err(|e| StoreError::other(anyhow::anyhow!(e)))?;
                signing = Some(SigningKey {
                    kid: row.kid.clone(),
                    alg: jwt_alg(alg),
                    key: encoding_key(alg, &der)
                        .map_err(|e| StoreError::other(anyhow::anyhow!(e)))?,
                });
            }
        }
        let generation = match previous {
            Some(p) if p.verifying.keys().all(|kid| verifying.contains_key(kid)) => p.generation,
            _ => {
                self.generations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1
            }
        };
        let keys = Arc::new(TenantKeys {
            signing,
            verifying,
            jwks,
            loaded_at: Instant::now(),
            valid_until,
            generation,
        });
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::{MasterKey, SigningAlg, decoding_key, encoding_key, generate};
    use jsonwebtoken::{Algorithm, Header, Validation, decode, encode};

    #[test]
    fn sealed_keys_open_only_with_the_same_key_and_context() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"private", "kid-1").expect("seal");
        assert_eq!(k.open(&sealed, "kid-1").expect("open"), b"private");
        assert!(k.open(&sealed, "kid-2").is_err());
        assert!(MasterKey::generate().open(&sealed, "kid-1").is_err());
    }

    #[test]
    fn master_key_accepts_hex_and_base64_of_32_bytes_only() {
        assert!(MasterKey::parse(&"ab".repeat(32)).is_ok());
        assert!(MasterKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(MasterKey::parse("AAAA").is_err());
    }

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_jwk() {
        for (alg, jwt) in [
            (SigningAlg::ES256, Algorithm::ES256),
            (SigningAlg::EdDSA, Algorithm::EdDSA),
            (SigningAlg::RS256, Algorithm::RS256),
        ] {
            let (der, jwk) = generate(alg, "k").expect("generate");
            let enc = encoding_key(alg, &der).expect("encoding key");
            let dec = decoding_key(&jwk).expect("decoding key");
            let claims = serde_json::json!({"sub": "x", "exp": 4_000_000_000u64});
            let token = encode(&Header::new(jwt), &claims, &enc).expect("sign");
            let mut v = Validation::new(jwt);
            v.validate_aud = false;
            decode::<serde_json::Value>(&token, &dec, &v).expect("verify");
        }
    }
}
