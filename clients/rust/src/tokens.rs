//! Holding tokens: refresh ahead of expiry, one refresh in flight, one retry
//! on `token_expired`, and a typed "sign in again" instead of a loop (SPEC
//! §4, §10; RFC 6749 §6).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::verifier::form_encode;

/// The tokens an application holds for one sign-in (or, for a service, its
/// client_credentials token).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenSet {
    /// The access token (a JWT; send it as `Authorization: Bearer`).
    pub access_token: String,
    /// The refresh token (opaque; rotates on every use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, Unix seconds.
    pub expires_at: u64,
    /// When the token was received, Unix seconds: bounds the refresh margin
    /// to half the token's lifetime.
    #[serde(default)]
    pub received_at: u64,
    /// The ID token of an OpenID Connect sign-in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// The granted scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("scope", &self.scope)
            .finish()
    }
}

/// A token endpoint's successful answer (RFC 6749 §5.1).
#[derive(Clone, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl TokenSet {
    /// A token set from a token endpoint's answer (RFC 6749 §5.1), received now.
    pub fn from_response(
        access_token: impl Into<String>,
        refresh_token: Option<String>,
        expires_in: Duration,
    ) -> Self {
        let received_at = now();
        TokenSet {
            access_token: access_token.into(),
            refresh_token,
            expires_at: received_at + expires_in.as_secs(),
            received_at,
            id_token: None,
            scope: None,
        }
    }

    /// Whether the access token stays valid for at least `margin` more
    /// (the margin bounded by half the token's lifetime, so a short-lived
    /// token is not refreshed on every call).
    pub fn is_fresh(&self, margin: Duration) -> bool {
        let lifetime = self.expires_at.saturating_sub(self.received_at);
        let margin = margin.as_secs().min(lifetime / 2);
        self.expires_at > now() + margin
    }
}

/// Error of a [`TokenStore`].
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Where a [`TokenManager`] keeps its tokens: implement it to persist them
/// (a server-side session, a file, a keychain). [`MemoryTokenStore`] keeps
/// them in memory.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The tokens held, if any.
    async fn load(&self) -> Result<Option<TokenSet>, StoreError>;
    /// Replaces the tokens held.
    async fn save(&self, tokens: &TokenSet) -> Result<(), StoreError>;
    /// Forgets the tokens (sign-out, or a sign-in that must be repeated).
    async fn clear(&self) -> Result<(), StoreError>;
}

/// Tokens in process memory.
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: parking_lot::Mutex<Option<TokenSet>>,
}

#[async_trait::async_trait]
impl TokenStore for MemoryTokenStore {
    async fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.tokens.lock().clone())
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        *self.tokens.lock() = Some(tokens.clone());
        Ok(())
    }
    async fn clear(&self) -> Result<(), StoreError> {
        *self.tokens.lock() = None;
        Ok(())
    }
}

/// Why the user must sign in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInReason {
    /// The refresh token was refused: expired, revoked, reused (RFC 6749 §5.2).
    InvalidGrant,
    /// An API answered `session_revoked`: the session ended (logout, admin
    /// revoke, password change).
    SessionRevoked,
    /// An API answered `account_disabled`: the user is disabled or the
    /// tenant suspended.
    AccountDisabled,
    /// No tokens are held (never signed in, or signed out).
    SignedOut,
}

impl SignInReason {
    /// latchkey's code for it (`signed_out` when nothing was held).
    pub fn code(self) -> &'static str {
        match self {
            SignInReason::InvalidGrant => "invalid_grant",
            SignInReason::SessionRevoked => "session_revoked",
            SignInReason::AccountDisabled => "account_disabled",
            SignInReason::SignedOut => "signed_out",
        }
    }
}

/// Why a [`TokenManager`] could not give a token or send a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The user must sign in again; no further request is sent until
    /// [`TokenManager::set_tokens`].
    #[error("sign in again ({})", .0.code())]
    SignInRequired(SignInReason),
    /// The token endpoint refused the request for another reason (for
    /// example 401 `invalid_client`: the application's credentials).
    #[error("the token endpoint answered {status} {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// latchkey's code (RFC 6749 §5.2 `error`, or `rate_limited`,
        /// `store_unavailable`).
        code: String,
    },
    /// latchkey or the API could not be reached.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The [`TokenStore`] failed.
    #[error("token store: {0}")]
    Store(StoreError),
    /// The refresh task failed (a panic in a [`TokenStore`]).
    #[error("the refresh failed: {0}")]
    Internal(String),
}

