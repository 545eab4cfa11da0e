//! Access tokens: RFC 9068 JWTs signed with the tenant's active key, and their
//! verification with the algorithm pinned by `kid`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use super::keys::{KeyRing, SigningKey};
use crate::domain::TenantSlug;
use crate::store::StoreError;

/// `aud`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn from_list(mut list: Vec<String>) -> Self {
        if list.len() == 1 {
            Self::One(list.remove(0))
        } else {
            Self::Many(list)
        }
    }
}

/// The claims of a latchkey access token (SPEC §4, RFC 9068).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub azp: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub tid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub roles: Vec<String>,
    /// The generation of the client (`azp`) the token was issued under: a
    /// token of an earlier generation (before the client was disabled or
    /// re-created, or its tenant suspended) is dead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgen: String,
}

impl AccessClaims {
    /// The user id, for tokens issued to a user.
    pub fn user_id(&self) -> Option<&str> {
        self.sid.as_ref().map(|_| self.sub.as_str())
    }
}

/// Why a bearer token was refused, before any store lookup.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("{0}")]
    Invalid(&'static str),
    #[error("The access token expired")]
    Expired,
    #[error("The access token is not yet valid")]
    NotYetValid,
    #[error("The access token was issued by another tenant")]
    OtherTenant,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The issuer of a tenant.
pub fn issuer(public_url: &str, tenant: &str) -> String {
    format!("{public_url}/tenants/{tenant}")
}

/// Signs claims with the tenant's active key; the header carries `kid` and `typ: at+jwt`.
pub fn sign(
    key: &SigningKey,
    claims: &AccessClaims,
) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(key.alg);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.key)
}

/// Longest token accepted; anything longer is not one of ours.
const MAX_TOKEN_LEN: usize = 8 * 1024;

fn decode_json_part(part: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Verifies an access token presented to tenant `tenant`.
///
/// The algorithm is taken from the key named by `kid` in the tenant's own key
/// set, never from the token; headers that point elsewhere for keys are refused.
pub async fn verify(
    ring: &KeyRing,
    public_url: &str,
    tenant: &str,
    token: &str,
    leeway: u64,
) -> Result<AccessClaims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("The access token is too long"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let well_formed = parts.len() == 3
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !well_formed {
        return Err(TokenError::Malformed(
            "The access token is not a JWS compact token",
        ));
    }
    let header = decode_json_part(parts[0]).ok_or(TokenError::Malformed(
        "The token header is not base64url JSON",
    ))?;
    let payload = decode_json_part(parts[1]).ok_or(TokenError::Malformed(
        "The token payload is not base64url JSON",
    ))?;
    if parts[2].is_empty() {
        return Err(TokenError::Invalid("The token has no signature"));
    }
    let alg = header
        .get("alg")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !matches!(alg, "ES256" | "EdDSA" | "RS256") {
        return Err(TokenError::Invalid("The token algorithm is not accepted"));
    }
    let typ = header
        .get("typ")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if !typ.eq_ignore_ascii_case("at+jwt") && !typ.eq_ignore_ascii_case("application/at+jwt") {
        return Err(TokenError::Invalid("The token is not an access token"));
    }
    if ["jku", "x5u", "jwk", "x5c", "crit"]
        .iter()
        .any(|h| header.contains_key(*h))
    {
        return Err(TokenError::Invalid("The token header names keys elsewhere"));
    }
    let kid = header
        .get("kid")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .ok_or(TokenError::Invalid("The token names no known key"))?;
    let iss = payload
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let own_issuer = issuer(public_url, tenant);

    if iss != own_issuer {
        // Only a genuine token of another tenant is "wrong audience"; anything
        // else claiming a foreign issuer is simply invalid.
        let other = iss
            .strip_prefix(&format!("{public_url}/tenants/"))
            .and_then(|slug| TenantSlug::parse(slug).ok());
        if let Some(other) = other
            && verify_signature_only(ring, other.as_str(), kid, token).await?
        {
            return Err(TokenError::OtherTenant);
        }
        return Err(TokenError::Invalid("The token signature is not valid"));
    }

    let keys = match ring.keys_with(tenant, kid).await {
        Ok(keys) => keys,
        // A tenant without keys (none such, or deleted) knows no `kid`.
        Err(StoreError::NotFound(_)) => {
            return Err(TokenError::Invalid("The token names no known key"));
        }
        Err(e) => return Err(e.into()),
    };
    // A token these keys verified before needs only its time checks again:
    // the signature and every other check are a function of the token and
    // the keys alone.
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
    if let Some(claims) = ring.verified(&keys, &digest).await {
        check_times(&claims, leeway)?;
        return Ok((*claims).clone());
    }
    let key = keys
        .verifying
        .get(kid)
        .ok_or(TokenError::Invalid("The token names no known key"))?;
    if alg.parse::<jsonwebtoken::Algorithm>().ok() != Some(key.alg) {
        return Err(TokenError::Invalid(
            "The token algorithm does not match its key",
        ));
    }
    let mut validation = Validation::new(key.alg);
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "nbf"]);
    validation.set_issuer(&[own_issuer]);
    let data =
        decode::<AccessClaims>(token, &key.key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::OtherTenant,
            ErrorKind::InvalidSignature => TokenError::Invalid("The token signature is not valid"),
            _ => TokenError::Invalid("The token claims are not valid"),
        })?;
    if data.claims.tid != tenant {
        return Err(TokenError::OtherTenant);
    }
    let audience_named = match &data.claims.aud {
        Audience::One(a) => !a.is_empty(),
        Audience::Many(list) => !list.is_empty() && list.iter().all(|a| !a.is_empty()),
    };
    if !audience_named {
        return Err(TokenError::Invalid("The token names no audience"));
    }
    ring.remember(&keys, digest, Arc::new(data.claims.clone()))
        .await;
    Ok(data.claims)
}

