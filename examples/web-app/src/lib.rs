//! A server-side web application that signs its users in through latchkey
//! (SPEC §9: the authorization code flow with PKCE, through the
//! `openidconnect` crate, unmodified), keeps each user's tokens in a
//! server-side session with latchkey-client's [`TokenManager`], calls the
//! `tenant-api` example with them, and signs out through latchkey's
//! `end_session`.
//!
//! Routes: `GET /` (who is signed in), `GET /login`, `GET /callback` (the
//! registered redirect URI), `GET /api` (calls `tenant-api`'s `/me`),
//! `POST /logout`, `GET /signed-out` (the registered post-logout redirect
//! URI). The browser holds an opaque, HttpOnly session cookie (and, while
//! a sign-in is under way, a second one binding it to the browser); tokens
//! never reach it. Sessions end after 8 hours, or 1 hour unused; at most
//! 10,000 are kept (the oldest go first), and at most 10,000 sign-ins under
//! way (likewise).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, dev::Server, web};
use askama::Template;
use base64::Engine;
use latchkey_client::{TokenError, TokenManager, TokenSet};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, Scope, TokenResponse,
};
use parking_lot::Mutex;

/// The session cookie: an opaque, random id of a server-side session.
pub const SESSION_COOKIE: &str = "webapp_session";
/// The cookie binding a sign-in in progress to the browser that started it.
const PENDING_COOKIE: &str = "webapp_signin";
/// Sign-ins in progress kept at most (anyone can start one).
const MAX_PENDING: usize = 10_000;
/// How long a sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sessions kept at most.
const MAX_SESSIONS: usize = 10_000;
/// A session ends this long after the sign-in…
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// …or this long after its last request.
const SESSION_IDLE: Duration = Duration::from_secs(3600);

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Where latchkey, the API and this application are.
#[derive(Clone)]
pub struct Settings {
    /// The tenant's issuer, `{public_url}/tenants/{t}`.
    pub issuer: String,
    /// This application's confidential client at latchkey.
    pub client_id: String,
    pub client_secret: String,
    /// Where browsers reach this application (its redirect URIs derive
    /// from it: `{public_url}/callback`, `{public_url}/signed-out`).
    pub public_url: String,
    /// The `tenant-api` example's base URL.
    pub api_url: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("public_url", &self.public_url)
            .field("api_url", &self.api_url)
            .finish()
    }
}

impl Settings {
    /// From the environment: `LATCHKEY_ISSUER`, `WEB_APP_CLIENT_ID`
    /// (default `web-app`), `WEB_APP_CLIENT_SECRET`, `WEB_APP_PUBLIC_URL`
    /// (default `http://127.0.0.1:8082`), `TENANT_API_URL` (default
    /// `http://127.0.0.1:8081`).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(Settings {
            issuer: var("LATCHKEY_ISSUER").ok_or_else(|| {
                anyhow::anyhow!("LATCHKEY_ISSUER is not set (http://127.0.0.1:8080/tenants/acme)")
            })?,
            client_id: var("WEB_APP_CLIENT_ID").unwrap_or_else(|| "web-app".to_owned()),
            client_secret: var("WEB_APP_CLIENT_SECRET")
                .ok_or_else(|| anyhow::anyhow!("WEB_APP_CLIENT_SECRET is not set"))?,
            public_url: var("WEB_APP_PUBLIC_URL")
                .unwrap_or_else(|| "http://127.0.0.1:8082".to_owned()),
            api_url: var("TENANT_API_URL").unwrap_or_else(|| "http://127.0.0.1:8081".to_owned()),
        })
    }
}

/// A sign-in in progress: what the callback checks.
struct Pending {
    pkce_verifier: PkceCodeVerifier,
    state: CsrfToken,
    nonce: Nonce,
    started: Instant,
}

/// A signed-in browser.
struct Session {
    tokens: TokenManager,
    id_token: CoreIdToken,
    email: Option<String>,
    subject: String,
    started: Instant,
    last_used: Mutex<Instant>,
}