/// The client secret of a service that gets its own tokens (RFC 6749 §4.4).
pub struct ClientCredentials {
    secret: String,
    scope: Option<String>,
}

impl ClientCredentials {
    /// The confidential client's secret.
    pub fn new(secret: impl Into<String>) -> Self {
        ClientCredentials {
            secret: secret.into(),
            scope: None,
        }
    }

    /// Asks for these scopes (space-separated).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

enum Grant {
    /// A user's tokens, renewed with the refresh token; an optional secret
    /// for a confidential client.
    Refresh { secret: Option<String> },
    /// A service's own tokens.
    ClientCredentials(ClientCredentials),
}

/// Configures a [`TokenManager`]; see [`TokenManager::builder`].
pub struct TokenManagerBuilder {
    token_endpoint: String,
    revocation_endpoint: String,
    client_id: String,
    grant: Grant,
    store: Arc<dyn TokenStore>,
    margin: Duration,
    http: Option<reqwest::Client>,
}

impl TokenManagerBuilder {
    /// The token endpoint, when not `{issuer}/oauth/token`.
    pub fn token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.token_endpoint = url.into();
        self
    }

    /// The revocation endpoint (RFC 7009), when not `{issuer}/oauth/revoke`.
    pub fn revocation_endpoint(mut self, url: impl Into<String>) -> Self {
        self.revocation_endpoint = url.into();
        self
    }

    /// The secret of a confidential client (HTTP Basic, RFC 6749 §2.3.1).
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.grant = Grant::Refresh {
            secret: Some(secret.into()),
        };
        self
    }

    /// A service's own tokens through client_credentials instead of a
    /// user's refresh token: a new token is asked for ahead of expiry, and
    /// whenever an API refuses the held one (`token_expired`,
    /// `session_revoked`, `account_disabled`: its client was disabled and
    /// enabled again, say); it never ends in a sign-in.
    pub fn client_credentials(mut self, credentials: ClientCredentials) -> Self {
        self.grant = Grant::ClientCredentials(credentials);
        self
    }

    /// Where tokens are kept (default [`MemoryTokenStore`]).
    pub fn store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = store;
        self
    }

    /// [`TokenManager::access_token`] returns a token valid for at least
    /// this long (default 60 s; at most half the token's lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The HTTP client (default: a new one, 5 s timeout, no redirects: well
    /// within latchkey's 10 s refresh grace window, so a refresh whose
    /// answer was lost can be repeated and get the same pair).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// The manager.
    pub fn build(self) -> TokenManager {
        let http = self.http.unwrap_or_else(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        });
        TokenManager {
            inner: Arc::new(ManagerInner {
                http,
                token_endpoint: self.token_endpoint,
                revocation_endpoint: self.revocation_endpoint,
                client_id: self.client_id,
                grant: self.grant,
                store: self.store,
                margin: self.margin,
                flight: Arc::new(tokio::sync::Mutex::new(())),
                signed_out: parking_lot::Mutex::new(None),
                backoff: parking_lot::Mutex::new(None),
            }),
        }
    }
}

/// Keeps an application's tokens valid, for a server-side web app, a CLI or
/// a service (SPEC §10).
///
/// - [`Self::access_token`] returns a token valid for at least the refresh
///   margin, refreshing ahead of `exp`; any number of concurrent callers
///   share one refresh request in flight.
/// - [`Self::send`] adds the token to a request; a `401 token_expired`
///   answer causes one refresh and one retry, never more.
/// - A refused refresh (`invalid_grant`), `session_revoked` or
///   `account_disabled` clears the tokens and ends in
///   [`TokenError::SignInRequired`]; from then on every call fails at once,
///   without a request, until [`Self::set_tokens`].
///
/// Cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn f(tokens: latchkey_client::TokenSet) -> Result<(), latchkey_client::TokenError> {
/// use latchkey_client::{TokenError, TokenManager};
/// let manager = TokenManager::builder("https://id.example.com/tenants/acme", "web-app")
///     .client_secret("…")
///     .build();
/// manager.set_tokens(tokens).await?;
/// let http = reqwest::Client::new();
/// match manager.send(http.get("https://api.example.com/orders")).await {
///     Ok(res) => println!("{}", res.status()),
///     Err(TokenError::SignInRequired(reason)) => println!("sign in again: {}", reason.code()),
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<ManagerInner>,
}

