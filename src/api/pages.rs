//! The hosted pages of delegated login (SPEC §9): the authorization
//! endpoint, the login and sign-up forms, and RP-initiated logout.
//!
//! Every answer is HTML rendered by askama (auto-escaping, no script), with
//! a Content-Security-Policy that forbids framing and scripts and lets the
//! form's redirect reach only the application it belongs to. The cookies
//! here (`latchkey_session`: the browser's sign-in; `latchkey_login`: what
//! binds a form to this browser) are read by these pages only.

use std::collections::HashMap;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;
use utoipa_actix_web::service_config::ServiceConfig;

use super::extract::{app_state, load_tenant, origin, realm};
use super::read_form_body;
use crate::authn::{id_token, random_token, sha256_hex};
use crate::config::Secret;
use crate::domain::{GrantType, redirect_target_source, redirect_uri_matches};
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::service::authorize::{
    self as flow, Authorization, AuthorizeParams, BrowserSession, Refusal, SignIn,
};
use crate::service::oauth::WRONG_CREDENTIALS;
use crate::service::oauth::signin::{check_password, start_session};
use crate::state::AppState;
use crate::store::db::tenants::Tenant;
use crate::store::session::EndReason;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(authorize);
    cfg.service(login_page);
    cfg.service(login_submit);
    cfg.service(signup_page);
    cfg.service(signup_submit);
    cfg.service(stylesheet);
    cfg.service(end_session_get);
    cfg.service(end_session_post);
}

/// The browser's sign-in to the tenant (SSO).
pub const SESSION_COOKIE: &str = "latchkey_session";
/// A random secret per browser that forms are bound to (CSRF).
pub const BROWSER_COOKIE: &str = "latchkey_login";

/// The policy of every hosted page: nothing but latchkey's stylesheet
/// loads, nothing frames it, and forms post to latchkey; `targets` are the
/// sources the redirect after a form may reach (Chromium applies
/// `form-action` to it).
pub fn page_csp(targets: &[String]) -> String {
    let mut form_action = String::from("'self'");
    for t in targets {
        form_action.push(' ');
        form_action.push_str(t);
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
         form-action {form_action}; frame-ancestors 'none'"
    )
}

fn html(status: StatusCode, body: String, targets: &[String]) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_SECURITY_POLICY, page_csp(targets)))
        .body(body)
}

fn render(t: &impl Template) -> AppResult<String> {
    t.render().map_err(AppError::internal)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    tenant_name: &'a str,
    base: &'a str,
    tx: &'a str,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    signup: bool,
}

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage<'a> {
    tenant_name: &'a str,
    base: &'a str,
    tx: &'a str,
    csrf: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    min_length: u32,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    tenant_name: &'a str,
    base: &'a str,
    title: &'a str,
    message: &'a str,
    alert: bool,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    tenant_name: &'a str,
    base: &'a str,
    csrf: &'a str,
    client_id: Option<&'a str>,
    post_logout_redirect_uri: Option<&'a str>,
    state: Option<&'a str>,
}

/// The path every page of a tenant lives under, as the browser sees it:
/// below the path of `LATCHKEY_PUBLIC_URL` (a proxy that serves latchkey
/// under `/auth` strips it before latchkey sees the request).
fn base_of(state: &AppState, tenant: &str) -> String {
    let after_scheme = state
        .public_url
        .split_once("://")
        .map_or("", |(_, rest)| rest);
    let prefix = after_scheme
        .find('/')
        .map_or("", |i| after_scheme[i..].trim_end_matches('/'));
    format!("{prefix}/tenants/{tenant}")
}

/// A suspended tenant signs nobody in (SPEC §2), here as at the token endpoint.
fn suspended(state: &AppState, tenant: &Tenant) -> Option<AppResult<HttpResponse>> {
    (tenant.status == crate::domain::TenantStatus::Suspended).then(|| {
        message(
            state,
            tenant,
            StatusCode::FORBIDDEN,
            "Sign-in unavailable",
            "This organization is suspended: nobody can sign in to it for now.",
        )
    })
}

