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

#[derive(Serialize, utoipa::ToSchema)]
pub struct Discovery {
    issuer: String,
    jwks_uri: String,
    token_endpoint: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    userinfo_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    subject_types_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<&'static str>,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    scopes_supported: Vec<&'static str>,
    claims_supported: Vec<&'static str>,
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
    load_tenant(state, t).await?;
    let issuer = state.issuer(t);
    let auth_methods = vec!["client_secret_basic", "client_secret_post", "none"];
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .insert_header(ANY_ORIGIN)
        .json(Discovery {
            jwks_uri: format!("{issuer}/.well-known/jwks.json"),
            token_endpoint: format!("{issuer}/oauth/token"),
            revocation_endpoint: format!("{issuer}/oauth/revoke"),
            introspection_endpoint: format!("{issuer}/oauth/introspect"),
            userinfo_endpoint: format!("{issuer}/oauth/userinfo"),
            issuer,
            grant_types_supported: vec!["password", "refresh_token", "client_credentials"],
            response_types_supported: vec!["token"],
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec!["ES256", "EdDSA", "RS256"],
            token_endpoint_auth_methods_supported: auth_methods.clone(),
            revocation_endpoint_auth_methods_supported: auth_methods,
            introspection_endpoint_auth_methods_supported: vec![
                "client_secret_basic",
                "client_secret_post",
            ],
            scopes_supported: vec!["openid", "profile", "email", "offline_access"],
            claims_supported: vec![
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "nbf",
                "jti",
                "azp",
                "client_id",
                "tid",
                "sid",
                "scope",
                "roles",
                "email",
                "email_verified",
            ],
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