struct ManagerInner {
    http: reqwest::Client,
    token_endpoint: String,
    revocation_endpoint: String,
    client_id: String,
    grant: Grant,
    store: Arc<dyn TokenStore>,
    margin: Duration,
    /// Held while a refresh is in flight: the single flight.
    flight: Arc<tokio::sync::Mutex<()>>,
    /// Why the tokens were dropped, until new ones are set.
    signed_out: parking_lot::Mutex<Option<SignInReason>>,
    /// After a failed refresh: no request before this instant, and the
    /// failure to answer meanwhile.
    backoff: parking_lot::Mutex<Option<(Instant, u16, String)>>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("token_endpoint", &self.inner.token_endpoint)
            .field("client_id", &self.inner.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// Starts configuring a manager for client `client_id` of the tenant
    /// whose issuer is `issuer` (`{public_url}/tenants/{t}`; the token
    /// endpoint is `{issuer}/oauth/token`).
    pub fn builder(issuer: &str, client_id: impl Into<String>) -> TokenManagerBuilder {
        let issuer = issuer.trim_end_matches('/');
        TokenManagerBuilder {
            token_endpoint: format!("{issuer}/oauth/token"),
            revocation_endpoint: format!("{issuer}/oauth/revoke"),
            client_id: client_id.into(),
            grant: Grant::Refresh { secret: None },
            store: Arc::new(MemoryTokenStore::default()),
            margin: Duration::from_secs(60),
            http: None,
        }
    }

    /// Holds `tokens` (after a sign-in) and leaves the signed-out state.
    ///
    /// # Errors
    /// [`TokenError::Store`] when the store fails.
    pub async fn set_tokens(&self, tokens: TokenSet) -> Result<(), TokenError> {
        let _flight = self.inner.flight.lock().await;
        self.inner
            .store
            .save(&tokens)
            .await
            .map_err(TokenError::Store)?;
        *self.inner.signed_out.lock() = None;
        Ok(())
    }

    /// The tokens held, if any.
    ///
    /// # Errors
    /// [`TokenError::Store`] when the store fails.
    pub async fn tokens(&self) -> Result<Option<TokenSet>, TokenError> {
        self.inner.store.load().await.map_err(TokenError::Store)
    }

    /// Forgets the tokens (the application signs the user out; revoke the
    /// refresh token or end the session at latchkey as well).
    ///
    /// # Errors
    /// [`TokenError::Store`] when the store fails.
    pub async fn sign_out(&self) -> Result<(), TokenError> {
        let _flight = self.inner.flight.lock().await;
        self.drop_tokens(SignInReason::SignedOut).await
    }

    /// An access token valid for at least the refresh margin, refreshed
    /// ahead of `exp` when needed (one refresh in flight for all callers).
    ///
    /// When the refresh fails for a passing reason (latchkey unreachable,
    /// 429, 5xx) while the held token has not expired yet, that token is
    /// returned. After such a failure no refresh is sent for `Retry-After`
    /// seconds (1 s without one, at most 60 s), nor for 30 s after the
    /// client itself was refused (`invalid_client`); a refresh that failed
    /// in transit is sent again once at once (latchkey's grace window
    /// answers it with the same pair).
    ///
    /// # Errors
    /// [`TokenError::SignInRequired`] when no tokens are held or the refresh
    /// was refused (`invalid_grant`); [`TokenError::Refused`] for other
    /// token endpoint errors (429, 503, `invalid_client`) once the held
    /// token has expired, the tokens kept; [`TokenError::Http`],
    /// [`TokenError::Store`].
    pub async fn access_token(&self) -> Result<String, TokenError> {
        if let Some(reason) = *self.inner.signed_out.lock() {
            return Err(TokenError::SignInRequired(reason));
        }
        if let Some(tokens) = self.tokens().await?
            && tokens.is_fresh(self.inner.margin)
        {
            return Ok(tokens.access_token);
        }
        self.renew(None).await
    }

    /// Revokes the refresh token at latchkey (RFC 7009; latchkey ends its
    /// session, so every access token of it is refused from the next
    /// request on) and forgets the tokens.
    ///
    /// # Errors
    /// [`TokenError::Refused`] or [`TokenError::Http`] when latchkey did not
    /// confirm (the tokens are forgotten all the same),
    /// [`TokenError::Store`].
    pub async fn revoke(&self) -> Result<(), TokenError> {
        let _flight = self.inner.flight.lock().await;
        let refresh = self.tokens().await?.and_then(|t| t.refresh_token);
        let confirmed = match refresh {
            None => Ok(()),
            Some(refresh) => {
                let mut form = vec![
                    ("token", refresh.as_str()),
                    ("token_type_hint", "refresh_token"),
                ];
                let request = self.authenticated(
                    self.inner.http.post(&self.inner.revocation_endpoint),
                    &mut form,
                );
                match request.form(&form).send().await {
                    Ok(res) if res.status().is_success() => Ok(()),
                    Ok(res) => Err(TokenError::Refused {
                        status: res.status().as_u16(),
                        code: oauth_code(res)
                            .await
                            .unwrap_or_else(|| "unknown".to_owned()),
                    }),
                    Err(e) => Err(TokenError::Http(e)),
                }
            }
        };
        self.drop_tokens(SignInReason::SignedOut).await?;
        confirmed
    }

    /// Client authentication (RFC 6749 §2.3.1): HTTP Basic with the secret,
    /// or the `client_id` in the form for a public client.
    fn authenticated<'a>(
        &'a self,
        request: reqwest::RequestBuilder,
        form: &mut Vec<(&'a str, &'a str)>,
    ) -> reqwest::RequestBuilder {
        let secret = match &self.inner.grant {
            Grant::Refresh { secret } => secret.as_deref(),
            Grant::ClientCredentials(credentials) => Some(credentials.secret.as_str()),
        };
        match secret {
            Some(secret) => request.basic_auth(
                form_encode(&self.inner.client_id),
                Some(form_encode(secret)),
            ),
            None => {
                form.push(("client_id", &self.inner.client_id));
                request
            }
        }
    }