impl Session {
    fn expired(&self) -> bool {
        self.started.elapsed() > SESSION_TTL || self.last_used.lock().elapsed() > SESSION_IDLE
    }
}

/// The application's state.
pub struct WebApp {
    settings: Settings,
    oidc: OidcClient,
    end_session: Option<EndSessionUrl>,
    http: reqwest::Client,
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

/// openidconnect's HTTP client, over reqwest (the crate is built without
/// its own client features); redirects are not followed (RFC 9700 §4.11).
async fn oidc_http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(std::io::Error::other)?;
    let request = reqwest::Request::try_from(request).map_err(std::io::Error::other)?;
    let response = client
        .execute(request)
        .await
        .map_err(std::io::Error::other)?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await.map_err(std::io::Error::other)?;
    builder.body(body.to_vec()).map_err(std::io::Error::other)
}

/// Inserts into a map that anyone's requests fill: entries no longer
/// `alive` are swept first, and when `max` remain the one `started` first
/// goes.
fn insert_bounded<V>(
    map: &mut HashMap<String, V>,
    id: String,
    value: V,
    max: usize,
    alive: impl Fn(&V) -> bool,
    started: impl Fn(&V) -> Instant,
) {
    map.retain(|_, v| alive(v));
    if map.len() >= max
        && let Some(oldest) = map
            .iter()
            .min_by_key(|(_, v)| started(v))
            .map(|(id, _)| id.clone())
    {
        map.remove(&oldest);
    }
    map.insert(id, value);
}

/// 256 random bits, base64url.
fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl WebApp {
    /// Reads latchkey's discovery and sets the relying party up.
    ///
    /// # Errors
    /// When the issuer or the URLs are not valid, or discovery fails.
    pub async fn new(settings: Settings) -> anyhow::Result<web::Data<WebApp>> {
        let metadata = ProviderMetadataWithLogout::discover_async(
            IssuerUrl::new(settings.issuer.clone())?,
            &oidc_http,
        )
        .await
        .map_err(|e| anyhow::anyhow!("discovery of {}: {e}", settings.issuer))?;
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let oidc = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(settings.client_secret.clone())),
        )
        .set_redirect_uri(RedirectUrl::new(format!(
            "{}/callback",
            settings.public_url
        ))?);
        Ok(web::Data::new(WebApp {
            settings,
            oidc,
            end_session,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            pending: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        }))
    }

    /// The browser's session, unless it expired.
    fn session(&self, req: &HttpRequest) -> Option<(String, Arc<Session>)> {
        let id = req.cookie(SESSION_COOKIE)?.value().to_owned();
        let mut sessions = self.sessions.lock();
        let session = sessions.get(&id).cloned()?;
        if session.expired() {
            sessions.remove(&id);
            return None;
        }
        *session.last_used.lock() = Instant::now();
        Some((id, session))
    }

    /// Keeps a new session: expired ones are swept, and the oldest goes
    /// when the map is full.
    fn open_session(&self, id: String, session: Session) {
        insert_bounded(
            &mut self.sessions.lock(),
            id,
            Arc::new(session),
            MAX_SESSIONS,
            |s| !s.expired(),
            |s| s.started,
        );
    }

    fn cookie<'c>(&self, name: &'c str, value: String) -> Cookie<'c> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.settings.public_url.starts_with("https://"))
            .finish()
    }
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} · web-app</title></head>
<body>
<h1>{{ title }}</h1>
{% if let Some(user) = user %}<p>Signed in as <strong>{{ user }}</strong>.</p>
<p><a href="/api">Call tenant-api</a></p>
<form method="post" action="/logout"><button type="submit">Sign out</button></form>
{% else %}<p><a href="/login">Sign in</a></p>{% endif %}
{% if let Some(text) = detail %}<pre>{{ text }}</pre>{% endif %}
</body></html>"#
)]
struct Page<'a> {
    title: &'a str,
    user: Option<&'a str>,
    detail: Option<&'a str>,
}

