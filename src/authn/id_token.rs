//! ID tokens (OpenID Connect Core 1.0 §2): signed with the tenant's active
//! key, `typ: JWT` (never accepted where an access token is expected, which
//! must be `at+jwt`), and read back as `id_token_hint` at end_session.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use super::keys::{KeyRing, SigningKey};
use super::tokens::issuer;

/// The claims of an ID token (OIDC Core §2, §3.1.3.6; SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    /// The client the token is for (one audience).
    pub aud: String,
    pub azp: String,
    /// Unix seconds.
    pub exp: i64,
    /// Unix seconds.
    pub iat: i64,
    /// When the user signed in (Unix seconds).
    pub auth_time: i64,
    /// The `nonce` of the authorization request, on the code exchange only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The session (OIDC Front-Channel Logout §3, RP-Initiated Logout).
    pub sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// Signs an ID token; the header carries `kid` and `typ: JWT`.
pub fn sign(key: &SigningKey, claims: &IdClaims) -> Result<String, jsonwebtoken::errors::Error> {
    let mut header = Header::new(key.alg);
    header.typ = Some("JWT".to_owned());
    header.kid = Some(key.kid.clone());
    encode(&header, claims, &key.key)
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the hash of the access
/// token's ASCII, base64url. The hash is the one of the signing algorithm:
/// SHA-256 for ES256 and RS256; SHA-512 for EdDSA with Ed25519 (the hash
/// Ed25519 itself uses, RFC 8032 §5.1, as OpenID Connect's EdDSA
/// registrations and the libraries that verify it take it).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        Algorithm::EdDSA | Algorithm::RS512 | Algorithm::PS512 => {
            Sha512::digest(access_token.as_bytes()).to_vec()
        }
        _ => Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Reads an `id_token_hint` (OIDC RP-Initiated Logout 1.0 §2): an ID token
/// this tenant signed with a key it still publishes, expired or not.
/// `None` for anything else (another tenant's token, an access token, a
/// bad signature, garbage).
pub async fn verify_hint(
    ring: &KeyRing,
    public_url: &str,
    tenant: &str,
    token: &str,
) -> Option<IdClaims> {
    if token.len() > 8 * 1024 {
        return None;
    }
    let header = jsonwebtoken::decode_header(token).ok()?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
        || header.jku.is_some()
        || header.jwk.is_some()
        || header.x5u.is_some()
    {
        return None;
    }
    let kid = header.kid.filter(|k| !k.is_empty() && k.len() <= 64)?;
    let keys = ring.keys_with(tenant, &kid).await.ok()?;
    let key = keys.verifying.get(&kid)?;
    if header.alg != key.alg {
        return None;
    }
    let mut validation = Validation::new(key.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["iss", "sub", "aud"]);
    validation.set_issuer(&[issuer(public_url, tenant)]);
    decode::<IdClaims>(token, &key.key, &validation)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests {
    use super::at_hash;
    use jsonwebtoken::Algorithm;

    #[test]
    fn at_hash_follows_the_oidc_core_example() {
        // OIDC Core Appendix A.3's access token and its at_hash (RS256).
        assert_eq!(
            at_hash(
                Algorithm::RS256,
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn at_hash_of_eddsa_is_half_of_sha512() {
        // 64-byte SHA-512, left half: 32 bytes, 43 base64url characters.
        assert_eq!(at_hash(Algorithm::EdDSA, "token").len(), 43);
        assert_eq!(at_hash(Algorithm::ES256, "token").len(), 22);
    }
}
