//! Verifying latchkey access tokens in a tenant application (SPEC §4, §10;
//! RFC 9068 §4, RFC 7519 §7.2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::RwLock;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{AuthError, DiscoveryError};
use crate::tokens::{ClientCredentials, TokenError, TokenManager};

/// Longest token accepted (bytes); anything longer is not one of latchkey's.
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// A token naming an unknown `kid` refetches the JWKS at most this often.
pub const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// The JWKS `max-age` is honoured within these bounds.
const MIN_JWKS_AGE: Duration = Duration::from_secs(10);
const MAX_JWKS_AGE: Duration = Duration::from_secs(24 * 3600);
/// `max-age` when the JWKS answer names none.
const DEFAULT_JWKS_AGE: Duration = Duration::from_secs(300);

/// The claims of a latchkey access token (SPEC §4, RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The issuer: `{public_url}/tenants/{t}`.
    pub iss: String,
    /// The user id, or `client:{client_id}` for a client_credentials token.
    pub sub: String,
    /// The audiences: the issuing client's `audience` list, else its client_id.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// The client the token was issued to.
    #[serde(default)]
    pub azp: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Not before, Unix seconds.
    #[serde(default)]
    pub nbf: u64,
    /// The token's unique id.
    #[serde(default)]
    pub jti: String,
    /// The tenant slug.
    #[serde(default)]
    pub tid: String,
    /// The session id; absent for client_credentials tokens.
    #[serde(default)]
    pub sid: Option<String>,
    /// Space-separated OAuth scopes (RFC 6749 §3.3).
    #[serde(default)]
    pub scope: Option<String>,
    /// The subject's role names in this tenant.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Claims {
    /// Whether the token holds role `role` in its tenant.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The OAuth scopes of the token.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }

    /// Whether the token was granted OAuth scope `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }

    /// The user id, or `None` for a client_credentials token.
    pub fn user_id(&self) -> Option<&str> {
        (!self.sub.starts_with("client:")).then_some(self.sub.as_str())
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(list) => list,
    })
}

/// Verifies latchkey access tokens for one tenant and one audience.
///
/// Built from the tenant's issuer URL: discovery, then `jwks_uri`. The JWKS
/// is cached for its `Cache-Control: max-age` (between 10 s and a day); a
/// token naming a `kid` the cache lacks refetches it at most once per
/// [`UNKNOWN_KID_REFETCH_INTERVAL`] (10 s), so forged `kid`s cannot make the
/// verifier call latchkey more often, and a rotated key is picked up
/// without a restart. The algorithm is pinned to the key; `typ` must be
/// `at+jwt`, `iss` the issuer, `aud` hold the configured audience, and
/// `exp`/`nbf` hold within the leeway.
///
/// In revocation-aware mode ([`VerifierBuilder::revocation_check`]) every
/// locally valid token is also asked about at `/oauth/introspect`, and an
/// `active` answer is remembered for at most the configured time: a logout
/// is honoured within it.
///
/// Cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use latchkey_client::Verifier;
/// let verifier = Verifier::builder("https://id.example.com/tenants/acme", "orders-api")
///     .build()
///     .await?;
/// let claims = verifier.verify("eyJ…").await?;
/// println!("{} holds {:?}", claims.sub, claims.roles);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    realm: String,
    audience: Vec<String>,
    leeway: u64,
    http: reqwest::Client,
    jwks_uri: String,
    keys: RwLock<KeySet>,
    /// Serializes JWKS fetches: one in flight, the rest wait for its result.
    fetching: Arc<tokio::sync::Mutex<()>>,
    introspection: Option<Introspection>,
    authz: Option<Authz>,
    /// SHA-256 of a token that verified → its `kid` and claims: a token
    /// seen before skips the signature check (its bytes are the same), as
    /// long as its key is still published; times and revocation are
    /// checked on every call.
    verified: moka::future::Cache<[u8; 32], Arc<(String, Claims)>>,
}

/// How long a verified token is remembered at most.
const VERIFIED_TTL: Duration = Duration::from_secs(300);

struct KeySet {
    keys: HashMap<String, Key>,
    expires: Instant,
    /// When the verifier last refetched the JWKS (not counting the first
    /// read at build): an unknown `kid` refetches only 10 s after it.
    last_fetch: Option<Instant>,
}

/// A verification key of the JWKS, parsed once.
struct Key {
    public: ParsedPublicKey,
    alg: Alg,
}