/// A page that only says something (errors, signed out).
fn message(
    state: &AppState,
    tenant: &Tenant,
    status: StatusCode,
    title: &str,
    text: &str,
) -> AppResult<HttpResponse> {
    let base = base_of(state, &tenant.slug);
    let body = render(&MessagePage {
        tenant_name: &tenant.name,
        base: &base,
        title,
        message: text,
        alert: status.is_client_error() || status.is_server_error(),
    })?;
    Ok(html(status, body, &[]))
}

/// Runs a page handler: errors become HTML pages in the tenant's realm.
async fn page<F>(req: &HttpRequest, body: F) -> Result<HttpResponse, AppError>
where
    F: Future<Output = AppResult<HttpResponse>>,
{
    let realm = realm(req);
    body.await
        .map_err(|e| e.in_flavor(Flavor::Html).with_realm(&realm))
}

/// The cookie attributes of SPEC §9: HttpOnly, SameSite=Lax, the tenant's
/// path, Secure when the public URL is https.
fn cookie<'c>(state: &AppState, tenant: &str, name: &'c str, value: String) -> Cookie<'c> {
    Cookie::build(name, value)
        .path(format!("{}/", base_of(state, tenant)))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.public_url.starts_with("https://"))
        .finish()
}

fn removal<'c>(state: &AppState, tenant: &str, name: &'c str) -> Cookie<'c> {
    let mut c = cookie(state, tenant, name, String::new());
    c.make_removal();
    c
}

fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.cookie(name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// A binding cookie latchkey issued: `{random}.{mac}`, the MAC under a
/// key derived from the master key. A value planted by anyone else (a
/// sibling domain, plain http) is not one, so its CSRF tokens are unknown.
fn signed_binding(state: &AppState, value: &str) -> bool {
    let Some((random, mac)) = value.split_once('.') else {
        return false;
    };
    let expected =
        URL_SAFE_NO_PAD.encode(state.keys.master().mac(BROWSER_COOKIE, random.as_bytes()));
    expected.as_bytes().ct_eq(mac.as_bytes()).into()
}

/// The browser's binding secret, if it sent one latchkey issued.
fn browser_binding(state: &AppState, req: &HttpRequest) -> Option<String> {
    cookie_value(req, BROWSER_COOKIE).filter(|v| signed_binding(state, v))
}

/// The browser's binding secret, and whether it is new (to be set).
fn browser_secret(state: &AppState, req: &HttpRequest) -> (String, bool) {
    match browser_binding(state, req) {
        Some(v) => (v, false),
        None => {
            let random = random_token();
            let mac =
                URL_SAFE_NO_PAD.encode(state.keys.master().mac(BROWSER_COOKIE, random.as_bytes()));
            (format!("{random}.{mac}"), true)
        }
    }
}

/// The CSRF token of a form: HMAC-SHA256 of its purpose under the
/// browser's secret, so it is bound to this browser and this sign-in.
fn csrf_token(browser: &str, purpose: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, browser.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, purpose.as_bytes()).as_ref())
}

fn csrf_ok(state: &AppState, req: &HttpRequest, purpose: &str, presented: Option<&str>) -> bool {
    let (Some(browser), Some(presented)) = (browser_binding(state, req), presented) else {
        return false;
    };
    csrf_token(&browser, purpose)
        .as_bytes()
        .ct_eq(presented.as_bytes())
        .into()
}

/// Query or form pairs (the first value of each name), and the names sent
/// more than once.
fn pairs_of(raw: &[u8]) -> Option<(HashMap<String, String>, Vec<String>)> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).ok()?;
    let mut map = HashMap::new();
    let mut repeated: Vec<String> = Vec::new();
    for (k, v) in pairs {
        if map.contains_key(&k) && !repeated.contains(&k) {
            repeated.push(k.clone());
        }
        map.entry(k).or_insert(v);
    }
    Some((map, repeated))
}

/// A form body of a page (at most `LATCHKEY_MAX_BODY_BYTES`).
async fn read_form(req: &HttpRequest, payload: web::Payload) -> AppResult<HashMap<String, String>> {
    let body = read_form_body(req, payload).await?;
    pairs_of(&body).map(|(map, _)| map).ok_or_else(|| {
        AppError::new(
            ErrorCode::InvalidRequest,
            "The form is not valid form encoding.",
        )
    })
}

/// Whether the caller asked for JSON rather than a page.
fn wants_json(req: &HttpRequest) -> bool {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    (accept.contains("application/json") || accept.contains("application/problem+json"))
        && !accept.contains("text/html")
}