    /// Renews the tokens in the single flight, unless another caller
    /// already did. With `failed`, the access token an API refused is
    /// renewed whatever its `exp` says.
    ///
    /// The refresh runs in a task of its own that holds the flight: it
    /// finishes and saves the rotated tokens even when the caller goes away
    /// (a dropped request, a timeout around the call), so the next refresh
    /// never spends a refresh token latchkey already rotated.
    async fn renew(&self, failed: Option<&str>) -> Result<String, TokenError> {
        let flight = self.inner.flight.clone().lock_owned().await;
        let manager = self.clone();
        let failed = failed.map(str::to_owned);
        tokio::spawn(async move {
            let _flight = flight;
            manager.renew_in_flight(failed.as_deref()).await
        })
        .await
        .unwrap_or_else(|e| Err(TokenError::Internal(e.to_string())))
    }

    /// [`Self::renew`]'s work; the caller holds the flight.
    async fn renew_in_flight(&self, failed: Option<&str>) -> Result<String, TokenError> {
        if let Some(reason) = *self.inner.signed_out.lock() {
            return Err(TokenError::SignInRequired(reason));
        }
        let held = self.tokens().await?;
        if let Some(tokens) = &held {
            let replaced = failed.is_some_and(|f| f != tokens.access_token);
            let fresh = failed.is_none() && tokens.is_fresh(self.inner.margin);
            if replaced || fresh {
                return Ok(tokens.access_token.clone());
            }
        }
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(4);
        match &self.inner.grant {
            Grant::Refresh { .. } => {
                let Some(refresh) = held.as_ref().and_then(|t| t.refresh_token.as_deref()) else {
                    self.drop_tokens(SignInReason::SignedOut).await?;
                    return Err(TokenError::SignInRequired(SignInReason::SignedOut));
                };
                form.push(("grant_type", "refresh_token"));
                form.push(("refresh_token", refresh));
            }
            Grant::ClientCredentials(credentials) => {
                form.push(("grant_type", "client_credentials"));
                if let Some(scope) = &credentials.scope {
                    form.push(("scope", scope));
                }
            }
        }
        if let Some((until, status, code)) = self.inner.backoff.lock().clone()
            && Instant::now() < until
        {
            // latchkey asked to wait (or refused the client): no request.
            return self.unrenewed(held.as_ref(), failed, TokenError::Refused { status, code });
        }
        let request =
            self.authenticated(self.inner.http.post(&self.inner.token_endpoint), &mut form);
        let request = request.form(&form);
        // A transport failure may come after latchkey rotated: the same
        // refresh, sent again at once, gets the same pair within latchkey's
        // grace window (10 s), where waiting for the next call might not.
        let retry = request.try_clone();
        let outcome = match Self::attempt(request).await {
            Err(e) => match retry {
                Some(retry) => {
                    tracing::warn!(error = %e, "refresh failed in transit; sending it again");
                    Self::attempt(retry).await
                }
                None => Err(e),
            },
            ok => ok,
        };
        let answer = match outcome {
            Ok(Ok(answer)) => answer,
            Ok(Err((status, code, retry_after))) => {
                if status == 400
                    && code.as_deref() == Some("invalid_grant")
                    && matches!(self.inner.grant, Grant::Refresh { .. })
                {
                    self.drop_tokens(SignInReason::InvalidGrant).await?;
                    return Err(TokenError::SignInRequired(SignInReason::InvalidGrant));
                }
                let code = code.unwrap_or_else(|| "unknown".to_owned());
                let wait = if status == 429 || status >= 500 {
                    retry_after.unwrap_or(1).min(60)
                } else {
                    // The client itself is refused: a configuration error.
                    30
                };
                *self.inner.backoff.lock() = Some((
                    Instant::now() + Duration::from_secs(wait),
                    status,
                    code.clone(),
                ));
                return self.unrenewed(held.as_ref(), failed, TokenError::Refused { status, code });
            }
            Err(e) => {
                *self.inner.backoff.lock() = Some((
                    Instant::now() + Duration::from_secs(1),
                    503,
                    "unreachable".to_owned(),
                ));
                return self.unrenewed(held.as_ref(), failed, TokenError::Http(e));
            }
        };
        *self.inner.backoff.lock() = None;
        let mut tokens = TokenSet::from_response(
            answer.access_token,
            // A refresh answer without a refresh token keeps the old one
            // (RFC 6749 §6); latchkey always rotates.
            answer
                .refresh_token
                .or_else(|| held.as_ref().and_then(|t| t.refresh_token.clone())),
            Duration::from_secs(answer.expires_in.unwrap_or(60)),
        );
        tokens.id_token = answer
            .id_token
            .or_else(|| held.as_ref().and_then(|t| t.id_token.clone()));
        tokens.scope = answer.scope;
        if let Err(e) = self.inner.store.save(&tokens).await {
            tracing::error!(error = %e, "the rotated tokens could not be saved; the next refresh will need latchkey's grace window");
            return Err(TokenError::Store(e));
        }
        Ok(tokens.access_token)
    }