fn page(
    status: actix_web::http::StatusCode,
    title: &str,
    user: Option<&str>,
    detail: Option<&str>,
) -> HttpResponse {
    let body = Page {
        title,
        user,
        detail,
    }
    .render()
    .unwrap_or_default();
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}

async fn home(app: web::Data<WebApp>, req: HttpRequest) -> HttpResponse {
    use actix_web::http::StatusCode;
    match app.session(&req) {
        Some((_, s)) => page(
            StatusCode::OK,
            "web-app",
            Some(s.email.as_deref().unwrap_or(&s.subject)),
            None,
        ),
        None => page(StatusCode::OK, "web-app", None, None),
    }
}

/// Starts a sign-in: PKCE, state and nonce, kept server-side, bound to
/// this browser by a cookie; the browser goes to latchkey.
async fn login(app: web::Data<WebApp>) -> HttpResponse {
    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = app
        .oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".to_owned()))
        .set_pkce_challenge(challenge)
        .url();
    let id = random_id();
    insert_bounded(
        &mut app.pending.lock(),
        id.clone(),
        Pending {
            pkce_verifier,
            state,
            nonce,
            started: Instant::now(),
        },
        MAX_PENDING,
        |p| p.started.elapsed() < PENDING_TTL,
        |p| p.started,
    );
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.as_str()))
        .cookie(app.cookie(PENDING_COOKIE, id))
        .finish()
}

#[derive(serde::Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// The redirect URI: checks `state` and `iss` (RFC 9207), exchanges the
/// code with the PKCE verifier, verifies the ID token and its nonce, and
/// opens a session holding the tokens.
async fn callback(
    app: web::Data<WebApp>,
    req: HttpRequest,
    query: web::Query<Callback>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let refused = |detail: &str| {
        page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            None,
            Some(detail),
        )
    };
    let Some(pending) = req
        .cookie(PENDING_COOKIE)
        .and_then(|c| app.pending.lock().remove(c.value()))
    else {
        return refused("This sign-in was not started here, or it took too long.");
    };
    let state_matches = query.state.as_deref().is_some_and(|s| {
        use subtle::ConstantTimeEq;
        bool::from(s.as_bytes().ct_eq(pending.state.secret().as_bytes()))
    });
    if !state_matches {
        return refused("The sign-in answer does not belong to this sign-in.");
    }
    if query.iss.as_deref() != Some(app.settings.issuer.as_str()) {
        return refused("The sign-in answer comes from another issuer.");
    }
    if let Some(error) = &query.error {
        return refused(&format!("latchkey answered {error}."));
    }
    let Some(code) = query.code.clone() else {
        return refused("The sign-in answer holds no code.");
    };
    let exchange = match app.oidc.exchange_code(AuthorizationCode::new(code)) {
        Ok(request) => request,
        Err(e) => return refused(&format!("No token endpoint: {e}")),
    };
    let response = match exchange
        .set_pkce_verifier(pending.pkce_verifier)
        .request_async(&oidc_http)
        .await
    {
        Ok(response) => response,
        Err(e) => return refused(&format!("The code exchange failed: {e}")),
    };
    let Some(id_token) = response.id_token().cloned() else {
        return refused("latchkey answered no ID token.");
    };
    let claims = match id_token.claims(&app.oidc.id_token_verifier(), &pending.nonce) {
        Ok(claims) => claims.clone(),
        Err(e) => return refused(&format!("The ID token does not verify: {e}")),
    };
    let tokens = TokenManager::builder(&app.settings.issuer, &app.settings.client_id)
        .client_secret(&app.settings.client_secret)
        .http_client(app.http.clone())
        .build();
    let mut set = TokenSet::from_response(
        response.access_token().secret().clone(),
        response.refresh_token().map(|r| r.secret().clone()),
        response.expires_in().unwrap_or(Duration::from_secs(60)),
    );
    set.id_token = Some(id_token.to_string());
    if let Err(e) = tokens.set_tokens(set).await {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            None,
            Some(&e.to_string()),
        );
    }
    let id = random_id();
    app.open_session(
        id.clone(),
        Session {
            tokens,
            id_token,
            email: claims.email().map(|e| e.as_str().to_owned()),
            subject: claims.subject().as_str().to_owned(),
            started: Instant::now(),
            last_used: Mutex::new(Instant::now()),
        },
    );
    let mut expired = app.cookie(PENDING_COOKIE, String::new());
    expired.make_removal();
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/"))
        .cookie(app.cookie(SESSION_COOKIE, id))
        .cookie(expired)
        .finish()
}