fn found(location: &str) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The page of a sign-in that is over, or that this browser did not start.
fn expired(state: &AppState, tenant: &Tenant) -> AppResult<HttpResponse> {
    message(
        state,
        tenant,
        StatusCode::BAD_REQUEST,
        "Sign-in expired",
        "This sign-in has expired or was started in another browser. \
         Go back to the application and sign in again.",
    )
}

/// GET /tenants/{t}/oauth/authorize
#[utoipa::path(
    tag = "oauth",
    params(
        ("t" = String, Path, description = "Tenant slug"),
        ("response_type" = String, Query, description = "`code`"),
        ("client_id" = String, Query, description = "A client with the `authorization_code` grant"),
        ("redirect_uri" = String, Query, description = "One of the client's `redirect_uris`, exactly (loopback IP literals: any port)"),
        ("scope" = Option<String>, Query, description = "`openid`, `email`, `offline_access`; others are dropped"),
        ("state" = Option<String>, Query, description = "Returned as sent"),
        ("nonce" = Option<String>, Query, description = "Put in the ID token"),
        ("code_challenge" = String, Query, description = "PKCE (RFC 7636), required"),
        ("code_challenge_method" = String, Query, description = "`S256`"),
        ("prompt" = Option<String>, Query, description = "`none` or `login`"),
        ("max_age" = Option<String>, Query, description = "Seconds since the sign-in beyond which the user signs in again"),
        ("login_hint" = Option<String>, Query, description = "The e-mail to pre-fill")
    ),
    responses(
        (status = 302, description = "To the login page, or to `redirect_uri` with `code`, `state` and `iss` (or `error`, `error_description`, `state`, `iss`)"),
        (status = 400, description = "Unknown client, or a missing or unregistered `redirect_uri`: never redirected", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[get("/tenants/{t}/oauth/authorize")]
pub async fn authorize(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let json = wants_json(&req);
    let result = page(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        let Some((raw, repeated)) = pairs_of(req.query_string().as_bytes()) else {
            return refuse_without_redirect(
                &state,
                &tenant,
                "The query string is malformed.",
                json,
            );
        };
        let text = |k: &str| raw.get(k).cloned();
        let params = AuthorizeParams {
            response_type: text("response_type"),
            client_id: text("client_id"),
            redirect_uri: text("redirect_uri"),
            scope: text("scope"),
            state: text("state"),
            nonce: text("nonce"),
            code_challenge: text("code_challenge"),
            code_challenge_method: text("code_challenge_method"),
            prompt: text("prompt"),
            max_age: text("max_age"),
            login_hint: text("login_hint"),
            request: text("request"),
            request_uri: text("request_uri"),
        };
        // RFC 6749 §3.1: unknown parameters are ignored, known ones appear once.
        let repeated: Vec<String> = repeated
            .into_iter()
            .filter(|n| flow::PARAMETERS.contains(&n.as_str()))
            .collect();
        let authorization = match flow::check(&state, &tenant, params, &repeated).await? {
            Ok((_, a)) => a,
            Err(Refusal::NoRedirect(why)) => {
                return refuse_without_redirect(&state, &tenant, &why, json);
            }
            Err(Refusal::Redirect(e)) => {
                return Ok(found(&flow::error_location(&state, &tenant.slug, &e)));
            }
        };
        // The redirect URI is trusted from here on: a failure is the
        // application's `server_error` (SPEC §9), not a page.
        match answer_authorization(&state, &req, &tenant, authorization.clone()).await {
            Ok(res) => Ok(res),
            Err(e) => {
                // Logged as every failure is; the browser goes back.
                let _ = actix_web::ResponseError::error_response(&e);
                let e = flow::ErrorRedirect {
                    redirect_uri: authorization.redirect_uri,
                    error: "server_error",
                    description: "The sign-in could not be started; try again.".to_owned(),
                    state: authorization.state,
                };
                Ok(found(&flow::error_location(&state, &tenant.slug, &e)))
            }
        }
    })
    .await;
    if json {
        return result.map_err(|e| e.in_flavor(Flavor::Problem));
    }
    result
}

/// A checked authorization request: a code at once for a signed-in
/// browser, else the login page (or `login_required` for `prompt=none`).
async fn answer_authorization(
    state: &AppState,
    req: &HttpRequest,
    tenant: &Tenant,
    authorization: Authorization,
) -> AppResult<HttpResponse> {
    if let Some(cookie) = cookie_value(req, SESSION_COOKIE)
        && let Some(session) = flow::browser_session(state, &tenant.slug, &cookie).await?
        && flow::session_satisfies(&session, &authorization)
    {
        let location = flow::issue_code(state, &tenant.slug, &authorization, &session).await?;
        return Ok(found(&location));
    }
    if authorization.prompt_none {
        let e = flow::ErrorRedirect {
            redirect_uri: authorization.redirect_uri.clone(),
            error: "login_required",
            description: "The user is not signed in.".to_owned(),
            state: authorization.state.clone(),
        };
        return Ok(found(&flow::error_location(state, &tenant.slug, &e)));
    }
    let (browser, new_browser) = browser_secret(state, req);
    let sign_in = SignIn {
        authorization,
        browser: sha256_hex(&browser),
    };
    let tx = flow::start_sign_in(state, &tenant.slug, &sign_in).await?;
    let mut res = found(&format!(
        "{}/login?{}",
        base_of(state, &tenant.slug),
        serde_urlencoded::to_string([("tx", tx.as_str())]).unwrap_or_default()
    ));
    if new_browser {
        res.add_cookie(&cookie(state, &tenant.slug, BROWSER_COOKIE, browser))
            .map_err(AppError::internal)?;
    }
    Ok(res)
}

/// SPEC §9: unknown client or redirect URI: a 400 page (problem+json when
/// the caller asked for JSON), never a redirect.
fn refuse_without_redirect(
    state: &AppState,
    tenant: &Tenant,
    why: &str,
    json: bool,
) -> AppResult<HttpResponse> {
    if json {
        return Err(AppError::new(ErrorCode::InvalidRequest, why).with_realm(&tenant.slug));
    }
    message(
        state,
        tenant,
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        &format!("{why} Tell the application's developers; you cannot continue from here."),
    )
}

/// The sign-in a form or page belongs to, if it is open and was started in
/// this browser.
async fn open_sign_in(
    state: &AppState,
    req: &HttpRequest,
    tenant: &str,
    tx: Option<&str>,
) -> AppResult<Option<SignIn>> {
    let (Some(tx), Some(browser)) = (tx, browser_binding(state, req)) else {
        return Ok(None);
    };
    let Some(sign_in) = flow::sign_in(state, tenant, tx).await? else {
        return Ok(None);
    };
    let same_browser: bool = sha256_hex(&browser)
        .as_bytes()
        .ct_eq(sign_in.browser.as_bytes())
        .into();
    Ok(same_browser.then_some(sign_in))
}

/// The sign-in a posted form (`purpose` `login` or `signup`) belongs to,
/// with its `tx`, when the sign-in is open, was started in this browser and
/// the form carries this browser's CSRF token for it.
async fn posted_sign_in(
    state: &AppState,
    req: &HttpRequest,
    tenant: &Tenant,
    form: &mut HashMap<String, String>,
    purpose: &str,
) -> AppResult<Option<(String, SignIn)>> {
    let tx = form.remove("tx").unwrap_or_default();
    let csrf = form.remove("csrf");
    let sign_in = open_sign_in(state, req, &tenant.slug, Some(&tx)).await?;
    Ok(sign_in
        .filter(|_| csrf_ok(state, req, &format!("{purpose}:{tx}"), csrf.as_deref()))
        .map(|s| (tx, s)))
}

fn login_form(
    state: &AppState,
    tenant: &Tenant,
    req: &HttpRequest,
    tx: &str,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> AppResult<String> {
    let browser = browser_binding(state, req).unwrap_or_default();
    let base = base_of(state, &tenant.slug);
    render(&LoginPage {
        tenant_name: &tenant.name,
        base: &base,
        tx,
        csrf: &csrf_token(&browser, &format!("login:{tx}")),
        email,
        error,
        notice,
        signup: tenant.settings.self_signup,
    })
}

/// Where the redirect after the login form goes (its CSP source).
fn targets_of(authorization: &Authorization) -> Vec<String> {
    redirect_target_source(&authorization.redirect_uri)
        .into_iter()
        .collect()
}

#[derive(serde::Deserialize, Default)]
struct TxQuery {
    tx: Option<String>,
    created: Option<String>,
}

/// GET /tenants/{t}/login
#[utoipa::path(
    tag = "oauth",
    params(
        ("t" = String, Path, description = "Tenant slug"),
        ("tx" = String, Query, description = "The sign-in the authorization endpoint started")
    ),
    responses(
        (status = 200, description = "The login form", content_type = "text/html", body = String),
        (status = 400, description = "The sign-in expired or belongs to another browser", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[get("/tenants/{t}/login")]
pub async fn login_page(req: HttpRequest) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        if let Some(page) = suspended(&state, &tenant) {
            return page;
        }
        let q: TxQuery = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        let Some(sign_in) = open_sign_in(&state, &req, &tenant.slug, q.tx.as_deref()).await? else {
            return expired(&state, &tenant);
        };
        let tx = q.tx.unwrap_or_default();
        let notice = q
            .created
            .is_some()
            .then_some("Your account is ready. Sign in with it.");
        let hint = sign_in
            .authorization
            .login_hint
            .as_deref()
            .unwrap_or_default();
        let body = login_form(&state, &tenant, &req, &tx, hint, None, notice)?;
        Ok(html(
            StatusCode::OK,
            body,
            &targets_of(&sign_in.authorization),
        ))
    })
    .await
}

/// The login form's fields.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LoginForm {
    tx: String,
    csrf: String,
    email: String,
    #[schema(format = Password)]
    password: String,
}

