//! OIDC discovery and the JWKS of each tenant.

use super::extract::load_tenant;
use crate::api::responses::{NotFound, Unavailable};
use actix_web::get;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::authn::keys::Jwk;
use crate::error::AppResult;
use crate::state::AppState;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(discovery);
    cfg.service(authorization_server_metadata);
    cfg.service(jwks);
}

/// Browser applications read discovery and keys from any origin (SPEC §9).
const ANY_ORIGIN: (&str, &str) = ("Access-Control-Allow-Origin", "*");

/// OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414 §2): every
/// value is true of the tenant it describes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    grant_types_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    /// The algorithms of the tenant's published keys: the one that signs,
    /// and during a change of algorithm the one that will.
    id_token_signing_alg_values_supported: Vec<String>,
    code_challenge_methods_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    scopes_supported: Vec<&'static str>,
    /// The end-user claims of ID tokens and userinfo.
    claims_supported: Vec<&'static str>,
    prompt_values_supported: Vec<&'static str>,
    authorization_response_iss_parameter_supported: bool,
    request_parameter_supported: bool,
    request_uri_parameter_supported: bool,
    claims_parameter_supported: bool,
}

/// OpenID Provider metadata of the tenant.
#[utoipa::path(
    tag = "discovery",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "OpenID Provider metadata", body = Discovery),
        NotFound,
        Unavailable
    )
)]
#[get("/tenants/{t}/.well-known/openid-configuration")]
pub async fn discovery(
    state: web::Data<AppState>,
    t: web::Path<String>,
) -> AppResult<HttpResponse> {
    metadata(&state, &t).await
}

/// The same metadata at the RFC 8414 §3 location for the issuer
/// `{public_url}/tenants/{t}`.
#[utoipa::path(
    tag = "discovery",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "Authorization server metadata (RFC 8414)", body = Discovery),
        NotFound,
        Unavailable
    )
)]
#[get("/.well-known/oauth-authorization-server/tenants/{t}")]
pub async fn authorization_server_metadata(
    state: web::Data<AppState>,
    t: web::Path<String>,
) -> AppResult<HttpResponse> {
    metadata(&state, &t).await
}

async fn metadata(state: &AppState, t: &str) -> AppResult<HttpResponse> {
    let tenant = load_tenant(state, t).await?;
    let keys = state.keys.keys(t).await?;
    let mut algs = vec![tenant.settings.signing_alg.as_str().to_owned()];
    for jwk in &keys.jwks {
        if !algs.contains(&jwk.alg) {
            algs.push(jwk.alg.clone());
        }
    }
    let issuer = state.issuer(t);
    let auth_methods = vec!["client_secret_basic", "client_secret_post", "none"];
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .insert_header(ANY_ORIGIN)
        .json(Discovery {
            authorization_endpoint: format!("{issuer}/oauth/authorize"),
            token_endpoint: format!("{issuer}/oauth/token"),
            userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            end_session_endpoint: format!("{issuer}/oauth/end_session"),
            revocation_endpoint: format!("{issuer}/oauth/revoke"),
            introspection_endpoint: format!("{issuer}/oauth/introspect"),
            issuer,
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            grant_types_supported: vec![
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "password",
            ],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: algs,
            code_challenge_methods_supported: vec!["S256"],
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            revocation_endpoint_auth_methods_supported: auth_methods,
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            scopes_supported: crate::service::authorize::KNOWN_SCOPES.to_vec(),
            // End-user claims (OIDC Discovery §3): of the ID token and userinfo.
            claims_supported: vec!["sub", "email", "email_verified"],
            prompt_values_supported: vec!["none", "login"],
            authorization_response_iss_parameter_supported: true,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            claims_parameter_supported: false,
        }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// The tenant's public keys: the active one and retired ones that still verify.
#[utoipa::path(
    tag = "discovery",
    params(("t" = String, Path, description = "Tenant slug")),
    responses(
        (status = 200, description = "Active, pending and still-verifying keys", body = JwkSet),
        NotFound,
        Unavailable
    )
)]
#[get("/tenants/{t}/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>, t: web::Path<String>) -> AppResult<HttpResponse> {
    load_tenant(&state, &t).await?;
    let keys = state.keys.keys(&t).await?;
    // A cache may keep key material no longer than a new key is published
    // before it signs, or it would refuse that key's tokens.
    let max_age = state.config.key_activation_delay_seconds.min(300);
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", format!("public, max-age={max_age}")))
        .insert_header(ANY_ORIGIN)
        .json(JwkSet {
            keys: keys.jwks.clone(),
        }))
}