/// The JWS algorithms a key may verify (RFC 7518 §3.1, RFC 8037 §3.1);
/// `none` and the HMAC family are not among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Es256,
    Es384,
    EdDsa,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            _ => return None,
        })
    }

    fn rsa_parameters(self) -> Option<&'static sig::RsaParameters> {
        Some(match self {
            Alg::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Alg::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

struct Introspection {
    endpoint: String,
    client_id: String,
    client_secret: String,
    /// `jti` → whether latchkey answered `active`.
    answers: moka::future::Cache<String, bool>,
}

struct Authz {
    endpoint: String,
    service: TokenManager,
    /// (sub, resource, action) → allowed.
    answers: moka::future::Cache<(String, String, String), bool>,
}

/// Configures a [`Verifier`]; see [`Verifier::builder`].
pub struct VerifierBuilder {
    issuer: String,
    audience: Vec<String>,
    leeway: u64,
    http: Option<reqwest::Client>,
    realm: Option<String>,
    client: Option<(String, String)>,
    revocation_ttl: Option<Duration>,
    authz_ttl: Duration,
    cache_capacity: u64,
}

impl VerifierBuilder {
    /// Accepts tokens whose `aud` holds `audience` too (besides the first).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// Clock leeway for `exp` and `nbf`, in seconds (default 30, as latchkey).
    pub fn leeway_seconds(mut self, seconds: u64) -> Self {
        self.leeway = seconds;
        self
    }

    /// The HTTP client to reach latchkey with (default: a new one, 10 s timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The `realm` of `WWW-Authenticate` challenges (default: the tenant
    /// slug of the issuer).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The application's confidential client (RFC 6749 §2.3.1): needed for
    /// [`Self::revocation_check`] (`/oauth/introspect`) and for permission
    /// decisions through `/authz/check` (a client_credentials token). The
    /// client learns only about tokens whose `aud` holds its client_id or
    /// one of its `audience` values (RFC 7662 §4).
    pub fn client(mut self, client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.client = Some((client_id.into(), secret.into()));
        self
    }

    /// Revocation-aware mode: after the local checks, ask `/oauth/introspect`
    /// and remember an answer for at most `ttl`, so a logout is honoured
    /// within `ttl`. Needs [`Self::client`].
    pub fn revocation_check(mut self, ttl: Duration) -> Self {
        self.revocation_ttl = Some(ttl);
        self
    }

    /// How long an `/authz/check` decision is remembered (default 5 s).
    pub fn authz_cache(mut self, ttl: Duration) -> Self {
        self.authz_ttl = ttl;
        self
    }

    /// How many introspection answers and decisions each cache holds at most
    /// (default 10,000); the least used go first.
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Reads discovery and the JWKS.
    ///
    /// # Errors
    /// [`DiscoveryError`] when the issuer is not a URL, latchkey cannot be
    /// reached, discovery names another issuer, or a document is not JSON.
    pub async fn build(self) -> Result<Verifier, DiscoveryError> {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(DiscoveryError::Issuer(issuer));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| DiscoveryError::Http {
                    what: "HTTP client",
                    cause: e.to_string(),
                })?,
        };
        let discovery: Discovery =
            get_json(&http, &format!("{issuer}/.well-known/openid-configuration"))
                .await
                .map_err(|cause| DiscoveryError::Http {
                    what: "discovery",
                    cause,
                })?;
        if discovery.issuer != issuer {
            return Err(DiscoveryError::IssuerMismatch {
                expected: issuer,
                found: discovery.issuer,
            });
        }
        let (keys, max_age) = fetch_jwks(&http, &discovery.jwks_uri)
            .await
            .map_err(|cause| DiscoveryError::Http {
                what: "JWKS",
                cause,
            })?;
        let realm = self.realm.unwrap_or_else(|| {
            issuer
                .rsplit_once("/tenants/")
                .map(|(_, t)| t.to_owned())
                .unwrap_or_else(|| "latchkey".to_owned())
        });
        let capacity = self.cache_capacity;
        let introspection = match (&self.client, self.revocation_ttl) {
            (Some((id, secret)), Some(ttl)) => Some(Introspection {
                endpoint: discovery
                    .introspection_endpoint
                    .clone()
                    .unwrap_or_else(|| format!("{issuer}/oauth/introspect")),
                client_id: id.clone(),
                client_secret: secret.clone(),
                answers: moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(ttl)
                    .build(),
            }),
            (None, Some(_)) => {
                return Err(DiscoveryError::Http {
                    what: "revocation check",
                    cause: "needs the application's confidential client (VerifierBuilder::client)"
                        .to_owned(),
                });
            }
            _ => None,
        };
        let authz = self.client.map(|(id, secret)| Authz {
            endpoint: format!("{issuer}/authz/check"),
            service: TokenManager::builder(&issuer, id)
                .token_endpoint(discovery.token_endpoint.clone())
                .http_client(http.clone())
                .client_credentials(ClientCredentials::new(secret))
                .build(),
            answers: moka::future::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(self.authz_ttl)
                .build(),
        });
        Ok(Verifier {
            inner: Arc::new(Inner {
                issuer,
                realm,
                audience: self.audience,
                leeway: self.leeway,
                http,
                jwks_uri: discovery.jwks_uri,
                keys: RwLock::new(KeySet {
                    keys,
                    expires: Instant::now() + max_age,
                    last_fetch: None,
                }),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
                introspection,
                authz,
                verified: moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(VERIFIED_TTL)
                    .build(),
            }),
        })
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    #[serde(default)]
    introspection_endpoint: Option<String>,
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let res = http.get(url).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("GET {url} answered {}", res.status()));
    }
    res.json().await.map_err(|e| e.to_string())
}

