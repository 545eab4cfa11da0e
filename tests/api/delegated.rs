//! SPEC §9 delegated login: the authorization code flow with PKCE, the
//! hosted login page, the browser session (single sign-on), ID tokens,
//! RP-initiated logout, discovery and CORS — over HTTP, with a
//! cookie-keeping client that follows no redirect as the browser.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use reqwest::cookie::CookieStore;
use reqwest::{Response, StatusCode, Url};
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::helpers::{
    TestApp, USER_PASSWORD, assert_unauthorized, json, slug, spawn_app, spawn_app_with, str_of,
};

/// The redirect URI of the web application every test tenant registers.
const APP_CALLBACK: &str = "https://app.example.com/callback";
/// Its post-logout redirect URI.
const APP_SIGNED_OUT: &str = "https://app.example.com/signed-out";
/// The origin of both.
const APP_ORIGIN: &str = "https://app.example.com";
/// What the login page says for a wrong password, an unknown e-mail and a
/// locked account alike.
const WRONG_CREDENTIALS: &str = "The e-mail or password is wrong.";

// ---------------------------------------------------------------------------
// Tenants and clients
// ---------------------------------------------------------------------------

/// A relying party registered in a tenant.
#[derive(Clone)]
struct Rp {
    client_id: String,
    /// Confidential clients only.
    secret: Option<String>,
    /// Its first registered redirect URI.
    redirect_uri: String,
}

/// A tenant with one user and one confidential web application.
struct Tenant {
    t: String,
    issuer: String,
    email: String,
    user_id: String,
    rp: Rp,
}

/// Registers a client from a full admin body; answers it.
async fn register(app: &TestApp, admin: &str, t: &str, body: Value) -> Rp {
    let res = app
        .post_json(&format!("/admin/tenants/{t}/clients"), admin, &body)
        .await;
    let status = res.status();
    let created = json(res).await;
    assert_eq!(status, StatusCode::CREATED, "register {body}: {created}");
    assert_eq!(created["redirect_uris"], body["redirect_uris"], "{created}");
    Rp {
        client_id: str_of(&created, "client_id").to_owned(),
        secret: created["client_secret"].as_str().map(str::to_owned),
        redirect_uri: created["redirect_uris"][0]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Registers a client of `client_type` (`confidential` | `public`) for the
/// authorization code flow, with refresh tokens.
async fn register_client(
    app: &TestApp,
    admin: &str,
    t: &str,
    client_type: &str,
    redirect_uris: &[&str],
    post_logout_redirect_uris: &[&str],
) -> Rp {
    let body = json!({
        "type": client_type,
        "name": "Web app",
        "grant_types": ["authorization_code", "refresh_token"],
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout_redirect_uris,
    });
    let rp = register(app, admin, t, body).await;
    assert_eq!(rp.secret.is_some(), client_type == "confidential");
    rp
}

/// A fresh tenant with `settings`, one user and a confidential client
/// redirecting to [`APP_CALLBACK`] (post-logout: [`APP_SIGNED_OUT`]).
async fn tenant(app: &TestApp, admin: &str, settings: Value) -> Tenant {
    let t = slug("dl");
    app.create_tenant(admin, &t, settings).await;
    let email = format!("alice@{t}.test");
    let user_id = app.create_user(admin, &t, &email).await;
    let rp = register_client(
        app,
        admin,
        &t,
        "confidential",
        &[APP_CALLBACK],
        &[APP_SIGNED_OUT],
    )
    .await;
    Tenant {
        issuer: format!("{}/tenants/{t}", app.base),
        t,
        email,
        user_id,
        rp,
    }
}

/// An app, its admin token and a tenant with default settings.
async fn start() -> (TestApp, String, Tenant) {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({})).await;
    (app, admin, s)
}

// ---------------------------------------------------------------------------
// Authorization requests
// ---------------------------------------------------------------------------

type Params = Vec<(&'static str, String)>;

/// An authorization request and the secrets its client keeps.
struct Authz {
    url: String,
    state: String,
    nonce: String,
    verifier: String,
    /// The `redirect_uri` it names (what the token request must repeat).
    redirect_uri: String,
}

/// A PKCE pair (RFC 7636): (code_verifier, S256 code_challenge).
fn pkce_pair() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Sets a parameter, replacing any earlier value.
fn set(params: &mut Params, key: &'static str, value: &str) {
    params.retain(|(k, _)| *k != key);
    params.push((key, value.to_owned()));
}

/// Removes a parameter.
fn unset(params: &mut Params, key: &str) {
    params.retain(|(k, _)| *k != key);
}

/// A well-formed authorization request of `rp` to tenant `t` (scope
/// `openid email offline_access`, S256 PKCE, a `state` that needs
/// encoding), changed by `edit`.
fn authorize_at(app: &TestApp, t: &str, rp: &Rp, edit: impl FnOnce(&mut Params)) -> Authz {
    let (verifier, challenge) = pkce_pair();
    let state = format!("st {}/é&=+?", uuid::Uuid::new_v4().simple());
    let nonce = format!("n-{}", uuid::Uuid::new_v4().simple());
    let mut params: Params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", rp.client_id.clone()),
        ("redirect_uri", rp.redirect_uri.clone()),
        ("scope", "openid email offline_access".to_owned()),
        ("state", state.clone()),
        ("nonce", nonce.clone()),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256".to_owned()),
    ];
    edit(&mut params);
    let redirect_uri = params
        .iter()
        .find(|(k, _)| *k == "redirect_uri")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let query = serde_urlencoded::to_string(&params).expect("query");
    Authz {
        url: app.url(&format!("/tenants/{t}/oauth/authorize?{query}")),
        state,
        nonce,
        verifier,
        redirect_uri,
    }
}

/// `/tenants/{t}/oauth/end_session` with these query parameters.
fn end_session_url(app: &TestApp, t: &str, params: &[(&str, &str)]) -> String {
    let query = serde_urlencoded::to_string(params).expect("query");
    app.url(&format!("/tenants/{t}/oauth/end_session?{query}"))
}

// ---------------------------------------------------------------------------
// Responses, URLs, cookies
// ---------------------------------------------------------------------------

fn header(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The `Location` of a response, resolved against the request URL.
pub(crate) fn location(res: &Response) -> Option<Url> {
    let raw = header(res, "location")?;
    Some(res.url().join(&raw).expect("a URL in Location"))
}

/// A query parameter of a URL, decoded.
pub(crate) fn param(url: &Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// The `Set-Cookie` header setting cookie `name`, if any.
fn set_cookie(res: &Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&prefix))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// SPEC §9: HttpOnly, SameSite=Lax, path `/tenants/{t}/`, not Secure on an
/// http public URL.
fn assert_browser_cookie(cookie: &str, t: &str) {
    let attrs: Vec<String> = cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.iter().any(|a| a == "httponly"), "HttpOnly: {cookie}");
    assert!(
        attrs.iter().any(|a| a == "samesite=lax"),
        "SameSite=Lax: {cookie}"
    );
    let path = format!("path=/tenants/{t}/");
    assert!(attrs.contains(&path), "{path}: {cookie}");
    assert!(
        !attrs.iter().any(|a| a == "secure"),
        "no Secure with an http public URL: {cookie}"
    );
}

/// An HTML answer that cannot be framed.
fn assert_html(res: &Response) {
    let ct = header(res, "content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/html"),
        "{}: content type {ct}",
        res.url()
    );
    let csp = header(res, "content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{}: CSP {csp}",
        res.url()
    );
}

/// The 400 HTML page of an authorization request latchkey must not
/// redirect; answers its body.
async fn assert_error_page(res: Response, what: &str) -> String {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
    assert!(
        res.headers().get("location").is_none(),
        "{what}: never redirected"
    );
    assert_html(&res);
    res.text().await.expect("html")
}

/// An authorization error redirected to the client (SPEC §9, RFC 9207).
fn assert_error_redirect(res: &Response, a: &Authz, issuer: &str, error: &str, what: &str) {
    assert_eq!(res.status(), StatusCode::FOUND, "{what}: redirected");
    let to = location(res).expect("Location");
    assert_eq!(without_query(&to), a.redirect_uri, "{what}: {to}");
    assert_eq!(param(&to, "error").as_deref(), Some(error), "{what}: {to}");
    assert!(
        param(&to, "error_description").is_some_and(|d| !d.is_empty()),
        "{what}: error_description in {to}"
    );
    assert_eq!(
        param(&to, "state").as_deref(),
        Some(a.state.as_str()),
        "{what}: {to}"
    );
    assert_eq!(param(&to, "iss").as_deref(), Some(issuer), "{what}: {to}");
    assert_eq!(param(&to, "code"), None, "{what}: {to}");
}

/// The code of a successful redirect back to the client, after checking
/// where it goes, `state` (exactly as sent) and `iss`.
fn code_from(url: &Url, a: &Authz, issuer: &str) -> String {
    assert_eq!(
        without_query(url),
        a.redirect_uri,
        "back at the client: {url}"
    );
    assert_eq!(param(url, "error"), None, "{url}");
    assert_eq!(
        param(url, "state").as_deref(),
        Some(a.state.as_str()),
        "state exactly as sent: {url}"
    );
    assert_eq!(
        param(url, "iss").as_deref(),
        Some(issuer),
        "RFC 9207: {url}"
    );
    param(url, "code").unwrap_or_else(|| panic!("no code in {url}"))
}

// ---------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------

/// The insides of every `<name …>` start tag.
fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}");
    html.match_indices(open.as_str())
        .filter_map(|(i, _)| {
            let rest = &html[i + open.len()..];
            if !rest.starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
                return None;
            }
            rest.find('>').map(|end| &rest[..end])
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A double-quoted attribute of a tag's insides.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!("{name}=\"");
    let mut from = 0;
    while let Some(i) = tag[from..].find(needle.as_str()) {
        let at = from + i;
        let start = at + needle.len();
        if at == 0 || tag[..at].ends_with(|c: char| c.is_ascii_whitespace()) {
            let end = start + tag[start..].find('"')?;
            return Some(unescape(&tag[start..end]));
        }
        from = start;
    }
    None
}