/// POST /tenants/{t}/login
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed in: to `redirect_uri` with `code`, `state` and `iss`; sets the browser's session cookie"),
        (status = 400, description = "Wrong e-mail or password (or a locked account), or a form that expired or belongs to another browser", content_type = "text/html", body = String),
        (status = 413, description = "The form is larger than `LATCHKEY_MAX_BODY_BYTES`", content_type = "text/html", body = String),
        (status = 415, description = "The form is not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[post("/tenants/{t}/login")]
pub async fn login_submit(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        if let Some(page) = suspended(&state, &tenant) {
            return page;
        }
        let mut form = read_form(&req, payload).await?;
        let Some((tx, sign_in)) = posted_sign_in(&state, &req, &tenant, &mut form, "login").await?
        else {
            return expired(&state, &tenant);
        };
        let authorization = &sign_in.authorization;
        let targets = targets_of(authorization);
        let email = form.remove("email").unwrap_or_default();
        let password = Secret::new(form.remove("password").unwrap_or_default());
        let origin = origin(&req, None);
        let wrong = |email: &str| -> AppResult<HttpResponse> {
            let body = login_form(
                &state,
                &tenant,
                &req,
                &tx,
                email,
                Some(WRONG_CREDENTIALS),
                None,
            )?;
            Ok(html(StatusCode::BAD_REQUEST, body, &targets))
        };
        let Some(signed_in) = check_password(&state, &tenant, &email, &password, &origin).await?
        else {
            return wrong(&email);
        };
        let client = state
            .client(&tenant.slug, &authorization.client_id)
            .await?
            .filter(|c| {
                c.enabled
                    && c.allows(GrantType::AuthorizationCode)
                    && c.redirect_uris
                        .iter()
                        .any(|r| redirect_uri_matches(r, &authorization.redirect_uri))
            });
        if client.is_none() {
            return message(
                &state,
                &tenant,
                StatusCode::BAD_REQUEST,
                "This application is not available",
                "The application you came from can no longer sign users in here.",
            );
        }
        if !flow::finish_sign_in(&state, &tenant.slug, &tx).await? {
            return expired(&state, &tenant);
        }
        let Some(session) = start_session(
            &state,
            &tenant,
            &authorization.client_id,
            &signed_in,
            true,
            &origin,
        )
        .await?
        else {
            return wrong(&email);
        };
        let browser_session = BrowserSession {
            sid: session.id.clone(),
            user_id: session.user_id.clone(),
            auth_time: session.created_at,
        };
        let secret = flow::start_browser_session(&state, &tenant, &browser_session).await?;
        if let Some(old) = cookie_value(&req, SESSION_COOKIE) {
            flow::forget_browser_session(&state, &tenant.slug, &old).await?;
        }
        let location =
            flow::issue_code(&state, &tenant.slug, authorization, &browser_session).await?;
        let mut res = see_other(&location);
        res.add_cookie(&cookie(&state, &tenant.slug, SESSION_COOKIE, secret))
            .map_err(AppError::internal)?;
        Ok(res)
    })
    .await
}