/// Fetches and parses a JWKS; returns the usable keys and the `max-age`.
async fn fetch_jwks(
    http: &reqwest::Client,
    uri: &str,
) -> Result<(HashMap<String, Key>, Duration), String> {
    let res = http.get(uri).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("GET {uri} answered {}", res.status()));
    }
    let max_age = res
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age_of)
        .unwrap_or(DEFAULT_JWKS_AGE)
        .clamp(MIN_JWKS_AGE, MAX_JWKS_AGE);
    let set: JwkSet = res.json().await.map_err(|e| e.to_string())?;
    let keys = set.keys.iter().filter_map(key_of).collect();
    Ok((keys, max_age))
}

/// `max-age` of a `Cache-Control` value (RFC 9111 §5.2.2.1).
fn max_age_of(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

/// A JWKS (RFC 7517 §5), as far as verification needs it.
#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

/// A public JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field.as_deref()?).ok()
}

/// The key of a JWK with its algorithm: its `alg`, else the one its key
/// type implies; a key for encryption, a symmetric key, or an `alg` that
/// does not fit the key type is skipped.
fn key_of(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.kid.clone().filter(|k| !k.is_empty())?;
    if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    let crv = jwk.crv.as_deref().unwrap_or_default();
    let implied = match (jwk.kty.as_str(), crv) {
        ("EC", "P-256") => Alg::Es256,
        ("EC", "P-384") => Alg::Es384,
        ("OKP", "Ed25519") => Alg::EdDsa,
        ("RSA", _) => Alg::Rs256,
        _ => return None,
    };
    let alg = match jwk.alg.as_deref() {
        None => implied,
        Some(name) => Alg::parse(name)?,
    };
    let public = match (jwk.kty.as_str(), alg) {
        ("EC", Alg::Es256 | Alg::Es384) if alg == implied => {
            let (x, y) = (b64(&jwk.x)?, b64(&jwk.y)?);
            let size = if alg == Alg::Es256 { 32 } else { 48 };
            if x.len() != size || y.len() != size {
                return None;
            }
            let point = [&[4u8][..], &x, &y].concat();
            let algorithm = if alg == Alg::Es256 {
                &sig::ECDSA_P256_SHA256_FIXED
            } else {
                &sig::ECDSA_P384_SHA384_FIXED
            };
            ParsedPublicKey::new(algorithm, point).ok()?
        }
        ("OKP", Alg::EdDsa) => ParsedPublicKey::new(&sig::ED25519, b64(&jwk.x)?).ok()?,
        ("RSA", rsa) => {
            let parameters = rsa.rsa_parameters()?;
            let (n, e) = (b64(&jwk.n)?, b64(&jwk.e)?);
            let strip = |v: &[u8]| v.iter().position(|b| *b != 0).map(|i| v[i..].to_vec());
            let components = RsaPublicKeyComponents {
                n: strip(&n)?,
                e: strip(&e)?,
            };
            components.to_parsed_public_key(parameters).ok()?
        }
        _ => return None,
    };
    Some((kid, Key { public, alg }))
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    jku: Option<serde_json::Value>,
    #[serde(default)]
    x5u: Option<serde_json::Value>,
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    #[serde(default)]
    x5c: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn malformed(detail: &str) -> AuthError {
    AuthError::TokenMalformed(detail.to_owned())
}

fn invalid(detail: &str) -> AuthError {
    AuthError::TokenInvalid(detail.to_owned())
}

impl Verifier {
    /// Starts configuring a verifier for tokens of the tenant whose issuer
    /// is `issuer` (`{public_url}/tenants/{t}`) meant for `audience` (the
    /// application's client_id or API identifier).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: vec![audience.into()],
            leeway: 30,
            http: None,
            realm: None,
            client: None,
            revocation_ttl: None,
            authz_ttl: Duration::from_secs(5),
            cache_capacity: 10_000,
        }
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `realm` of this verifier's `WWW-Authenticate` challenges.
    pub fn realm(&self) -> &str {
        &self.inner.realm
    }

    /// Verifies `token` (the bare JWT, without `Bearer `).
    ///
    /// # Errors
    /// An [`AuthError`] with latchkey's code: `token_malformed` (not a JWS
    /// compact token), `token_invalid` (signature, `alg` other than the
    /// key's, `none`/HMAC, unknown `kid`, `typ` not `at+jwt`, headers naming
    /// keys elsewhere), `token_expired`, `token_not_yet_valid`,
    /// `token_wrong_audience` (another tenant's `iss`, or an `aud` without
    /// this audience); in revocation-aware mode `session_revoked`, and
    /// `store_unavailable` when latchkey cannot be asked (fail closed).
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = self.verify_locally(token).await?;
        if let Some(introspection) = &self.inner.introspection {
            self.check_active(introspection, token, &claims).await?;
        }
        Ok(claims)
    }

    async fn verify_locally(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(malformed("The access token is empty"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("The access token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("The access token is not a JWS compact token"));
        };
        let base64url = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(base64url(header) && base64url(payload) && base64url(signature)) {
            return Err(malformed("The access token is not a JWS compact token"));
        }
        let digest: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some(seen) = self.inner.verified.get(&digest).await
            && self.inner.keys.read().keys.contains_key(&seen.0)
        {
            return self.check_claims(seen.1.clone());
        }
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header: Header = decode_part(header)
            .ok_or_else(|| malformed("The token header is not base64url JSON"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| malformed("The token payload is not base64url JSON"))?;
        let claims: Claims = serde_json::from_slice(&payload).map_err(|_| {
            match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&payload) {
                Ok(_) => invalid("The token claims are not valid"),
                Err(_) => malformed("The token payload is not base64url JSON"),
            }
        })?;
        if signature.is_empty() {
            return Err(invalid("The token has no signature"));
        }
        let alg = Alg::parse(&header.alg)
            .ok_or_else(|| invalid("The token algorithm is not accepted"))?;
        let typ = header.typ.as_deref().unwrap_or_default();
        if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
            return Err(invalid("The token is not an access token"));
        }
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(invalid("The token header names keys elsewhere"));
        }
        // Another tenant's token: refused before its `kid` could make the
        // verifier fetch anything.
        if claims.iss != self.inner.issuer {
            return Err(AuthError::TokenWrongAudience(
                "The access token was issued by another tenant".to_owned(),
            ));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| invalid("The token names no known key"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| invalid("The token signature is not valid"))?;
        self.refresh_keys_if_stale();
        let checked = match self.check_signature(signing_input, &signature, &kid, alg) {
            Some(checked) => checked,
            None if self.refetch_for_unknown_kid(&kid).await => self
                .check_signature(signing_input, &signature, &kid, alg)
                .unwrap_or_else(|| Err(invalid("The token names no known key"))),
            None => Err(invalid("The token names no known key")),
        };
        checked?;
        let claims = self.check_claims(claims)?;
        self.inner
            .verified
            .insert(digest, Arc::new((kid, claims.clone())))
            .await;
        Ok(claims)
    }

    /// Checks the signature with the cached key `kid` (its algorithm, never
    /// the token's choice); `None` when there is no such key.
    fn check_signature(
        &self,
        signing_input: &str,
        signature: &[u8],
        kid: &str,
        alg: Alg,
    ) -> Option<Result<(), AuthError>> {
        let keys = self.inner.keys.read();
        let key = keys.keys.get(kid)?;
        if key.alg != alg {
            return Some(Err(invalid("The token algorithm does not match its key")));
        }
        Some(
            key.public
                .verify_sig(signing_input.as_bytes(), signature)
                .map_err(|_| invalid("The token signature is not valid")),
        )
    }

    /// `exp` and `nbf` with the leeway (RFC 7519 §4.1.4–5), then `aud`
    /// (RFC 9068 §4).
    fn check_claims(&self, claims: Claims) -> Result<Claims, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let leeway = self.inner.leeway;
        if claims.exp.saturating_add(leeway) < now {
            return Err(AuthError::TokenExpired);
        }
        if claims.nbf > now.saturating_add(leeway) {
            return Err(AuthError::TokenNotYetValid);
        }
        if claims.sub.is_empty() {
            return Err(invalid("The token claims are not valid"));
        }
        if !claims.aud.iter().any(|a| self.inner.audience.contains(a)) {
            return Err(AuthError::TokenWrongAudience(
                "The access token is meant for another audience".to_owned(),
            ));
        }
        Ok(claims)
    }

    /// Once the JWKS's `max-age` has passed, refetches it in the
    /// background (one fetch at a time) while requests go on with the keys
    /// held: verification never waits for latchkey unless a `kid` is unknown.
    fn refresh_keys_if_stale(&self) {
        if self.inner.keys.read().expires > Instant::now() {
            return;
        }
        let Ok(fetching) = self.inner.fetching.clone().try_lock_owned() else {
            return; // a fetch is under way
        };
        let verifier = self.clone();
        tokio::spawn(async move {
            let _fetching = fetching;
            if verifier.inner.keys.read().expires <= Instant::now() {
                verifier.fetch_keys().await;
            }
        });
    }

    /// Fetches the JWKS for an unknown `kid`, unless the verifier fetched
    /// it in the last [`UNKNOWN_KID_REFETCH_INTERVAL`] (for any reason).
    /// Returns whether `kid` is known afterwards.
    async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        let _fetching = self.inner.fetching.lock().await;
        {
            let keys = self.inner.keys.read();
            if keys.keys.contains_key(kid) {
                return true;
            }
            if keys
                .last_fetch
                .is_some_and(|at| at.elapsed() < UNKNOWN_KID_REFETCH_INTERVAL)
            {
                return false;
            }
        }
        self.fetch_keys().await;
        self.inner.keys.read().keys.contains_key(kid)
    }

    /// One JWKS fetch; the caller holds `fetching`. On failure the keys
    /// held stay, for at least [`MIN_JWKS_AGE`] more.
    async fn fetch_keys(&self) {
        self.inner.keys.write().last_fetch = Some(Instant::now());
        match fetch_jwks(&self.inner.http, &self.inner.jwks_uri).await {
            Ok((keys, max_age)) => {
                let mut set = self.inner.keys.write();
                set.keys = keys;
                set.expires = Instant::now() + max_age;
            }
            Err(cause) => {
                tracing::warn!(%cause, jwks_uri = %self.inner.jwks_uri, "JWKS refresh failed; keeping the keys held");
                let mut set = self.inner.keys.write();
                set.expires = set.expires.max(Instant::now() + MIN_JWKS_AGE);
            }
        }
    }

    /// Revocation-aware mode: asks `/oauth/introspect` (RFC 7662) unless an
    /// answer for this `jti` is remembered.
    async fn check_active(
        &self,
        introspection: &Introspection,
        token: &str,
        claims: &Claims,
    ) -> Result<(), AuthError> {
        let key = if claims.jti.is_empty() {
            hex_digest(token)
        } else {
            claims.jti.clone()
        };
        let active = introspection
            .answers
            .try_get_with(key, async {
                #[derive(Deserialize)]
                struct Answer {
                    active: bool,
                }
                let res = self
                    .inner
                    .http
                    .post(&introspection.endpoint)
                    .basic_auth(
                        form_encode(&introspection.client_id),
                        Some(form_encode(&introspection.client_secret)),
                    )
                    .form(&[("token", token), ("token_type_hint", "access_token")])
                    .send()
                    .await
                    .map_err(|e| AuthError::Unavailable(format!("introspection: {e}")))?;
                if !res.status().is_success() {
                    return Err(refused("introspection", res.status().as_u16()));
                }
                let answer: Answer = res
                    .json()
                    .await
                    .map_err(|e| AuthError::Unavailable(format!("introspection: {e}")))?;
                Ok::<bool, AuthError>(answer.active)
            })
            .await
            .map_err(|e: Arc<AuthError>| (*e).clone())?;
        if active {
            Ok(())
        } else {
            Err(AuthError::SessionRevoked)
        }
    }

    /// Asks latchkey's `/authz/check` whether the subject of `claims` may do
    /// `action` on `resource` in this tenant (SPEC §6), as the application's
    /// confidential client; decisions are remembered for the configured
    /// time ([`VerifierBuilder::authz_cache`]).
    ///
    /// # Errors
    /// `store_unavailable` when latchkey cannot be asked, or when the
    /// verifier has no client ([`VerifierBuilder::client`]).
    pub async fn is_allowed(
        &self,
        claims: &Claims,
        resource: &str,
        action: &str,
    ) -> Result<bool, AuthError> {
        let Some(authz) = &self.inner.authz else {
            tracing::error!(
                "a permission check needs the application's client (VerifierBuilder::client)"
            );
            return Err(AuthError::Internal(
                "permission checks need the application's client".to_owned(),
            ));
        };
        let key = (claims.sub.clone(), resource.to_owned(), action.to_owned());
        authz
            .answers
            .try_get_with(key, async {
                #[derive(Deserialize)]
                struct Decision {
                    allowed: bool,
                }
                let body = serde_json::json!({
                    "subject": claims.sub,
                    "resource": resource,
                    "action": action,
                });
                let res = authz
                    .service
                    .send(self.inner.http.post(&authz.endpoint).json(&body))
                    .await
                    .map_err(|e| match e {
                        TokenError::Http(e) => AuthError::Unavailable(format!("authz/check: {e}")),
                        TokenError::Refused { status, .. } if status == 429 || status >= 500 => {
                            AuthError::Unavailable(format!("authz/check: {e}"))
                        }
                        other => {
                            tracing::error!(error = %other, "the application's client cannot get a token for /authz/check");
                            AuthError::Internal(format!("authz/check: {other}"))
                        }
                    })?;
                if !res.status().is_success() {
                    return Err(refused("authz/check", res.status().as_u16()));
                }
                let decision: Decision = res
                    .json()
                    .await
                    .map_err(|e| AuthError::Unavailable(format!("authz/check: {e}")))?;
                Ok::<bool, AuthError>(decision.allowed)
            })
            .await
            .map_err(|e: Arc<AuthError>| (*e).clone())
    }

    /// Requires `role` among the token's roles.
    ///
    /// # Errors
    /// 403 `forbidden` when the role is missing.
    pub fn require_role(&self, claims: &Claims, role: &str) -> Result<(), AuthError> {
        if claims.has_role(role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "This needs the role {role} in this tenant"
            )))
        }
    }

    /// Requires OAuth scope `scope` (RFC 6750 §3.1).
    ///
    /// # Errors
    /// 403 `insufficient_scope` naming the scope.
    pub fn require_scope(&self, claims: &Claims, scope: &str) -> Result<(), AuthError> {
        if claims.has_scope(scope) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope(scope.to_owned()))
        }
    }

    /// Requires latchkey's `/authz/check` to allow `action` on `resource`.
    ///
    /// # Errors
    /// 403 `forbidden` when denied; `store_unavailable` when it cannot be asked.
    pub async fn require_permission(
        &self,
        claims: &Claims,
        resource: &str,
        action: &str,
    ) -> Result<(), AuthError> {
        if self.is_allowed(claims, resource, action).await? {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "This needs the permission {resource}:{action}"
            )))
        }
    }
}

/// What a non-2xx answer of latchkey to the application's own request
/// (`what`: introspection, `/authz/check`) means: 429 and 5xx pass, so 503
/// `store_unavailable`; anything else refuses the application itself, a
/// misconfiguration: 500 `internal`, logged.
fn refused(what: &str, status: u16) -> AuthError {
    if status == 429 || status >= 500 {
        return AuthError::Unavailable(format!("{what} answered {status}"));
    }
    tracing::error!(status, what, "latchkey refused the application's request");
    AuthError::Internal(format!("{what} answered {status}"))
}

/// `application/x-www-form-urlencoded` encoding of a client credential, as
/// RFC 6749 §2.3.1 asks before HTTP Basic.
pub(crate) fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn hex_digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