/// The value of the `<input name="…">` of a page.
fn input_value(html: &str, name: &str) -> Option<String> {
    tags(html, "input")
        .into_iter()
        .find(|tag| attr(tag, "name").as_deref() == Some(name))
        .and_then(|tag| attr(tag, "value"))
}

/// Every hidden input of a page: (name, value).
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    tags(html, "input")
        .into_iter()
        .filter(|tag| attr(tag, "type").as_deref() == Some("hidden"))
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value").unwrap_or_default())))
        .collect()
}

/// The `action` of a page's first form.
fn form_action(html: &str) -> Option<String> {
    tags(html, "form")
        .into_iter()
        .find_map(|tag| attr(tag, "action"))
}

/// Where a page's form posts: its `action`, else the page without query.
fn form_target(page_url: &Url, html: &str) -> Url {
    match form_action(html) {
        Some(action) => page_url.join(&action).expect("form action"),
        None => {
            let mut url = page_url.clone();
            url.set_query(None);
            url
        }
    }
}

/// The text of the `role="alert"` element.
fn alert_text(html: &str) -> Option<String> {
    let at = html.find("role=\"alert\"")?;
    let open = html[..at].rfind('<')?;
    let element: String = html[open + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let start = at + html[at..].find('>')? + 1;
    let end = start + html[start..].find(&format!("</{element}"))?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in html[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A page with its per-request parts blanked: every occurrence of
/// `secrets` and the value of every input.
fn masked(html: &str, secrets: &[&str]) -> String {
    let mut page = html.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        page = page.replace(*secret, "…");
    }
    let mut out = String::with_capacity(page.len());
    let mut rest = page.as_str();
    while let Some(i) = rest.find("value=\"") {
        let start = i + "value=\"".len();
        let Some(len) = rest[start..].find('"') else {
            break;
        };
        out.push_str(&rest[..start]);
        if !rest[..i].ends_with(|c: char| c.is_ascii_whitespace()) {
            out.push_str(&rest[start..start + len]);
        }
        rest = &rest[start + len..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// The browser
// ---------------------------------------------------------------------------

/// A browser: keeps cookies, follows no redirect; and its cookie jar.
fn browser_with_jar() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    (client, jar)
}

pub(crate) fn browser() -> reqwest::Client {
    browser_with_jar().0
}

/// The hosted login page as the browser got it.
struct LoginPage {
    /// Where its form posts.
    action: Url,
    tx: String,
    csrf: String,
}

impl LoginPage {
    fn parse(page_url: &Url, html: &str) -> Self {
        LoginPage {
            action: form_target(page_url, html),
            tx: input_value(html, "tx").unwrap_or_else(|| panic!("no tx input in {html}")),
            csrf: input_value(html, "csrf").unwrap_or_else(|| panic!("no csrf input in {html}")),
        }
    }
}

/// GETs a URL in the browser; answers where it redirects (302).
async fn redirected(browser: &reqwest::Client, url: &str) -> Url {
    let res = browser.get(url).send().await.expect("request");
    assert_eq!(res.status(), StatusCode::FOUND, "a redirect from {url}");
    location(&res).expect("Location")
}

fn is_login_page(url: &Url) -> bool {
    url.path().ends_with("/login")
}

/// Loads the login page at `url`.
async fn load_login(browser: &reqwest::Client, url: &Url) -> (LoginPage, String) {
    let res = browser.get(url.clone()).send().await.expect("login page");
    assert_eq!(res.status(), StatusCode::OK, "login page {url}");
    assert_html(&res);
    let html = res.text().await.expect("html");
    (LoginPage::parse(url, &html), html)
}

/// Follows an authorize URL to the login page (the browser has no session).
async fn open_login(browser: &reqwest::Client, authorize_url: &str) -> LoginPage {
    let res = browser.get(authorize_url).send().await.expect("authorize");
    assert_eq!(
        res.status(),
        StatusCode::FOUND,
        "authorize sends the browser to the login page"
    );
    let raw = header(&res, "location").expect("Location");
    assert!(
        raw.starts_with("/tenants/") && raw.contains("/login?tx="),
        "a path-absolute login page: {raw}"
    );
    let url = location(&res).expect("Location");
    load_login(browser, &url).await.0
}

/// Submits the login form.
async fn submit(
    browser: &reqwest::Client,
    page: &LoginPage,
    email: &str,
    password: &str,
) -> Response {
    browser
        .post(page.action.clone())
        .form(&[
            ("tx", page.tx.as_str()),
            ("csrf", page.csrf.as_str()),
            ("email", email),
            ("password", password),
        ])
        .send()
        .await
        .expect("login POST")
}

/// A refused sign-in: 400, the page again with its error announced, no
/// session cookie, no redirect. Answers (the alert's text, the page).
async fn refused_sign_in(res: Response) -> (String, String) {
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a refused sign-in");
    assert!(res.headers().get("location").is_none(), "no redirect");
    assert!(
        set_cookie(&res, "latchkey_session").is_none(),
        "no browser session"
    );
    assert_html(&res);
    let html = res.text().await.expect("html");
    let alert = alert_text(&html).unwrap_or_else(|| panic!("no role=\"alert\" element in {html}"));
    (alert, html)
}

/// Signs in through the login page an authorize URL leads to; answers the
/// redirect back to the client.
pub(crate) async fn sign_in(
    browser: &reqwest::Client,
    authorize_url: &str,
    email: &str,
    password: &str,
) -> Url {
    let page = open_login(browser, authorize_url).await;
    let res = submit(browser, &page, email, password).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "303 after the form POST"
    );
    location(&res).expect("Location")
}

/// The redirect back to the client: at once when the browser has a
/// session, else through the login page.
async fn authorize_in(browser: &reqwest::Client, authorize_url: &str, email: &str) -> Url {
    let to = redirected(browser, authorize_url).await;
    if !is_login_page(&to) {
        return to;
    }
    let (page, _) = load_login(browser, &to).await;
    let res = submit(browser, &page, email, USER_PASSWORD).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "303 after the form POST"
    );
    location(&res).expect("Location")
}

// ---------------------------------------------------------------------------
// The token endpoint
// ---------------------------------------------------------------------------

/// A token request authenticated as `rp`: client_secret_basic when it has
/// a secret, its `client_id` in the form otherwise.
async fn token_request(app: &TestApp, t: &str, rp: &Rp, form: &[(&str, &str)]) -> Response {
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut req = app.http.post(app.url(&format!("/tenants/{t}/oauth/token")));
    match &rp.secret {
        Some(secret) => req = req.basic_auth(&rp.client_id, Some(secret)),
        None => form.push(("client_id", rp.client_id.as_str())),
    }
    req.form(&form).send().await.expect("token request")
}

async fn exchange(
    app: &TestApp,
    t: &str,
    rp: &Rp,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> Response {
    token_request(
        app,
        t,
        rp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(app: &TestApp, t: &str, rp: &Rp, refresh_token: &str) -> Response {
    token_request(
        app,
        t,
        rp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

async fn assert_invalid_grant(res: Response, what: &str) {
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
}

/// A fresh code for `rp` from this browser (signing in when it must).
async fn fresh_code(
    app: &TestApp,
    s: &Tenant,
    browser: &reqwest::Client,
    rp: &Rp,
    edit: impl FnOnce(&mut Params),
) -> (Authz, String) {
    let a = authorize_at(app, &s.t, rp, edit);
    let back = authorize_in(browser, &a.url, &s.email).await;
    let code = code_from(&back, &a, &s.issuer);
    (a, code)
}

/// The whole flow for `rp` in this browser: (the request, the token answer).
async fn tokens(app: &TestApp, s: &Tenant, browser: &reqwest::Client, rp: &Rp) -> (Authz, Value) {
    let (a, code) = fresh_code(app, s, browser, rp, |_| {}).await;
    let res = exchange(app, &s.t, rp, &code, &a.redirect_uri, &a.verifier).await;
    let status = res.status();
    let body = json(res).await;
    assert_eq!(status, StatusCode::OK, "code exchange: {body}");
    (a, body)
}

// ---------------------------------------------------------------------------
// JWTs
// ---------------------------------------------------------------------------

fn b64_json(part: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn jwt_header(token: &str) -> Value {
    b64_json(token.split('.').next().expect("header"))
}

/// The claims of a JWT, unverified.
fn jwt_claims(token: &str) -> Value {
    b64_json(token.split('.').nth(1).expect("payload"))
}

/// Verifies an ES256 JWT with the key the tenant's JWKS names by its
/// `kid` (with `p256`, not the library latchkey signs with); answers its
/// claims.
async fn verified_es256(app: &TestApp, t: &str, token: &str) -> Value {
    let mut parts = token.split('.');
    let (h, p, sig) = (
        parts.next().expect("header"),
        parts.next().expect("payload"),
        parts.next().expect("signature"),
    );
    let header = b64_json(h);
    assert_eq!(header["alg"], "ES256", "{header}");
    let res = app
        .http
        .get(app.url(&format!("/tenants/{t}/.well-known/jwks.json")))
        .send()
        .await
        .expect("jwks");
    let jwks = json(res).await;
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    let x = URL_SAFE_NO_PAD.decode(str_of(jwk, "x")).expect("x");
    let y = URL_SAFE_NO_PAD.decode(str_of(jwk, "y")).expect("y");
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).expect("public key");
    let signature =
        Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).expect("signature")).expect("signature");
    key.verify(format!("{h}.{p}").as_bytes(), &signature)
        .expect("the signature verifies with the published key");
    b64_json(p)
}

/// OIDC Core §3.1.3.6 for ES256 and RS256: the left half of SHA-256.
fn at_hash_sha256(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

/// For EdDSA (Ed25519): the left half of SHA-512.
fn at_hash_sha512(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha512::digest(access_token.as_bytes())[..32])
}

/// `aud` is the client id (a string, or an array holding only it).
fn assert_aud(claims: &Value, client_id: &str) {
    assert!(
        claims["aud"] == client_id || claims["aud"] == json!([client_id]),
        "aud {client_id}: {claims}"
    );
}

// ---------------------------------------------------------------------------
// 1. The whole flow
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorization_code_flow_end_to_end() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);

    // No session yet: to the login page, with the sign-in cookie.
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let raw = header(&res, "location").expect("Location");
    assert!(
        raw.starts_with(&format!("/tenants/{}/login?tx=", s.t)),
        "{raw}"
    );
    let login_cookie = set_cookie(&res, "latchkey_login").expect("the sign-in cookie");
    assert_browser_cookie(&login_cookie, &s.t);
    let login_url = location(&res).expect("Location");

    // The page.
    let res = browser
        .get(login_url.clone())
        .send()
        .await
        .expect("login page");
    assert_eq!(res.status(), StatusCode::OK);
    assert_html(&res);
    let html = res.text().await.expect("html");
    assert!(
        html.contains(&format!("Tenant {}", s.t)),
        "the tenant's name: {html}"
    );
    for needle in [
        "lang=\"",
        "<label",
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
        "type=\"password\"",
    ] {
        assert!(html.contains(needle), "{needle} in {html}");
    }
    assert!(!html.contains("<script>"), "no inline script: {html}");
    let page = LoginPage::parse(&login_url, &html);

    // Sign in: 303 back to the client, with the session cookie.
    let res = submit(&browser, &page, &s.email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session_cookie = set_cookie(&res, "latchkey_session").expect("the session cookie");
    assert_browser_cookie(&session_cookie, &s.t);
    assert!(
        cookie_value(&session_cookie).len() >= 43,
        "256 bits: {session_cookie}"
    );
    let back = location(&res).expect("Location");
    let code = code_from(&back, &a, &s.issuer);
    assert!(code.len() >= 43, "a 256-bit code: {code}");

    // The code for tokens (client_secret_basic).
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "cache-control").as_deref(), Some("no-store"));
    let tokens = json(res).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["expires_in"].as_i64().is_some_and(|e| e > 0),
        "{tokens}"
    );
    let scopes: Vec<&str> = str_of(&tokens, "scope").split(' ').collect();
    for scope in ["openid", "email", "offline_access"] {
        assert!(scopes.contains(&scope), "{scope} granted: {tokens}");
    }
    let access = str_of(&tokens, "access_token");
    let refresh_token = str_of(&tokens, "refresh_token");
    let id_token = str_of(&tokens, "id_token");

    // The ID token.
    let id_header = jwt_header(id_token);
    assert_eq!(id_header["typ"], "JWT", "{id_header}");
    let claims = verified_es256(&app, &s.t, id_token).await;
    assert_eq!(claims["iss"], s.issuer.as_str());
    assert_eq!(claims["sub"], s.user_id.as_str());
    assert_aud(&claims, &s.rp.client_id);
    assert_eq!(claims["azp"], s.rp.client_id.as_str());
    assert_eq!(claims["nonce"], a.nonce.as_str());
    assert_eq!(claims["at_hash"], at_hash_sha256(access).as_str());
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["email"], s.email.as_str());
    assert!(claims["email_verified"].is_boolean(), "{claims}");
    let now = chrono::Utc::now().timestamp();
    let auth_time = claims["auth_time"].as_i64().expect("auth_time");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(auth_time <= iat && now - auth_time < 60, "{claims}");
    assert!(claims["exp"].as_i64().expect("exp") > now, "{claims}");
    let sid = str_of(&claims, "sid").to_owned();
    assert_eq!(jwt_claims(access)["sid"], sid.as_str(), "one session");
    assert!(
        !cookie_value(&session_cookie).contains(&sid),
        "the cookie holds a secret of its own, never the sid"
    );
    // An ID token is no access token.
    assert_eq!(
        app.get(&userinfo, id_token).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Userinfo.
    let res = app.get(&userinfo, access).await;
    assert_eq!(res.status(), StatusCode::OK);
    let info = json(res).await;
    assert_eq!(info["sub"], s.user_id.as_str());
    assert_eq!(info["email"], s.email.as_str());

    // Refresh: a new ID token for the same sign-in, without nonce.
    let res = refresh(&app, &s.t, &s.rp, refresh_token).await;
    let status = res.status();
    let rotated = json(res).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_access = str_of(&rotated, "access_token");
    let new_refresh = str_of(&rotated, "refresh_token");
    let again = verified_es256(&app, &s.t, str_of(&rotated, "id_token")).await;
    for claim in ["iss", "sub", "aud", "azp", "sid", "auth_time"] {
        assert_eq!(again[claim], claims[claim], "{claim}: {again}");
    }
    assert!(again.get("nonce").is_none(), "no nonce on refresh: {again}");
    assert_eq!(again["at_hash"], at_hash_sha256(new_access).as_str());

    // RP-initiated logout with a hint: back to the registered URI with state.
    let logout_state = format!("bye {}/+&=", uuid::Uuid::new_v4().simple());
    let url = end_session_url(
        &app,
        &s.t,
        &[
            ("id_token_hint", id_token),
            ("client_id", s.rp.client_id.as_str()),
            ("post_logout_redirect_uri", APP_SIGNED_OUT),
            ("state", logout_state.as_str()),
        ],
    );
    let res = browser.get(&url).send().await.expect("end_session");
    assert!(
        matches!(res.status(), StatusCode::FOUND | StatusCode::SEE_OTHER),
        "end_session redirects: {}",
        res.status()
    );
    let to = location(&res).expect("Location");
    assert_eq!(without_query(&to), APP_SIGNED_OUT);
    assert_eq!(param(&to, "state").as_deref(), Some(logout_state.as_str()));

    // The session is over, for tokens and for the browser.
    for token in [access, new_access] {
        let www = assert_unauthorized(app.get(&userinfo, token).await, "session_revoked").await;
        assert!(www.contains("error=\"invalid_token\""), "{www}");
    }
    assert_invalid_grant(
        refresh(&app, &s.t, &s.rp, new_refresh).await,
        "the refresh token after end_session",
    )
    .await;
    let next = authorize_at(&app, &s.t, &s.rp, |_| {});
    assert!(
        is_login_page(&redirected(&browser, &next.url).await),
        "the browser is signed out too"
    );
}

// ---------------------------------------------------------------------------
// 2. An independent relying-party library
// ---------------------------------------------------------------------------

/// openidconnect's async HTTP client, over reqwest 0.13 (the crate is
/// built without its own client features).
async fn oidc_http(
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, std::io::Error> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
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

/// A refreshed ID token carries no nonce.
fn no_nonce(nonce: Option<&openidconnect::Nonce>) -> Result<(), String> {
    match nonce {
        None => Ok(()),
        Some(_) => Err("a refreshed ID token carries no nonce".to_owned()),
    }
}

#[tokio::test]
async fn openidconnect_crate_completes_the_flow() {
    use openidconnect::core::{
        CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreUserInfoClaims,
    };
    use openidconnect::{
        AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
        OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
    };

    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for alg in ["ES256", "EdDSA", "RS256"] {
        let s = tenant(&app, &admin, json!({"signing_alg": alg})).await;
        let issuer = IssuerUrl::new(s.issuer.clone()).expect("issuer URL");
        let metadata = CoreProviderMetadata::discover_async(issuer, &oidc_http)
            .await
            .unwrap_or_else(|e| panic!("{alg}: discovery: {e:?}"));
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(s.rp.client_id.clone()),
            s.rp.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(s.rp.redirect_uri.clone()).expect("redirect URL"));

        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, csrf, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge)
            .url();

        let browser = browser();
        let back = sign_in(&browser, auth_url.as_str(), &s.email, USER_PASSWORD).await;
        assert_eq!(
            param(&back, "state").as_deref(),
            Some(csrf.secret().as_str()),
            "{alg}"
        );
        assert_eq!(
            param(&back, "iss").as_deref(),
            Some(s.issuer.as_str()),
            "{alg}"
        );
        let code = param(&back, "code").unwrap_or_else(|| panic!("{alg}: no code in {back}"));

        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .expect("a token endpoint")
            .set_pkce_verifier(pkce_verifier)
            .request_async(&oidc_http)
            .await
            .unwrap_or_else(|e| panic!("{alg}: code exchange: {e:?}"));
        let id_token = response.id_token().expect("an ID token");
        let id_verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&id_verifier, &nonce)
            .unwrap_or_else(|e| panic!("{alg}: the ID token does not verify: {e:?}"));
        assert_eq!(jwt_header(&id_token.to_string())["alg"], alg);
        assert_eq!(claims.subject().as_str(), s.user_id, "{alg}");
        assert_eq!(
            claims.email().map(|e| e.as_str()),
            Some(s.email.as_str()),
            "{alg}"
        );
        assert!(claims.auth_time().is_some(), "{alg}: auth_time");
        let expected = AccessTokenHash::from_token(
            response.access_token(),
            id_token.signing_alg().expect("signing alg"),
            id_token.signing_key(&id_verifier).expect("signing key"),
        )
        .expect("at_hash");
        assert_eq!(
            claims.access_token_hash(),
            Some(&expected),
            "{alg}: at_hash"
        );
        let manual = match alg {
            "EdDSA" => at_hash_sha512(response.access_token().secret()),
            _ => at_hash_sha256(response.access_token().secret()),
        };
        assert_eq!(
            jwt_claims(&id_token.to_string())["at_hash"],
            manual,
            "{alg}: at_hash"
        );

        let info: CoreUserInfoClaims = client
            .user_info(
                response.access_token().clone(),
                Some(claims.subject().clone()),
            )
            .expect("a userinfo endpoint")
            .request_async(&oidc_http)
            .await
            .unwrap_or_else(|e| panic!("{alg}: userinfo: {e:?}"));
        assert_eq!(
            info.email().map(|e| e.as_str()),
            Some(s.email.as_str()),
            "{alg}"
        );

        let refreshed = client
            .exchange_refresh_token(response.refresh_token().expect("a refresh token"))
            .expect("a token endpoint")
            .request_async(&oidc_http)
            .await
            .unwrap_or_else(|e| panic!("{alg}: refresh: {e:?}"));
        let again = refreshed
            .id_token()
            .expect("a new ID token on refresh")
            .claims(&id_verifier, no_nonce)
            .unwrap_or_else(|e| panic!("{alg}: the refreshed ID token: {e:?}"));
        assert_eq!(again.subject(), claims.subject(), "{alg}");
        assert_eq!(again.auth_time(), claims.auth_time(), "{alg}");
    }
}