fn signup_form(
    state: &AppState,
    tenant: &Tenant,
    req: &HttpRequest,
    tx: &str,
    email: &str,
    error: Option<&str>,
) -> AppResult<String> {
    let browser = browser_binding(state, req).unwrap_or_default();
    let base = base_of(state, &tenant.slug);
    render(&SignupPage {
        tenant_name: &tenant.name,
        base: &base,
        tx,
        csrf: &csrf_token(&browser, &format!("signup:{tx}")),
        email,
        error,
        min_length: tenant.settings.password_min_length,
    })
}

fn signup_closed(state: &AppState, tenant: &Tenant) -> AppResult<HttpResponse> {
    message(
        state,
        tenant,
        StatusCode::FORBIDDEN,
        "Sign-up is closed",
        "This organization does not let people create their own accounts.",
    )
}

/// GET /tenants/{t}/login/signup
#[utoipa::path(
    tag = "oauth",
    params(
        ("t" = String, Path, description = "Tenant slug"),
        ("tx" = String, Query, description = "The sign-in to return to")
    ),
    responses(
        (status = 200, description = "The sign-up form", content_type = "text/html", body = String),
        (status = 400, description = "The sign-in expired or belongs to another browser", content_type = "text/html", body = String),
        (status = 403, description = "The tenant does not allow self sign-up", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[get("/tenants/{t}/login/signup")]
pub async fn signup_page(req: HttpRequest) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        if let Some(page) = suspended(&state, &tenant) {
            return page;
        }
        if !tenant.settings.self_signup {
            return signup_closed(&state, &tenant);
        }
        let q: TxQuery = serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        if open_sign_in(&state, &req, &tenant.slug, q.tx.as_deref())
            .await?
            .is_none()
        {
            return expired(&state, &tenant);
        }
        let body = signup_form(
            &state,
            &tenant,
            &req,
            q.tx.as_deref().unwrap_or_default(),
            "",
            None,
        )?;
        Ok(html(StatusCode::OK, body, &[]))
    })
    .await
}

