//! Verifying latchkey access tokens in a tenant application (SPEC §4, §10;
//! RFC 9068 §4, RFC 7519 §7.2).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use parking_lot::RwLock;
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{AuthError, DiscoveryError};
use crate::tokens::{ClientCredentials, TokenManager};

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
    fetching: tokio::sync::Mutex<()>,
    introspection: Option<Introspection>,
    authz: Option<Authz>,
}

struct KeySet {
    keys: HashMap<String, Key>,
    expires: Instant,
    /// When a token's unknown `kid` last made the verifier fetch.
    unknown_kid_fetch: Option<Instant>,
}

struct Key {
    key: DecodingKey,
    alg: Algorithm,
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
                    unknown_kid_fetch: None,
                }),
                fetching: tokio::sync::Mutex::new(()),
                introspection,
                authz,
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
    let keys = set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let alg = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, Key { key, alg }))
        })
        .collect();
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

/// The algorithm a JWK verifies: its `alg`, else what its key type implies.
/// Symmetric keys never verify (an `oct` key in a JWKS is ignored).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::HS256 | KeyAlgorithm::HS384 | KeyAlgorithm::HS512) => None,
        Some(named) => {
            let alg = Algorithm::try_from(named).ok()?;
            // The named algorithm must fit the key's type.
            let fits = matches!(
                (&jwk.algorithm, alg),
                (
                    AlgorithmParameters::EllipticCurve(_),
                    Algorithm::ES256 | Algorithm::ES384
                ) | (AlgorithmParameters::OctetKeyPair(_), Algorithm::EdDSA)
                    | (
                        AlgorithmParameters::RSA(_),
                        Algorithm::RS256
                            | Algorithm::RS384
                            | Algorithm::RS512
                            | Algorithm::PS256
                            | Algorithm::PS384
                            | Algorithm::PS512
                    )
            );
            fits.then_some(alg)
        }
    }
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

#[derive(Deserialize)]
struct Issuer {
    #[serde(default)]
    iss: serde_json::Value,
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
        let header: Header = decode_part(header)
            .ok_or_else(|| malformed("The token header is not base64url JSON"))?;
        let issuer: Issuer = decode_part(payload)
            .ok_or_else(|| malformed("The token payload is not base64url JSON"))?;
        if signature.is_empty() {
            return Err(invalid("The token has no signature"));
        }
        let alg: Algorithm = match header.alg.as_str() {
            "ES256" | "ES384" | "EdDSA" | "RS256" | "RS384" | "RS512" | "PS256" | "PS384"
            | "PS512" => header
                .alg
                .parse()
                .map_err(|_| invalid("The token algorithm is not accepted"))?,
            _ => return Err(invalid("The token algorithm is not accepted")),
        };
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
        if issuer.iss.as_str() != Some(self.inner.issuer.as_str()) {
            return Err(AuthError::TokenWrongAudience(
                "The access token was issued by another tenant".to_owned(),
            ));
        }
        let kid = header
            .kid
            .filter(|k| !k.is_empty() && k.len() <= 128)
            .ok_or_else(|| invalid("The token names no known key"))?;
        self.refresh_keys_if_stale().await;
        let verified = self.verify_with_key(token, &kid, alg);
        match verified {
            Some(result) => result,
            None => {
                if self.refetch_for_unknown_kid(&kid).await {
                    self.verify_with_key(token, &kid, alg)
                        .unwrap_or_else(|| Err(invalid("The token names no known key")))
                } else {
                    Err(invalid("The token names no known key"))
                }
            }
        }
    }

    /// Verifies with the cached key `kid`, or `None` when there is none.
    fn verify_with_key(
        &self,
        token: &str,
        kid: &str,
        alg: Algorithm,
    ) -> Option<Result<Claims, AuthError>> {
        let keys = self.inner.keys.read();
        let key = keys.keys.get(kid)?;
        if key.alg != alg {
            return Some(Err(invalid("The token algorithm does not match its key")));
        }
        let mut validation = Validation::new(key.alg);
        validation.leeway = self.inner.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.set_issuer(&[self.inner.issuer.as_str()]);
        validation.set_audience(&self.inner.audience);
        Some(
            jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
                .map(|data| data.claims)
                .map_err(|e| match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::TokenExpired,
                    ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
                    ErrorKind::InvalidIssuer => AuthError::TokenWrongAudience(
                        "The access token was issued by another tenant".to_owned(),
                    ),
                    ErrorKind::InvalidAudience => AuthError::TokenWrongAudience(
                        "The access token is meant for another audience".to_owned(),
                    ),
                    ErrorKind::InvalidSignature => invalid("The token signature is not valid"),
                    ErrorKind::InvalidAlgorithm => {
                        invalid("The token algorithm does not match its key")
                    }
                    _ => invalid("The token claims are not valid"),
                }),
        )
    }

    /// Refetches the JWKS once its `max-age` has passed (one fetch in
    /// flight; on failure the old keys stay and the next request retries
    /// after [`MIN_JWKS_AGE`]).
    async fn refresh_keys_if_stale(&self) {
        if self.inner.keys.read().expires > Instant::now() {
            return;
        }
        let _fetching = self.inner.fetching.lock().await;
        if self.inner.keys.read().expires > Instant::now() {
            return;
        }
        self.fetch_keys().await;
    }

    /// Fetches the JWKS for an unknown `kid`, unless one such fetch happened
    /// in the last [`UNKNOWN_KID_REFETCH_INTERVAL`]. Returns whether `kid`
    /// is known afterwards.
    async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        let _fetching = self.inner.fetching.lock().await;
        {
            let mut keys = self.inner.keys.write();
            if keys.keys.contains_key(kid) {
                return true;
            }
            let now = Instant::now();
            if keys
                .unknown_kid_fetch
                .is_some_and(|at| now.duration_since(at) < UNKNOWN_KID_REFETCH_INTERVAL)
            {
                return false;
            }
            keys.unknown_kid_fetch = Some(now);
        }
        self.fetch_keys().await;
        self.inner.keys.read().keys.contains_key(kid)
    }

    /// One JWKS fetch; the caller holds `fetching`.
    async fn fetch_keys(&self) {
        match fetch_jwks(&self.inner.http, &self.inner.jwks_uri).await {
            Ok((keys, max_age)) => {
                let mut set = self.inner.keys.write();
                set.keys = keys;
                set.expires = Instant::now() + max_age;
            }
            Err(cause) => {
                tracing::warn!(%cause, jwks_uri = %self.inner.jwks_uri, "JWKS refresh failed; keeping the keys held");
                self.inner.keys.write().expires = Instant::now() + MIN_JWKS_AGE;
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
                    .map_err(|e| format!("introspection: {e}"))?;
                if !res.status().is_success() {
                    return Err(format!("introspection answered {}", res.status()));
                }
                let answer: Answer = res
                    .json()
                    .await
                    .map_err(|e| format!("introspection: {e}"))?;
                Ok::<bool, String>(answer.active)
            })
            .await
            .map_err(|e: Arc<String>| AuthError::Unavailable(e.to_string()))?;
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
            return Err(AuthError::Unavailable(
                "permission checks need the application's client (VerifierBuilder::client)"
                    .to_owned(),
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
                    .map_err(|e| format!("authz/check: {e}"))?;
                if !res.status().is_success() {
                    return Err(format!("authz/check answered {}", res.status()));
                }
                let decision: Decision =
                    res.json().await.map_err(|e| format!("authz/check: {e}"))?;
                Ok::<bool, String>(decision.allowed)
            })
            .await
            .map_err(|e: Arc<String>| AuthError::Unavailable(e.to_string()))
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