// ---------------------------------------------------------------------------
// 3. Security cases: the authorization request
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_redirect_uri_not_registered_exactly_gets_an_error_page_and_no_redirect() {
    let (app, admin, s) = start().await;
    let rp = register_client(
        &app,
        &admin,
        &s.t,
        "confidential",
        &[
            "https://app.example.com/cb",
            "http://127.0.0.1/cb",
            "com.example.app:/callback",
        ],
        &[],
    )
    .await;
    let browser = browser();
    for bad in [
        "https://app.example.com/cb/",
        "https://app.example.com/CB",
        "https://APP.example.com/cb",
        "https://app.example.com/cb?x=1",
        "https://app.example.com:8443/cb",
        "https://app.example.com:443/cb",
        "http://app.example.com/cb",
        "https://app.example.com/cb#top",
        "https://app.example.com/c",
        "https://evil.example/cb",
        "http://127.0.0.1:4000/cb/",
        "http://127.0.0.1:4000/cb?x=1",
        "http://localhost:4000/cb",
        "http://[::1]:4000/cb",
        "com.example.app:/callback/",
        "com.example.evil:/callback",
        "",
    ] {
        let a = authorize_at(&app, &s.t, &rp, |p| set(p, "redirect_uri", bad));
        let res = browser.get(&a.url).send().await.expect("authorize");
        let html = assert_error_page(res, &format!("redirect_uri {bad:?}")).await;
        assert!(
            html.to_ascii_lowercase().contains("redirect"),
            "the page says what is wrong: {html}"
        );
    }
    let a = authorize_at(&app, &s.t, &rp, |p| unset(p, "redirect_uri"));
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_page(res, "no redirect_uri").await;

    // What is registered works: exactly, a loopback literal on any port,
    // a private-use scheme.
    for good in [
        "https://app.example.com/cb",
        "http://127.0.0.1/cb",
        "http://127.0.0.1:4000/cb",
        "http://127.0.0.1:65535/cb",
        "com.example.app:/callback",
    ] {
        let a = authorize_at(&app, &s.t, &rp, |p| set(p, "redirect_uri", good));
        let to = redirected(&browser, &a.url).await;
        assert!(is_login_page(&to), "{good}: {to}");
    }
}