/// POST /tenants/{t}/login/signup
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Account created: back to the login form of the same sign-in"),
        (status = 400, description = "The e-mail or password is not acceptable, or the form expired", content_type = "text/html", body = String),
        (status = 403, description = "The tenant does not allow self sign-up", content_type = "text/html", body = String),
        (status = 413, description = "The form is larger than `LATCHKEY_MAX_BODY_BYTES`", content_type = "text/html", body = String),
        (status = 415, description = "The form is not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[post("/tenants/{t}/login/signup")]
pub async fn signup_submit(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let state = app_state(&req)?;
        let tenant = load_tenant(&state, &realm(&req)).await?;
        if !tenant.settings.self_signup || tenant.status != crate::domain::TenantStatus::Active {
            return signup_closed(&state, &tenant);
        }
        let mut form = read_form(&req, payload).await?;
        let Some((tx, _)) = posted_sign_in(&state, &req, &tenant, &mut form, "signup").await?
        else {
            return expired(&state, &tenant);
        };
        let email = form.remove("email").unwrap_or_default();
        let password = Secret::new(form.remove("password").unwrap_or_default());
        match crate::service::users::create(&state, &tenant, &email, &password, &origin(&req, None))
            .await
        {
            Ok(_) => Ok(see_other(&format!(
                "{}/login?{}",
                base_of(&state, &tenant.slug),
                serde_urlencoded::to_string([("tx", tx.as_str()), ("created", "1")])
                    .unwrap_or_default()
            ))),
            Err(e) if e.code() == ErrorCode::Conflict => {
                let body = signup_form(
                    &state,
                    &tenant,
                    &req,
                    &tx,
                    &email,
                    Some("An account with this e-mail exists already: sign in with it."),
                )?;
                Ok(html(StatusCode::BAD_REQUEST, body, &[]))
            }
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::ValidationFailed | ErrorCode::WeakPassword
                ) =>
            {
                let body = signup_form(&state, &tenant, &req, &tx, &email, Some(e.detail()))?;
                Ok(html(StatusCode::BAD_REQUEST, body, &[]))
            }
            Err(e) => Err(e),
        }
    })
    .await
}