/// `exp` and `nbf` against the clock, with `leeway` seconds either way, as
/// jsonwebtoken's `Validation` checks them (RFC 7519 §4.1.4, §4.1.5).
fn check_times(claims: &AccessClaims, leeway: u64) -> Result<(), TokenError> {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let leeway = leeway as i64;
    if claims.exp < now - leeway {
        return Err(TokenError::Expired);
    }
    if claims.nbf > now + leeway {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Whether `token` carries a valid signature by tenant `tenant`'s key `kid`.
async fn verify_signature_only(
    ring: &KeyRing,
    tenant: &str,
    kid: &str,
    token: &str,
) -> Result<bool, StoreError> {
    let keys = match ring.keys_with(tenant, kid).await {
        Ok(keys) => keys,
        Err(StoreError::NotFound(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let Some(key) = keys.verifying.get(kid) else {
        return Ok(false);
    };
    let mut validation = Validation::new(key.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    Ok(decode::<serde_json::Value>(token, &key.key, &validation).is_ok())
}

/// Verifies a token issued by any tenant, for admin routes: returns the
/// issuing tenant with the claims.
pub async fn verify_any_tenant(
    ring: &KeyRing,
    public_url: &str,
    token: &str,
    leeway: u64,
) -> Result<AccessClaims, TokenError> {
    let payload =
        token
            .split('.')
            .nth(1)
            .and_then(decode_json_part)
            .ok_or(TokenError::Malformed(
                "The token payload is not base64url JSON",
            ))?;
    let tenant = payload
        .get("iss")
        .and_then(|v| v.as_str())
        .and_then(|iss| iss.strip_prefix(&format!("{public_url}/tenants/")))
        .and_then(|slug| TenantSlug::parse(slug).ok())
        .ok_or(TokenError::Invalid("The token was not issued by latchkey"))?;
    verify(ring, public_url, tenant.as_str(), token, leeway).await
}