#[tokio::test]
async fn an_unknown_client_gets_an_error_page_and_no_redirect() {
    let (app, admin, s) = start().await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "client_id", "no-such-client"));
    let res = browser.get(&a.url).send().await.expect("authorize");
    let html = assert_error_page(res, "unknown client_id").await;
    assert!(
        html.to_ascii_lowercase().contains("client"),
        "the page says what is wrong: {html}"
    );
    let a = authorize_at(&app, &s.t, &s.rp, |p| unset(p, "client_id"));
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_page(res, "no client_id").await;
    // A client of another tenant is unknown here.
    let other = tenant(&app, &admin, json!({})).await;
    let a = authorize_at(&app, &s.t, &other.rp, |_| {});
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_page(res, "a client of another tenant").await;
}

#[tokio::test]
async fn an_authorization_request_without_s256_pkce_is_redirected_invalid_request() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let cases = [
        (
            "no PKCE",
            authorize_at(&app, &s.t, &s.rp, |p| {
                unset(p, "code_challenge");
                unset(p, "code_challenge_method");
            }),
        ),
        (
            "code_challenge_method=plain",
            authorize_at(&app, &s.t, &s.rp, |p| {
                set(p, "code_challenge_method", "plain")
            }),
        ),
        (
            "a code_challenge without method (plain by default, RFC 7636 §4.3)",
            authorize_at(&app, &s.t, &s.rp, |p| unset(p, "code_challenge_method")),
        ),
        (
            "S256 without a code_challenge",
            authorize_at(&app, &s.t, &s.rp, |p| unset(p, "code_challenge")),
        ),
    ];
    for (what, a) in &cases {
        let res = browser.get(&a.url).send().await.expect("authorize");
        assert_error_redirect(&res, a, &s.issuer, "invalid_request", what);
    }
}

#[tokio::test]
async fn a_response_type_other_than_code_is_redirected_unsupported_response_type() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    for response_type in ["token", "id_token", "code id_token"] {
        let a = authorize_at(&app, &s.t, &s.rp, |p| {
            set(p, "response_type", response_type)
        });
        let res = browser.get(&a.url).send().await.expect("authorize");
        assert_error_redirect(
            &res,
            &a,
            &s.issuer,
            "unsupported_response_type",
            response_type,
        );
    }
}

#[tokio::test]
async fn a_client_without_the_authorization_code_grant_is_redirected_unauthorized_client() {
    let (app, admin, s) = start().await;
    let machine = register(
        &app,
        &admin,
        &s.t,
        json!({
            "type": "confidential",
            "name": "Batch job",
            "grant_types": ["client_credentials"],
            "redirect_uris": ["https://batch.example.com/cb"],
        }),
    )
    .await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &machine, |_| {});
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_redirect(
        &res,
        &a,
        &s.issuer,
        "unauthorized_client",
        "client_credentials only",
    );
}

#[tokio::test]
async fn prompt_none_without_a_session_redirects_login_required() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "prompt", "none"));
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_redirect(&res, &a, &s.issuer, "login_required", "prompt=none");

    // Signed in, prompt=none answers the code at once.
    tokens(&app, &s, &browser, &s.rp).await;
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "prompt", "none"));
    let back = redirected(&browser, &a.url).await;
    code_from(&back, &a, &s.issuer);
}

#[tokio::test]
async fn prompt_login_shows_the_login_page_to_a_signed_in_browser() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    tokens(&app, &s, &browser, &s.rp).await;
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "prompt", "login"));
    let to = redirected(&browser, &a.url).await;
    assert!(is_login_page(&to), "prompt=login: {to}");
    let (page, _) = load_login(&browser, &to).await;
    let res = submit(&browser, &page, &s.email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    code_from(&location(&res).expect("Location"), &a, &s.issuer);
}

#[tokio::test]
async fn a_signed_in_browser_gets_codes_without_the_page_for_every_client_of_the_tenant() {
    let (app, admin, s) = start().await;
    let spa = register_client(
        &app,
        &admin,
        &s.t,
        "public",
        &["http://127.0.0.1/callback"],
        &[],
    )
    .await;
    let browser = browser();
    let (_, first) = tokens(&app, &s, &browser, &s.rp).await;
    let first_claims = jwt_claims(str_of(&first, "id_token"));

    // The same client again: straight back with a code.
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let back = redirected(&browser, &a.url).await;
    let code = code_from(&back, &a, &s.issuer);
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Another client of the tenant (public, loopback redirect on a port of
    // its choosing): a code without the page, for the same sign-in.
    let a = authorize_at(&app, &s.t, &spa, |p| {
        set(p, "redirect_uri", "http://127.0.0.1:49152/callback")
    });
    let back = redirected(&browser, &a.url).await;
    let code = code_from(&back, &a, &s.issuer);
    let res = exchange(&app, &s.t, &spa, &code, &a.redirect_uri, &a.verifier).await;
    let status = res.status();
    let second = json(res).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second_claims = jwt_claims(str_of(&second, "id_token"));
    assert_aud(&second_claims, &spa.client_id);
    assert_eq!(second_claims["sid"], first_claims["sid"], "one session");
    assert_eq!(second_claims["auth_time"], first_claims["auth_time"]);

    // It is the §4 session /me/sessions lists.
    let res = app
        .get(
            &format!("/tenants/{}/me/sessions", s.t),
            str_of(&second, "access_token"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let list = json(res).await;
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], first_claims["sid"], "{list}");

    // Another tenant: this browser has not signed in there.
    let other = tenant(&app, &admin, json!({})).await;
    let a = authorize_at(&app, &other.t, &other.rp, |_| {});
    assert!(is_login_page(&redirected(&browser, &a.url).await));
}

/// A new browser signed in to `s` (a second authorize skips the page);
/// answers it and its tokens.
async fn signed_in_browser(app: &TestApp, s: &Tenant) -> (reqwest::Client, Value) {
    let browser = browser();
    let (_, tokens) = tokens(app, s, &browser, &s.rp).await;
    let a = authorize_at(app, &s.t, &s.rp, |_| {});
    assert!(
        !is_login_page(&redirected(&browser, &a.url).await),
        "signed in: no page"
    );
    (browser, tokens)
}

/// The next authorize request of this browser shows the login page.
async fn assert_signed_out(app: &TestApp, s: &Tenant, browser: &reqwest::Client, how: &str) {
    let a = authorize_at(app, &s.t, &s.rp, |_| {});
    assert!(
        is_login_page(&redirected(browser, &a.url).await),
        "after {how}, the browser signs in again"
    );
}

#[tokio::test]
async fn ending_the_session_through_the_api_ends_the_browser_sign_in() {
    let (app, admin, s) = start().await;

    // POST /tenants/{t}/logout with the access token.
    let (first, tokens) = signed_in_browser(&app, &s).await;
    let res = app
        .http
        .post(app.url(&format!("/tenants/{}/logout", s.t)))
        .bearer_auth(str_of(&tokens, "access_token"))
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_signed_out(&app, &s, &first, "logout").await;

    // An admin revoking the user's sessions.
    let (second, _) = signed_in_browser(&app, &s).await;
    let res = app
        .post_json(
            &format!("/admin/tenants/{}/users/{}/sessions/revoke", s.t, s.user_id),
            &admin,
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_signed_out(&app, &s, &second, "an admin revoke").await;

    // DELETE /me/sessions/{sid}.
    let (third, tokens) = signed_in_browser(&app, &s).await;
    let access = str_of(&tokens, "access_token");
    let sid = str_of(&jwt_claims(access), "sid").to_owned();
    let res = app
        .http
        .delete(app.url(&format!("/tenants/{}/me/sessions/{sid}", s.t)))
        .bearer_auth(access)
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_signed_out(&app, &s, &third, "DELETE /me/sessions").await;
}

// ---------------------------------------------------------------------------
// 3. Security cases: codes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_code_with_the_wrong_verifier_client_or_redirect_uri_is_invalid_grant() {
    let (app, admin, s) = start().await;
    let uris = [
        APP_CALLBACK,
        "https://app.example.com/other",
        "http://127.0.0.1/cb",
    ];
    let rp = register_client(&app, &admin, &s.t, "confidential", &uris, &[]).await;
    let other = register_client(&app, &admin, &s.t, "confidential", &uris, &[]).await;
    let public = register_client(&app, &admin, &s.t, "public", &uris, &[]).await;
    let browser = browser();

    let (a, code) = fresh_code(&app, &s, &browser, &rp, |_| {}).await;
    let (wrong_verifier, _) = pkce_pair();
    let res = exchange(&app, &s.t, &rp, &code, &a.redirect_uri, &wrong_verifier).await;
    assert_invalid_grant(res, "another code_verifier").await;

    let (a, code) = fresh_code(&app, &s, &browser, &rp, |_| {}).await;
    let res = exchange(&app, &s.t, &other, &code, &a.redirect_uri, &a.verifier).await;
    assert_invalid_grant(res, "another confidential client").await;

    let (a, code) = fresh_code(&app, &s, &browser, &public, |_| {}).await;
    let res = exchange(&app, &s.t, &other, &code, &a.redirect_uri, &a.verifier).await;
    assert_invalid_grant(res, "a public client's code, by a confidential one").await;

    let (a, code) = fresh_code(&app, &s, &browser, &rp, |_| {}).await;
    let res = exchange(
        &app,
        &s.t,
        &rp,
        &code,
        "https://app.example.com/other",
        &a.verifier,
    )
    .await;
    assert_invalid_grant(res, "another registered redirect_uri").await;

    let (a, code) = fresh_code(&app, &s, &browser, &rp, |p| {
        set(p, "redirect_uri", "http://127.0.0.1:4000/cb")
    })
    .await;
    let res = exchange(
        &app,
        &s.t,
        &rp,
        &code,
        "http://127.0.0.1:4001/cb",
        &a.verifier,
    )
    .await;
    assert_invalid_grant(res, "the loopback redirect_uri on another port").await;

    // Everything right: the checks are not refusing everything.
    let (a, code) = fresh_code(&app, &s, &browser, &rp, |_| {}).await;
    let res = exchange(&app, &s.t, &rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_reused_code_is_invalid_grant_and_revokes_the_tokens_of_its_first_use() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &s.rp, |_| {}).await;
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_eq!(res.status(), StatusCode::OK);
    let first = json(res).await;
    let access = str_of(&first, "access_token");
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);
    assert_eq!(app.get(&userinfo, access).await.status(), StatusCode::OK);

    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_invalid_grant(res, "the code used twice").await;
    assert_invalid_grant(
        refresh(&app, &s.t, &s.rp, str_of(&first, "refresh_token")).await,
        "the refresh token of the first exchange",
    )
    .await;
    assert_eq!(
        app.get(&userinfo, access).await.status(),
        StatusCode::UNAUTHORIZED,
        "the access token of the first exchange"
    );
}

