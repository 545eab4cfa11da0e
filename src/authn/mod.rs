//! Authentication: password hashing, signing keys, access tokens, secrets.

pub mod id_token;
pub mod keys;
pub mod password;
pub mod refresh_tokens;
pub mod tokens;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 256 random bits, base64url: refresh tokens and client secrets.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// SHA-256, hex: how high-entropy secrets (refresh tokens, client secrets) are stored.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Compares a presented secret with a stored SHA-256 hash in constant time.
pub fn verify_sha256(presented: &str, stored_hex: &str) -> bool {
    let computed = sha256_hex(presented);
    computed.as_bytes().ct_eq(stored_hex.as_bytes()).into()
}