    /// One token request: the answer, or latchkey's refusal as (status,
    /// code, `Retry-After` seconds); `Err` when it failed in transit (the
    /// body of a 200 included).
    async fn attempt(
        request: reqwest::RequestBuilder,
    ) -> Result<Result<TokenResponse, (u16, Option<String>, Option<u64>)>, reqwest::Error> {
        let res = request.send().await?;
        let status = res.status();
        if status.is_success() {
            return Ok(Ok(res.json().await?));
        }
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Err((status.as_u16(), oauth_code(res).await, retry_after)))
    }

    /// A refresh that could not be made: the held access token while it is
    /// still valid (a refresh ahead of expiry can wait), else `error`.
    fn unrenewed(
        &self,
        held: Option<&TokenSet>,
        failed: Option<&str>,
        error: TokenError,
    ) -> Result<String, TokenError> {
        match held {
            Some(tokens) if failed.is_none() && tokens.expires_at > now() => {
                tracing::warn!(%error, "refresh ahead of expiry failed; the held token is still valid");
                Ok(tokens.access_token.clone())
            }
            _ => Err(error),
        }
    }

    /// Clears the store and enters the signed-out state; the caller holds
    /// the flight.
    async fn drop_tokens(&self, reason: SignInReason) -> Result<(), TokenError> {
        *self.inner.signed_out.lock() = Some(reason);
        self.inner.store.clear().await.map_err(TokenError::Store)
    }

    /// Sends `request` with `Authorization: Bearer` and the current access
    /// token.
    ///
    /// A `401 token_expired` answer causes one refresh (shared with
    /// concurrent callers) and one retry; the retry's answer is returned
    /// whatever it is. `401 session_revoked` or `account_disabled` clears
    /// the tokens and fails with [`TokenError::SignInRequired`] (a
    /// client_credentials manager gets a new token and retries once
    /// instead). Every other answer is returned as it is. A request whose
    /// body cannot be cloned (a stream) is not retried; the token is
    /// renewed for the next call all the same.
    ///
    /// # Errors
    /// As [`Self::access_token`], and [`TokenError::Http`] when the request
    /// fails.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, TokenError> {
        let token = self.access_token().await?;
        let retry = request.try_clone();
        let res = match self.exchange(request, &token).await? {
            Code::Renew(res) => res,
            Code::Other(res) => return Ok(res),
            Code::SignIn(reason) => return Err(TokenError::SignInRequired(reason)),
        };
        let renewed = self.renew(Some(&token)).await?;
        let Some(retry) = retry else {
            return Ok(res);
        };
        match self.exchange(retry, &renewed).await? {
            // The one retry's answer, whatever it is: never a second retry.
            Code::Renew(res) | Code::Other(res) => Ok(res),
            Code::SignIn(reason) => Err(TokenError::SignInRequired(reason)),
        }
    }

    /// One request with `token`, its 401 read for latchkey's code.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
    ) -> Result<Code, TokenError> {
        let res = request.bearer_auth(token).send().await?;
        if res.status().as_u16() != 401 {
            return Ok(Code::Other(res));
        }
        let (res, code) = read_code(res).await?;
        let service = matches!(self.inner.grant, Grant::ClientCredentials(_));
        Ok(match code.as_deref() {
            Some("token_expired") => Code::Renew(res),
            Some("session_revoked" | "account_disabled") if service => Code::Renew(res),
            Some("session_revoked") => {
                self.end(SignInReason::SessionRevoked, token).await?;
                Code::SignIn(SignInReason::SessionRevoked)
            }
            Some("account_disabled") => {
                self.end(SignInReason::AccountDisabled, token).await?;
                Code::SignIn(SignInReason::AccountDisabled)
            }
            _ => Code::Other(res),
        })
    }

    /// Drops the tokens after an API refused `token` for good, unless they
    /// were replaced meanwhile.
    async fn end(&self, reason: SignInReason, token: &str) -> Result<(), TokenError> {
        let _flight = self.inner.flight.lock().await;
        if self.inner.signed_out.lock().is_some() {
            return Ok(());
        }
        match self.tokens().await? {
            Some(held) if held.access_token != token => Ok(()),
            _ => self.drop_tokens(reason).await,
        }
    }
}