/// GET /tenants/{t}/login/style.css
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    responses((status = 200, description = "The hosted pages' stylesheet", content_type = "text/css", body = String))
)]
#[get("/tenants/{t}/login/style.css")]
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../templates/style.css"))
}

/// What an end-session request carries (OIDC RP-Initiated Logout 1.0 §2).
#[derive(Default)]
struct EndSessionParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    csrf: Option<String>,
}

impl EndSessionParams {
    fn from_map(mut m: HashMap<String, String>) -> Self {
        let mut take = |k: &str| m.remove(k).filter(|v| !v.is_empty());
        Self {
            id_token_hint: take("id_token_hint"),
            client_id: take("client_id"),
            post_logout_redirect_uri: take("post_logout_redirect_uri"),
            state: take("state").filter(|s| s.len() <= 2048),
            csrf: take("csrf"),
        }
    }
}

/// Where the browser goes after signing out: `post_logout_redirect_uri`
/// with `state`, when the client registered it; else nowhere.
async fn post_logout_target(
    state: &AppState,
    tenant: &str,
    client_id: Option<&str>,
    params: &EndSessionParams,
) -> AppResult<Option<String>> {
    let (Some(client_id), Some(uri)) = (client_id, params.post_logout_redirect_uri.as_deref())
    else {
        return Ok(None);
    };
    if !crate::service::clients::valid_client_id(client_id) {
        return Ok(None);
    }
    let registered = state.client(tenant, client_id).await?.is_some_and(|c| {
        c.enabled
            && c.post_logout_redirect_uris
                .iter()
                .any(|r| redirect_uri_matches(r, uri))
    });
    if !registered {
        return Ok(None);
    }
    let params: Vec<(&str, &str)> = params.state.iter().map(|s| ("state", s.as_str())).collect();
    Ok(Some(if params.is_empty() {
        uri.to_owned()
    } else {
        flow::redirect_with(uri, &params)
    }))
}

/// Ends a session and the browser's sign-in to it; records the logout.
async fn end_browser_sign_in(
    state: &AppState,
    req: &HttpRequest,
    tenant: &Tenant,
    sid: &str,
    user_id: &str,
) -> AppResult<()> {
    state
        .sessions
        .end_session(&tenant.slug, sid, EndReason::Revoked, state.linger(tenant))
        .await?;
    let who = origin(req, Some(user_id));
    crate::service::audit::record(
        state,
        &tenant.slug,
        "logout",
        "success",
        Some(user_id),
        &who,
    )
    .await;
    Ok(())
}