/// Calls `tenant-api`'s `/me` with the session's access token
/// (refreshed ahead of expiry, retried once on `token_expired`).
async fn api(app: web::Data<WebApp>, req: HttpRequest) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some((id, session)) = app.session(&req) else {
        return see_other("/login");
    };
    let request = app.http.get(format!("{}/me", app.settings.api_url));
    match session.tokens.send(request).await {
        Ok(res) => {
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body)
        }
        Err(TokenError::SignInRequired(reason)) => {
            // The session ended at latchkey: this one ends too.
            app.sessions.lock().remove(&id);
            page(
                StatusCode::UNAUTHORIZED,
                "Signed out",
                None,
                Some(&format!("Sign in again ({}).", reason.code())),
            )
        }
        Err(e) => page(
            StatusCode::BAD_GATEWAY,
            "tenant-api unavailable",
            None,
            Some(&e.to_string()),
        ),
    }
}

/// Ends the session here and its tokens at latchkey (the refresh token
/// revoked, RFC 7009, which ends latchkey's session: its access tokens die
/// at once), then sends the browser through latchkey's `end_session`
/// (OpenID Connect RP-Initiated Logout, `id_token_hint`) to sign it out of
/// latchkey's login page too; latchkey sends it back to `/signed-out`.
async fn logout(app: web::Data<WebApp>, req: HttpRequest) -> HttpResponse {
    let Some((id, session)) = app.session(&req) else {
        return see_other("/");
    };
    app.sessions.lock().remove(&id);
    if let Err(e) = session.tokens.revoke().await {
        eprintln!("web-app: revoking the refresh token failed: {e}");
    }
    let mut removal = app.cookie(SESSION_COOKIE, String::new());
    removal.make_removal();
    let location = match (
        &app.end_session,
        PostLogoutRedirectUrl::new(format!("{}/signed-out", app.settings.public_url)),
    ) {
        (Some(end_session), Ok(back)) => LogoutRequest::from(end_session.clone())
            .set_id_token_hint(&session.id_token)
            .set_client_id(ClientId::new(app.settings.client_id.clone()))
            .set_post_logout_redirect_uri(back)
            .http_get_url()
            .to_string(),
        _ => "/signed-out?here-only".to_owned(),
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .cookie(removal)
        .finish()
}

async fn signed_out(req: HttpRequest) -> HttpResponse {
    let detail = if req.query_string() == "here-only" {
        "You are signed out of web-app, and its tokens are revoked; latchkey's own sign-in page may still know you."
    } else {
        "You are signed out of web-app and of latchkey."
    };
    page(
        actix_web::http::StatusCode::OK,
        "Signed out",
        None,
        Some(detail),
    )
}

/// The routes; the [`WebApp`] must be in the app data.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/login", web::get().to(login))
        .route("/callback", web::get().to(callback))
        .route("/api", web::get().to(api))
        .route("/logout", web::post().to(logout))
        .route("/signed-out", web::get().to(signed_out));
}

/// Serves the application on `listener`; run the returned server.
pub fn serve(listener: std::net::TcpListener, app: web::Data<WebApp>) -> std::io::Result<Server> {
    Ok(
        HttpServer::new(move || App::new().app_data(app.clone()).configure(configure))
            .workers(1)
            .disable_signals()
            .listen(listener)?
            .run(),
    )
}