/// What an API's answer means to the manager.
enum Code {
    /// Renew the token (and retry once).
    Renew(reqwest::Response),
    /// The user must sign in again.
    SignIn(SignInReason),
    /// Any other answer, for the caller.
    Other(reqwest::Response),
}

/// latchkey's `code` (or the RFC 6749 `error`) of an error answer.
async fn oauth_code(res: reqwest::Response) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let body: Body = res.json().await.ok()?;
    body.code.or(body.error)
}

/// Reads latchkey's `code` of a 401: from the problem+json body, else from
/// `WWW-Authenticate` (RFC 6750 §3); gives the response back, rebuilt.
async fn read_code(
    res: reqwest::Response,
) -> Result<(reqwest::Response, Option<String>), TokenError> {
    let status = res.status();
    let version = res.version();
    let headers = res.headers().clone();
    let body = res.bytes().await?;
    let from_body = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("code")?.as_str().map(str::to_owned));
    let code = from_body.or_else(|| {
        headers
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(code_of_challenge)
    });
    let mut rebuilt = http_response(status, version, body.to_vec());
    *rebuilt.headers_mut() = headers;
    Ok((reqwest::Response::from(rebuilt), code))
}

fn http_response(
    status: reqwest::StatusCode,
    version: reqwest::Version,
    body: Vec<u8>,
) -> ::http::Response<Vec<u8>> {
    let mut res = ::http::Response::new(body);
    *res.status_mut() = status;
    *res.version_mut() = version;
    res
}

/// latchkey's code as far as a challenge tells it: an expired token is the
/// only `invalid_token` with a fixed description (SPEC §5).
fn code_of_challenge(challenge: &str) -> Option<String> {
    if challenge.contains("error_description=\"The access token expired\"") {
        Some("token_expired".to_owned())
    } else if !challenge.contains("error=") {
        Some("token_missing".to_owned())
    } else {
        None
    }
}