#[tokio::test]
async fn two_concurrent_exchanges_of_one_code_give_exactly_one_success() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &s.rp, |_| {}).await;
    let (one, two) = tokio::join!(
        exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier),
        exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier),
    );
    let mut succeeded = 0;
    for res in [one, two] {
        if res.status() == StatusCode::OK {
            succeeded += 1;
        } else {
            assert_invalid_grant(res, "the other of two concurrent exchanges").await;
        }
    }
    assert_eq!(succeeded, 1);
}

/// SLOW: waits 61 s for a code to expire (codes live 60 s).
#[tokio::test]
async fn an_expired_code_is_invalid_grant() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &s.rp, |_| {}).await;
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    assert_invalid_grant(res, "a code 61 s old").await;
}

#[tokio::test]
async fn a_native_app_signs_in_with_a_private_use_scheme_redirect_as_a_public_client() {
    let (app, admin, s) = start().await;
    let native = register_client(
        &app,
        &admin,
        &s.t,
        "public",
        &["com.example.app:/oauth2redirect"],
        &[],
    )
    .await;
    let browser = browser();
    let (_, tokens) = tokens(&app, &s, &browser, &native).await;
    let access = str_of(&tokens, "access_token");
    let claims = verified_es256(&app, &s.t, str_of(&tokens, "id_token")).await;
    assert_aud(&claims, &native.client_id);
    assert_eq!(claims["at_hash"], at_hash_sha256(access).as_str());
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

// ---------------------------------------------------------------------------
// 3. Security cases: the login form, HTML answers, end_session, the cookie
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_login_form_refuses_a_post_without_its_csrf_token_or_with_another_browsers() {
    let (app, _admin, s) = start().await;
    let mine = browser();
    let theirs = browser();
    let stranger = browser();
    let page = open_login(&mine, &authorize_at(&app, &s.t, &s.rp, |_| {}).url).await;
    let other = open_login(&theirs, &authorize_at(&app, &s.t, &s.rp, |_| {}).url).await;
    assert_ne!(page.tx, other.tx);
    assert_ne!(page.csrf, other.csrf);
    let (email, password) = (s.email.as_str(), USER_PASSWORD);
    type Case<'a> = (&'a str, &'a reqwest::Client, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (
            "no csrf",
            &mine,
            vec![
                ("tx", page.tx.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "an empty csrf",
            &mine,
            vec![
                ("tx", page.tx.as_str()),
                ("csrf", ""),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "no tx",
            &mine,
            vec![
                ("csrf", page.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "another browser's tx and csrf",
            &mine,
            vec![
                ("tx", other.tx.as_str()),
                ("csrf", other.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "another browser's csrf",
            &mine,
            vec![
                ("tx", page.tx.as_str()),
                ("csrf", other.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "another browser's tx",
            &mine,
            vec![
                ("tx", other.tx.as_str()),
                ("csrf", page.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "a browser without the sign-in cookie",
            &stranger,
            vec![
                ("tx", page.tx.as_str()),
                ("csrf", page.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
        (
            "a browser with another sign-in cookie",
            &theirs,
            vec![
                ("tx", page.tx.as_str()),
                ("csrf", page.csrf.as_str()),
                ("email", email),
                ("password", password),
            ],
        ),
    ];
    for (what, who, form) in &cases {
        let res = who
            .post(page.action.clone())
            .form(form)
            .send()
            .await
            .expect("login POST");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{what}");
        assert!(
            set_cookie(&res, "latchkey_session").is_none(),
            "{what}: no session"
        );
        assert!(
            res.headers().get("location").is_none(),
            "{what}: no redirect, no code"
        );
    }
    for who in [&mine, &theirs, &stranger] {
        let a = authorize_at(&app, &s.t, &s.rp, |_| {});
        assert!(
            is_login_page(&redirected(who, &a.url).await),
            "no browser was signed in"
        );
    }
    // With the tokens of its own page, the browser signs in.
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let back = sign_in(&mine, &a.url, email, password).await;
    code_from(&back, &a, &s.issuer);
}

#[tokio::test]
async fn every_html_answer_forbids_framing() {
    let (app, _admin, s) = start().await;
    let browser = browser();

    // The login page (open_login checks it), and again after a wrong password.
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let page = open_login(&browser, &a.url).await;
    let res = submit(&browser, &page, &s.email, "not the password at all").await;
    refused_sign_in(res).await;

    // The error page.
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "client_id", "no-such-client"));
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_error_page(res, "unknown client").await;

    // The end_session confirmation page.
    let res = browser
        .get(end_session_url(&app, &s.t, &[("state", "x")]))
        .send()
        .await
        .expect("end_session");
    assert_eq!(res.status(), StatusCode::OK);
    assert_html(&res);

    // The signed-out page (a valid hint, no post_logout_redirect_uri).
    let (_, tokens) = tokens(&app, &s, &browser, &s.rp).await;
    let res = browser
        .get(end_session_url(
            &app,
            &s.t,
            &[("id_token_hint", str_of(&tokens, "id_token"))],
        ))
        .send()
        .await
        .expect("end_session");
    let res = if res.status().is_redirection() {
        let to = location(&res).expect("Location");
        assert!(
            to.as_str().starts_with(&app.base),
            "a page of latchkey: {to}"
        );
        browser.get(to).send().await.expect("signed-out page")
    } else {
        res
    };
    assert_eq!(res.status(), StatusCode::OK);
    assert_html(&res);
}

#[tokio::test]
async fn end_session_without_a_hint_asks_first_and_signs_out_on_the_confirmed_post() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (_, tokens) = tokens(&app, &s, &browser, &s.rp).await;
    let access = str_of(&tokens, "access_token");
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);

    let url = end_session_url(
        &app,
        &s.t,
        &[
            ("client_id", s.rp.client_id.as_str()),
            ("post_logout_redirect_uri", APP_SIGNED_OUT),
            ("state", "s1"),
        ],
    );
    let res = browser.get(&url).send().await.expect("end_session");
    assert_eq!(res.status(), StatusCode::OK, "a confirmation page");
    assert!(res.headers().get("location").is_none());
    assert_html(&res);
    let page_url = res.url().clone();
    let html = res.text().await.expect("html");
    assert!(html.contains("Sign out"), "{html}");
    let fields = hidden_inputs(&html);
    assert!(
        fields.iter().any(|(n, v)| n == "csrf" && !v.is_empty()),
        "a CSRF token: {html}"
    );
    let action = form_target(&page_url, &html);
    assert_eq!(
        app.get(&userinfo, access).await.status(),
        StatusCode::OK,
        "showing the page signs nobody out"
    );

    // A forged POST (no CSRF token) signs nobody out.
    let forged: Vec<(String, String)> = fields
        .iter()
        .filter(|(n, _)| n != "csrf")
        .cloned()
        .collect();
    let res = browser
        .post(action.clone())
        .form(&forged)
        .send()
        .await
        .expect("POST");
    // Without a token it is an application's POST with no hint: the page
    // asks again. A wrong token is refused.
    assert_eq!(res.status(), StatusCode::OK, "asked again");
    assert!(res.headers().get("location").is_none());
    let mut wrong = forged.clone();
    wrong.push(("csrf".to_owned(), "A".repeat(43)));
    let res = browser
        .post(action.clone())
        .form(&wrong)
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.get(&userinfo, access).await.status(), StatusCode::OK);

    // The confirmed POST does.
    let res = browser
        .post(action)
        .form(&fields)
        .send()
        .await
        .expect("POST");
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    assert_unauthorized(app.get(&userinfo, access).await, "session_revoked").await;
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    assert!(is_login_page(&redirected(&browser, &a.url).await));
}

#[tokio::test]
async fn an_id_token_of_another_tenant_is_no_hint() {
    let (app, admin, a) = start().await;
    let b = tenant(&app, &admin, json!({})).await;
    let browser = browser();
    let (_, tokens_a) = tokens(&app, &a, &browser, &a.rp).await;
    let (_, tokens_b) = tokens(&app, &b, &browser, &b.rp).await;

    for (what, hint) in [
        ("tenant A's ID token", str_of(&tokens_a, "id_token")),
        ("tenant B's access token", str_of(&tokens_b, "access_token")),
    ] {
        let url = end_session_url(
            &app,
            &b.t,
            &[
                ("id_token_hint", hint),
                ("client_id", b.rp.client_id.as_str()),
                ("post_logout_redirect_uri", APP_SIGNED_OUT),
                ("state", "s1"),
            ],
        );
        let res = browser.get(&url).send().await.expect("end_session");
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{what} as a hint: a confirmation page"
        );
        assert!(res.headers().get("location").is_none(), "{what}");
        assert_html(&res);
    }
    // Nobody was signed out.
    for (t, tokens) in [(&a.t, &tokens_a), (&b.t, &tokens_b)] {
        let res = app
            .get(
                &format!("/tenants/{t}/oauth/userinfo"),
                str_of(tokens, "access_token"),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK, "the session of {t}");
    }
}

#[tokio::test]
async fn end_session_never_redirects_to_an_unregistered_uri() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (_, tokens) = tokens(&app, &s, &browser, &s.rp).await;
    let id_token = str_of(&tokens, "id_token");
    for uri in [
        "https://evil.example/",
        "https://app.example.com/signed-out/",
        "https://app.example.com/signed-out?next=https://evil.example",
        // A redirect URI of the client, but not a post-logout one.
        APP_CALLBACK,
    ] {
        let url = end_session_url(
            &app,
            &s.t,
            &[
                ("id_token_hint", id_token),
                ("client_id", s.rp.client_id.as_str()),
                ("post_logout_redirect_uri", uri),
                ("state", "s1"),
            ],
        );
        let res = browser.get(&url).send().await.expect("end_session");
        if let Some(to) = location(&res) {
            assert!(
                to.as_str().starts_with(&app.base),
                "{uri}: redirected to {to}"
            );
        }
        assert!(!res.status().is_server_error(), "{uri}: {}", res.status());
    }
}

#[tokio::test]
async fn the_browser_cookie_is_never_a_bearer_token() {
    let (app, _admin, s) = start().await;
    let (browser, jar) = browser_with_jar();
    let (_, tokens) = tokens(&app, &s, &browser, &s.rp).await;
    let sid = str_of(&jwt_claims(str_of(&tokens, "access_token")), "sid").to_owned();

    let userinfo = Url::parse(&app.url(&format!("/tenants/{}/oauth/userinfo", s.t))).expect("url");
    let sent = jar
        .cookies(&userinfo)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    assert!(
        sent.contains("latchkey_session="),
        "the browser sends its session cookie to the API paths: {sent:?}"
    );
    assert!(!sent.contains(&sid), "the cookie is not the sid");

    for path in ["oauth/userinfo", "me/sessions"] {
        let res = browser
            .get(app.url(&format!("/tenants/{}/{path}", s.t)))
            .send()
            .await
            .expect("request");
        assert_unauthorized(res, "token_missing").await;
    }
    let res = browser
        .post(app.url(&format!("/tenants/{}/logout", s.t)))
        .send()
        .await
        .expect("logout");
    assert_unauthorized(res, "token_missing").await;
    // Still signed in.
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    assert!(!is_login_page(&redirected(&browser, &a.url).await));
}

// ---------------------------------------------------------------------------
// 4. Lockout and rate limits on the login form
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_login_form_locks_the_account_like_the_token_endpoint() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({"lockout_threshold": 3})).await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let mut page = open_login(&browser, &a.url).await;
    let mut wrong = String::new();
    for _ in 0..3 {
        let res = submit(&browser, &page, &s.email, "not the password at all").await;
        let (alert, html) = refused_sign_in(res).await;
        assert!(alert.contains(WRONG_CREDENTIALS), "{alert}");
        page = LoginPage::parse(&page.action, &html);
        wrong = alert;
    }
    // Locked: the right password gets the wrong-password answer.
    let res = submit(&browser, &page, &s.email, USER_PASSWORD).await;
    let (alert, _) = refused_sign_in(res).await;
    assert_eq!(alert, wrong, "locked");
    let res = app
        .get(
            &format!("/admin/tenants/{}/users/{}", s.t, s.user_id),
            &admin,
        )
        .await;
    assert_eq!(json(res).await["locked"], true);
    // The same lock at the token endpoint.
    let res = app.password_grant(&s.t, &s.email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json(res).await["error"], "invalid_grant");
    assert!(is_login_page(&redirected(&browser, &a.url).await));
}

#[tokio::test]
async fn a_lock_earned_at_the_token_endpoint_holds_on_the_login_form() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({"lockout_threshold": 3})).await;
    for _ in 0..3 {
        let res = app
            .password_grant(&s.t, &s.email, "not the password at all")
            .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    }
    let browser = browser();
    let page = open_login(&browser, &authorize_at(&app, &s.t, &s.rp, |_| {}).url).await;
    let res = submit(&browser, &page, &s.email, USER_PASSWORD).await;
    let (alert, _) = refused_sign_in(res).await;
    assert!(alert.contains(WRONG_CREDENTIALS), "{alert}");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_page() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let page = open_login(&browser, &authorize_at(&app, &s.t, &s.rp, |_| {}).url).await;
    let res = submit(&browser, &page, &s.email, "not the password at all").await;
    let (wrong_alert, wrong_html) = refused_sign_in(res).await;
    let next = LoginPage::parse(&page.action, &wrong_html);
    let unknown_email = format!("nobody@{}.test", s.t);
    let res = submit(&browser, &next, &unknown_email, "not the password at all").await;
    let (unknown_alert, unknown_html) = refused_sign_in(res).await;
    let after = LoginPage::parse(&page.action, &unknown_html);

    assert!(wrong_alert.contains(WRONG_CREDENTIALS), "{wrong_alert}");
    assert_eq!(wrong_alert, unknown_alert);
    let secrets = [
        page.tx.as_str(),
        page.csrf.as_str(),
        next.tx.as_str(),
        next.csrf.as_str(),
        after.tx.as_str(),
        after.csrf.as_str(),
        s.email.as_str(),
        unknown_email.as_str(),
    ];
    assert_eq!(
        masked(&wrong_html, &secrets),
        masked(&unknown_html, &secrets),
        "the same page apart from per-request values"
    );
}

#[tokio::test]
async fn the_login_form_answers_429_beyond_the_auth_burst_like_the_token_endpoint() {
    let app = spawn_app_with(|c| {
        c.rate_limit_auth_per_second = 1;
        c.rate_limit_auth_burst = 3;
    })
    .await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({})).await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let mut page = open_login(&browser, &a.url).await;
    // A full bucket again, whatever setting up took from it.
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..8 {
        let res = submit(&browser, &page, &s.email, "not the password at all").await;
        statuses.push(res.status().as_u16());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            if limited.is_none() {
                limited = Some(res);
            }
            continue;
        }
        let html = res.text().await.expect("html");
        if input_value(&html, "tx").is_some() {
            page = LoginPage::parse(&page.action, &html);
        }
    }
    let admitted = statuses.iter().filter(|s| **s != 429).count();
    assert!(
        (3..=4).contains(&admitted),
        "admitted {admitted}: {statuses:?}"
    );
    assert!(statuses[..3].iter().all(|s| *s == 400), "{statuses:?}");
    let res = limited.expect("a 429");
    assert!(res.headers().contains_key("retry-after"));
    // One budget with the token endpoint.
    let res = app.password_grant(&s.t, &s.email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------------------
// 5. CORS
// ---------------------------------------------------------------------------

async fn preflight(
    app: &TestApp,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> Response {
    app.http
        .request(reqwest::Method::OPTIONS, app.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", headers)
        .send()
        .await
        .expect("preflight")
}

fn allow_origin(res: &Response) -> Option<String> {
    header(res, "access-control-allow-origin")
}

#[tokio::test]
async fn token_revoke_and_userinfo_answer_cors_for_registered_redirect_origins_only() {
    let (app, admin, s) = start().await;
    let spa_origin = "https://spa.example.com";
    let spa = register_client(
        &app,
        &admin,
        &s.t,
        "public",
        &["https://spa.example.com/callback", "http://127.0.0.1/spa"],
        &[],
    )
    .await;
    let token = format!("/tenants/{}/oauth/token", s.t);
    let revoke = format!("/tenants/{}/oauth/revoke", s.t);
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);
    let endpoints = [
        (&token, "POST", "content-type"),
        (&revoke, "POST", "content-type"),
        (&userinfo, "GET", "authorization"),
    ];

    // Preflights: the origins of registered redirect URIs (loopback: any
    // port), of any client of the tenant.
    for origin in [spa_origin, "http://127.0.0.1:5173", APP_ORIGIN] {
        for (path, method, headers) in endpoints {
            let res = preflight(&app, path, origin, method, headers).await;
            assert!(
                res.status().is_success(),
                "preflight {path} from {origin}: {}",
                res.status()
            );
            assert_eq!(
                allow_origin(&res).as_deref(),
                Some(origin),
                "{path} from {origin}"
            );
            let methods = header(&res, "access-control-allow-methods")
                .unwrap_or_default()
                .to_ascii_uppercase();
            assert!(methods.contains(method), "{path} from {origin}: {methods}");
            let allowed = header(&res, "access-control-allow-headers")
                .unwrap_or_default()
                .to_ascii_lowercase();
            assert!(allowed.contains(headers), "{path} from {origin}: {allowed}");
        }
    }
    // Any other origin: no Access-Control-Allow-Origin at all.
    for origin in [
        "https://evil.example",
        "https://spa.example.com:8443",
        "http://spa.example.com",
        "https://spa.example.com.evil.example",
        "null",
    ] {
        for (path, method, headers) in endpoints {
            let res = preflight(&app, path, origin, method, headers).await;
            assert_eq!(allow_origin(&res), None, "preflight {path} from {origin}");
        }
        let res = app
            .http
            .post(app.url(&token))
            .header("Origin", origin)
            .form(&[
                ("grant_type", "refresh_token"),
                ("client_id", spa.client_id.as_str()),
                ("refresh_token", "nope"),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(allow_origin(&res), None, "token from {origin}");
    }

    // A single-page app's own flow, its token requests from its origin.
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &spa, |_| {}).await;
    let res = app
        .http
        .post(app.url(&token))
        .header("Origin", spa_origin)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", a.redirect_uri.as_str()),
            ("code_verifier", a.verifier.as_str()),
            ("client_id", spa.client_id.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(allow_origin(&res).as_deref(), Some(spa_origin));
    let tokens = json(res).await;
    let access = str_of(&tokens, "access_token");
    for (origin, expected) in [
        (spa_origin, Some(spa_origin)),
        ("https://evil.example", None),
    ] {
        let res = app
            .http
            .get(app.url(&userinfo))
            .bearer_auth(access)
            .header("Origin", origin)
            .send()
            .await
            .expect("userinfo");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            allow_origin(&res).as_deref(),
            expected,
            "userinfo from {origin}"
        );
    }
    // Its errors are readable too.
    let res = app
        .http
        .post(app.url(&token))
        .header("Origin", spa_origin)
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", spa.client_id.as_str()),
            ("refresh_token", "nope"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(allow_origin(&res).as_deref(), Some(spa_origin));
}

#[tokio::test]
async fn discovery_and_jwks_answer_any_origin_and_the_hosted_pages_none() {
    let (app, _admin, s) = start().await;
    for path in [
        format!("/tenants/{}/.well-known/openid-configuration", s.t),
        format!("/.well-known/oauth-authorization-server/tenants/{}", s.t),
        format!("/tenants/{}/.well-known/jwks.json", s.t),
    ] {
        let res = app
            .http
            .get(app.url(&path))
            .header("Origin", "https://anyone.example")
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(allow_origin(&res).as_deref(), Some("*"), "{path}");
    }

    // The hosted pages never answer CORS, not even to a registered origin.
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let res = browser
        .get(&a.url)
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .expect("authorize");
    assert_eq!(allow_origin(&res), None, "authorize");
    let login = location(&res).expect("Location");
    let res = browser
        .get(login.clone())
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .expect("login page");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(allow_origin(&res), None, "login page");
    let res = preflight(&app, login.path(), APP_ORIGIN, "POST", "content-type").await;
    assert_eq!(allow_origin(&res), None, "login preflight");
    let res = browser
        .get(end_session_url(&app, &s.t, &[("state", "x")]))
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .expect("end_session");
    assert_eq!(allow_origin(&res), None, "end_session");
}

// ---------------------------------------------------------------------------
// 6. Discovery
// ---------------------------------------------------------------------------

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[tokio::test]
async fn discovery_lists_every_field_of_spec_9_at_both_locations() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for alg in ["ES256", "EdDSA", "RS256"] {
        let t = slug("disc");
        app.create_tenant(&admin, &t, json!({"signing_alg": alg}))
            .await;
        let issuer = format!("{}/tenants/{t}", app.base);
        let mut documents = Vec::new();
        for path in [
            format!("/tenants/{t}/.well-known/openid-configuration"),
            format!("/.well-known/oauth-authorization-server/tenants/{t}"),
        ] {
            let res = app
                .http
                .get(app.url(&path))
                .send()
                .await
                .expect("discovery");
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            documents.push(json(res).await);
        }
        assert_eq!(
            documents[0], documents[1],
            "the same metadata at both locations"
        );
        let d = &documents[0];
        assert_eq!(d["issuer"], issuer.as_str());
        for (field, path) in [
            ("authorization_endpoint", "/oauth/authorize"),
            ("token_endpoint", "/oauth/token"),
            ("userinfo_endpoint", "/oauth/userinfo"),
            ("end_session_endpoint", "/oauth/end_session"),
            ("revocation_endpoint", "/oauth/revoke"),
            ("introspection_endpoint", "/oauth/introspect"),
            ("jwks_uri", "/.well-known/jwks.json"),
        ] {
            assert_eq!(d[field], format!("{issuer}{path}"), "{field}");
        }
        assert_eq!(d["response_types_supported"], json!(["code"]), "{d}");
        assert_eq!(d["response_modes_supported"], json!(["query"]), "{d}");
        assert_eq!(d["subject_types_supported"], json!(["public"]), "{d}");
        assert_eq!(
            d["id_token_signing_alg_values_supported"],
            json!([alg]),
            "the tenant's own algorithm"
        );
        assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(d["authorization_response_iss_parameter_supported"], true);
        assert_eq!(d["request_uri_parameter_supported"], false);
        let grants = strings(d, "grant_types_supported");
        for grant in ["authorization_code", "refresh_token"] {
            assert!(grants.iter().any(|g| g == grant), "{grant}: {grants:?}");
        }
        let scopes = strings(d, "scopes_supported");
        for scope in ["openid", "email", "offline_access"] {
            assert!(scopes.iter().any(|s| s == scope), "{scope}: {scopes:?}");
        }
        let methods = strings(d, "token_endpoint_auth_methods_supported");
        for method in ["client_secret_basic", "client_secret_post", "none"] {
            assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
        }
        let claims = strings(d, "claims_supported");
        for claim in ["sub", "email", "email_verified"] {
            assert!(claims.iter().any(|c| c == claim), "{claim}: {claims:?}");
        }
        for claim in ["roles", "scope", "jti", "tid", "client_id", "nbf"] {
            assert!(
                !claims.iter().any(|c| c == claim),
                "{claim} is an access-token claim: {claims:?}"
            );
        }
    }
}

#[tokio::test]
async fn self_signup_from_the_login_page_returns_to_the_same_sign_in() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let closed = tenant(&app, &admin, json!({})).await;
    let s = tenant(&app, &admin, json!({"self_signup": true})).await;

    // Closed tenant: no link, and the form is refused.
    let other_browser = browser();
    let browser = browser();
    let a = authorize_at(&app, &closed.t, &closed.rp, |_| {});
    let to = redirected(&browser, &a.url).await;
    let (page, html) = load_login(&browser, &to).await;
    assert!(!html.contains("/login/signup"), "no sign-up link: {html}");
    let res = browser
        .get(format!("{}/login/signup?tx={}", closed.issuer, page.tx))
        .send()
        .await
        .expect("signup page");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_html(&res);

    // Open tenant: the login page links to the form, which returns to the
    // same sign-in; the new account then signs in and gets a code.
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let to = redirected(&browser, &a.url).await;
    let (page, html) = load_login(&browser, &to).await;
    let link = format!("/tenants/{}/login/signup?tx={}", s.t, page.tx);
    assert!(html.contains(&link), "a sign-up link: {html}");
    let signup_url = to.join(&link).expect("url");
    let res = browser.get(signup_url.clone()).send().await.expect("form");
    assert_eq!(res.status(), StatusCode::OK);
    assert_html(&res);
    let form_html = res.text().await.expect("html");
    assert!(form_html.contains("autocomplete=\"new-password\""));
    let csrf = input_value(&form_html, "csrf").expect("csrf");
    let action = form_target(&signup_url, &form_html);
    let email = format!("newcomer@{}.test", s.t);

    // A weak password: the form again, 400, the reason announced.
    let res = browser
        .post(action.clone())
        .form(&[
            ("tx", page.tx.as_str()),
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("password", "short"),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(alert_text(&res.text().await.expect("html")).is_some());

    // Another browser's token: refused, no account.
    let res = other_browser
        .post(action.clone())
        .form(&[
            ("tx", page.tx.as_str()),
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("password", USER_PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    let res = browser
        .post(action)
        .form(&[
            ("tx", page.tx.as_str()),
            ("csrf", csrf.as_str()),
            ("email", email.as_str()),
            ("password", USER_PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = location(&res).expect("Location");
    assert!(is_login_page(&back), "{back}");
    assert_eq!(param(&back, "tx").as_deref(), Some(page.tx.as_str()));
    let (page, html) = load_login(&browser, &back).await;
    assert!(html.contains("role=\"status\""), "a notice: {html}");
    let res = submit(&browser, &page, &email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let redirect = location(&res).expect("Location");
    code_from(&redirect, &a, &s.issuer);
}

#[tokio::test]
async fn a_refresh_token_forged_from_an_access_tokens_jti_ends_nothing() {
    let (app, admin, s) = start().await;
    let spa = register_client(
        &app,
        &admin,
        &s.t,
        "public",
        &["https://spa.example.com/callback"],
        &[],
    )
    .await;
    let browser = browser();
    let (_, tokens) = tokens(&app, &s, &browser, &spa).await;
    let access = str_of(&tokens, "access_token");
    let jti = jwt_claims(access)["jti"].as_str().expect("jti").to_owned();
    // Whoever sees the access token knows its jti: a refresh token that
    // names it as its family (16 bytes of UUID, then 32 of anything) must
    // be just unknown, not "reuse" that ends the session.
    let uuid = uuid::Uuid::parse_str(&jti).expect("jti is a UUID");
    let mut forged = uuid.as_bytes().to_vec();
    forged.extend_from_slice(&[0u8; 32]);
    let forged = URL_SAFE_NO_PAD.encode(forged);
    assert_invalid_grant(refresh(&app, &s.t, &spa, &forged).await, "forged").await;
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);
    assert_eq!(app.get(&userinfo, access).await.status(), StatusCode::OK);
    let res = refresh(&app, &s.t, &spa, str_of(&tokens, "refresh_token")).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "the real refresh token still works"
    );
}

#[tokio::test]
async fn a_suspended_tenant_shows_no_login_form_and_signs_nobody_in() {
    let (app, admin, s) = start().await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let page = open_login(&browser, &a.url).await;
    let res = app
        .patch_json(
            &format!("/admin/tenants/{}", s.t),
            &admin,
            &json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // The form opened before the suspension is refused with the right
    // password: no session, no code.
    let res = submit(&browser, &page, &s.email, USER_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.headers().get("location").is_none());
    assert!(set_cookie(&res, "latchkey_session").is_none());
    assert_html(&res);
    let res = browser.get(page.action.clone()).send().await.expect("page");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn repeated_parameters_never_redirect_for_the_client_and_unknown_ones_are_ignored() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    // client_id or redirect_uri twice: the page, whatever else is repeated.
    for key in ["client_id", "redirect_uri"] {
        let a = authorize_at(&app, &s.t, &s.rp, |p| {
            p.insert(0, ("x", "1".to_owned()));
            p.insert(0, ("x", "2".to_owned()));
            let value = p.iter().find(|(k, _)| *k == key).expect("param").1.clone();
            p.push((key, value));
        });
        let res = browser.get(&a.url).send().await.expect("authorize");
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{key}");
        assert!(res.headers().get("location").is_none(), "{key}");
    }
    // A known parameter twice: invalid_request at the client.
    let a = authorize_at(&app, &s.t, &s.rp, |p| {
        p.push(("scope", "openid".to_owned()))
    });
    let res = browser.get(&a.url).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let to = location(&res).expect("Location");
    assert_eq!(param(&to, "error").as_deref(), Some("invalid_request"));
    // An unknown parameter twice is ignored (RFC 6749 §3.1).
    let a = authorize_at(&app, &s.t, &s.rp, |p| {
        p.push(("ui_locales", "en".to_owned()));
        p.push(("ui_locales", "de".to_owned()));
    });
    assert!(is_login_page(&redirected(&browser, &a.url).await));
}

#[tokio::test]
async fn userinfo_names_the_email_only_with_the_email_scope() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &s.rp, |p| set(p, "scope", "openid")).await;
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    let tokens = json(res).await;
    assert_eq!(str_of(&tokens, "scope"), "openid");
    let id = jwt_claims(str_of(&tokens, "id_token"));
    assert!(id.get("email").is_none(), "{id}");
    let res = app
        .get(
            &format!("/tenants/{}/oauth/userinfo", s.t),
            str_of(&tokens, "access_token"),
        )
        .await;
    let info = json(res).await;
    assert_eq!(info["sub"], s.user_id.as_str());
    assert!(info.get("email").is_none(), "{info}");
}

#[tokio::test]
async fn the_hosted_pages_live_under_the_public_urls_path() {
    let app =
        spawn_app_with(|c| c.public_url = Some("http://id.example.test/auth".to_owned())).await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({})).await;
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let res = browser().get(&a.url).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let raw = header(&res, "location").expect("Location");
    assert!(
        raw.starts_with(&format!("/auth/tenants/{}/login?tx=", s.t)),
        "{raw}"
    );
    let cookie = set_cookie(&res, "latchkey_login").expect("binding cookie");
    assert!(
        cookie.contains(&format!("Path=/auth/tenants/{}/", s.t)),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_password_change_a_disable_or_refresh_reuse_ends_the_browser_sign_in() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let s = tenant(&app, &admin, json!({"refresh_grace_seconds": 0})).await;
    let user = format!("/admin/tenants/{}/users/{}", s.t, s.user_id);

    // Refresh-token reuse ends the session, and with it the browser's.
    let (first, tokens) = signed_in_browser(&app, &s).await;
    let old = str_of(&tokens, "refresh_token").to_owned();
    let res = refresh(&app, &s.t, &s.rp, &old).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_invalid_grant(refresh(&app, &s.t, &s.rp, &old).await, "reuse").await;
    assert_signed_out(&app, &s, &first, "refresh token reuse").await;

    // An admin setting a new password.
    let (second, _) = signed_in_browser(&app, &s).await;
    let res = app
        .patch_json(
            &user,
            &admin,
            &json!({"password": "nine silver trains cross the bay"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_signed_out(&app, &s, &second, "a password change").await;
    let res = app
        .patch_json(&user, &admin, &json!({"password": USER_PASSWORD}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Disabling the user.
    let (third, _) = signed_in_browser(&app, &s).await;
    let res = app
        .patch_json(&user, &admin, &json!({"status": "disabled"}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_signed_out(&app, &s, &third, "disabling the user").await;
}

#[tokio::test]
async fn a_state_that_could_not_be_sent_back_exactly_is_refused() {
    let (app, _admin, s) = start().await;
    let a = authorize_at(&app, &s.t, &s.rp, |p| set(p, "state", "caf\u{e9}\u{1}"));
    let res = browser().get(&a.url).send().await.expect("authorize");
    assert_eq!(res.status(), StatusCode::FOUND);
    let to = location(&res).expect("Location");
    assert_eq!(param(&to, "error").as_deref(), Some("invalid_request"));
    assert_eq!(param(&to, "state"), None, "never sent back altered");
}

#[tokio::test]
async fn another_sessions_id_token_cannot_sign_a_browser_out_without_asking() {
    let (app, _admin, s) = start().await;
    // The hint comes from one browser (an attacker's own sign-in, say);
    // the victim's browser is signed in with a session of its own.
    let attacker = browser();
    let (_, theirs) = tokens(&app, &s, &attacker, &s.rp).await;
    let (victim, ours) = signed_in_browser(&app, &s).await;
    let url = end_session_url(
        &app,
        &s.t,
        &[
            ("id_token_hint", str_of(&theirs, "id_token")),
            ("post_logout_redirect_uri", APP_SIGNED_OUT),
        ],
    );
    let res = victim.get(&url).send().await.expect("end_session");
    assert_eq!(res.status(), StatusCode::OK, "asked first");
    assert!(res.headers().get("location").is_none());
    assert!(
        set_cookie(&res, "latchkey_session").is_none(),
        "cookie kept"
    );
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    assert!(
        !is_login_page(&redirected(&victim, &a.url).await),
        "still signed in"
    );
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);
    assert_eq!(
        app.get(&userinfo, str_of(&ours, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );
    // The hint's own session did end.
    assert_unauthorized(
        app.get(&userinfo, str_of(&theirs, "access_token")).await,
        "session_revoked",
    )
    .await;
}

#[tokio::test]
async fn a_used_code_replayed_through_another_client_revokes_nothing() {
    let (app, admin, s) = start().await;
    let spa = register_client(
        &app,
        &admin,
        &s.t,
        "public",
        &["https://spa.example.com/cb"],
        &[],
    )
    .await;
    let browser = browser();
    let (a, code) = fresh_code(&app, &s, &browser, &s.rp, |_| {}).await;
    let res = exchange(&app, &s.t, &s.rp, &code, &a.redirect_uri, &a.verifier).await;
    let tokens = json(res).await;
    // Someone who found the used code tries it as the public client.
    let res = exchange(
        &app,
        &s.t,
        &spa,
        &code,
        "https://spa.example.com/cb",
        &a.verifier,
    )
    .await;
    assert_invalid_grant(res, "another client").await;
    let userinfo = format!("/tenants/{}/oauth/userinfo", s.t);
    assert_eq!(
        app.get(&userinfo, str_of(&tokens, "access_token"))
            .await
            .status(),
        StatusCode::OK
    );
    let res = refresh(&app, &s.t, &s.rp, str_of(&tokens, "refresh_token")).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn one_login_form_posted_many_times_at_once_signs_in_once() {
    let (app, _admin, s) = start().await;
    let browser = browser();
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let page = open_login(&browser, &a.url).await;
    let posts = futures_util::future::join_all(
        (0..8).map(|_| submit(&browser, &page, &s.email, USER_PASSWORD)),
    )
    .await;
    let signed_in = posts
        .iter()
        .filter(|r| r.status() == StatusCode::SEE_OTHER)
        .count();
    assert_eq!(signed_in, 1, "one sign-in, one code");
    assert!(
        posts
            .iter()
            .all(|r| r.status() == StatusCode::SEE_OTHER || r.status() == StatusCode::BAD_REQUEST)
    );
}

#[tokio::test]
async fn a_binding_cookie_latchkey_did_not_issue_is_not_trusted() {
    let (app, _admin, s) = start().await;
    // A cookie planted by someone who knows its value (a sibling domain):
    // the CSRF token they compute from it is refused.
    let (browser, jar) = browser_with_jar();
    let planted = "attacker-known-value";
    let base = Url::parse(&app.base).expect("base");
    jar.add_cookie_str(
        &format!("latchkey_login={planted}; Path=/tenants/{}/", s.t),
        &base,
    );
    let a = authorize_at(&app, &s.t, &s.rp, |_| {});
    let res = browser.get(&a.url).send().await.expect("authorize");
    let replaced = set_cookie(&res, "latchkey_login").expect("a new binding cookie");
    assert_ne!(cookie_value(&replaced), planted);
    let to = location(&res).expect("Location");
    let (page, _) = load_login(&browser, &to).await;
    // What the planter would compute: HMAC(planted, "login:{tx}").
    let forged = {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, planted.as_bytes());
        URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("login:{}", page.tx).as_bytes()).as_ref())
    };
    assert_ne!(forged, page.csrf);
}

#[tokio::test]
async fn the_hosted_pages_answer_wrong_methods_and_unknown_paths_in_html() {
    let (app, _admin, s) = start().await;
    for (method, path) in [
        (reqwest::Method::PUT, format!("/tenants/{}/login", s.t)),
        (
            reqwest::Method::DELETE,
            format!("/tenants/{}/oauth/authorize", s.t),
        ),
        (reqwest::Method::GET, format!("/tenants/{}/login/nope", s.t)),
    ] {
        let res = app
            .http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .expect("request");
        assert!(res.status().is_client_error(), "{method} {path}");
        assert_html(&res);
    }
}