async fn end_session(
    req: &HttpRequest,
    params: EndSessionParams,
    is_post: bool,
) -> AppResult<HttpResponse> {
    let state = app_state(req)?;
    let tenant = load_tenant(&state, &realm(req)).await?;
    let hint = match params.id_token_hint.as_deref() {
        Some(token) => {
            id_token::verify_hint(&state.keys, &state.public_url, &tenant.slug, token).await
        }
        None => None,
    };
    // OIDC RP-Initiated Logout §2: a client_id must name the hint's client.
    let hint = hint.filter(|h| params.client_id.as_deref().is_none_or(|c| c == h.aud));
    let client_id = hint
        .as_ref()
        .map(|h| h.aud.clone())
        .or_else(|| params.client_id.clone());
    let target = post_logout_target(&state, &tenant.slug, client_id.as_deref(), &params).await?;
    let browser_cookie = cookie_value(req, SESSION_COOKIE);
    let browser = match &browser_cookie {
        Some(c) => flow::browser_session(&state, &tenant.slug, c).await?,
        None => None,
    };
    let ended = if let Some(hint) = &hint {
        end_browser_sign_in(&state, req, &tenant, &hint.sid, &hint.sub).await?;
        // A browser signed in with another session is asked first: any ID
        // token (an attacker's own, old one) is a valid hint, and must not
        // sign a stranger's browser out from a link elsewhere.
        browser.as_ref().is_none_or(|b| b.sid == hint.sid)
    } else if is_post && params.csrf.is_some() {
        if !csrf_ok(&state, req, "end_session", params.csrf.as_deref()) {
            return message(
                &state,
                &tenant,
                StatusCode::BAD_REQUEST,
                "Sign-out expired",
                "This sign-out form expired or came from another browser. Nothing was changed.",
            );
        }
        if let Some(b) = &browser {
            end_browser_sign_in(&state, req, &tenant, &b.sid, &b.user_id).await?;
        }
        true
    } else {
        false
    };
    if !ended {
        // No proof the application asked: the user confirms first, so a
        // link elsewhere cannot sign anyone out.
        let (secret, new_browser) = browser_secret(&state, req);
        let base = base_of(&state, &tenant.slug);
        let body = render(&LogoutPage {
            tenant_name: &tenant.name,
            base: &base,
            csrf: &csrf_token(&secret, "end_session"),
            client_id: params.client_id.as_deref(),
            post_logout_redirect_uri: params.post_logout_redirect_uri.as_deref(),
            state: params.state.as_deref(),
        })?;
        let targets: Vec<String> = target
            .as_deref()
            .and_then(redirect_target_source)
            .into_iter()
            .collect();
        let mut res = html(StatusCode::OK, body, &targets);
        if new_browser {
            res.add_cookie(&cookie(&state, &tenant.slug, BROWSER_COOKIE, secret))
                .map_err(AppError::internal)?;
        }
        return Ok(res);
    }
    // SPEC §9: the browser's sign-in ends too (the cookie is cleared).
    let clear = browser_cookie.is_some();
    if clear && let Some(c) = &browser_cookie {
        flow::forget_browser_session(&state, &tenant.slug, c).await?;
    }
    let mut res = match &target {
        Some(location) if is_post => see_other(location),
        Some(location) => found(location),
        None => message(
            &state,
            &tenant,
            StatusCode::OK,
            "Signed out",
            "You are signed out. You can close this window.",
        )?,
    };
    if clear {
        res.add_removal_cookie(&removal(&state, &tenant.slug, SESSION_COOKIE))
            .map_err(AppError::internal)?;
    }
    Ok(res)
}

/// GET /tenants/{t}/oauth/end_session
#[utoipa::path(
    tag = "oauth",
    params(
        ("t" = String, Path, description = "Tenant slug"),
        ("id_token_hint" = Option<String>, Query, description = "An ID token this tenant signed (expired or not)"),
        ("client_id" = Option<String>, Query, description = "The client asking"),
        ("post_logout_redirect_uri" = Option<String>, Query, description = "One of the client's `post_logout_redirect_uris`"),
        ("state" = Option<String>, Query, description = "Returned as sent")
    ),
    responses(
        (status = 302, description = "Signed out: to `post_logout_redirect_uri` with `state`"),
        (status = 200, description = "Signed out (no registered redirect), or, without a valid `id_token_hint`, a page that asks to confirm", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[get("/tenants/{t}/oauth/end_session")]
pub async fn end_session_get(req: HttpRequest) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let params = pairs_of(req.query_string().as_bytes())
            .map(|(m, _)| EndSessionParams::from_map(m))
            .unwrap_or_default();
        end_session(&req, params, false).await
    })
    .await
}

/// The end-session form (or an application's POST).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EndSessionForm {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// The confirmation page's token.
    csrf: Option<String>,
}

/// POST /tenants/{t}/oauth/end_session
#[utoipa::path(
    tag = "oauth",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body(content = EndSessionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "Signed out: to `post_logout_redirect_uri` with `state`"),
        (status = 200, description = "Signed out, or a page that asks to confirm", content_type = "text/html", body = String),
        (status = 400, description = "The confirmation expired or came from another browser", content_type = "text/html", body = String),
        (status = 413, description = "The form is larger than `LATCHKEY_MAX_BODY_BYTES`", content_type = "text/html", body = String),
        (status = 415, description = "The form is not application/x-www-form-urlencoded", content_type = "text/html", body = String),
        (status = 404, description = "No such tenant", content_type = "text/html", body = String)
    )
)]
#[post("/tenants/{t}/oauth/end_session")]
pub async fn end_session_post(
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    page(&req, async {
        let form = read_form(&req, payload).await?;
        end_session(&req, EndSessionParams::from_map(form), true).await
    })
    .await
}
