//! Refresh-token values (SPEC §4): 16 bytes naming the token's family, then
//! 256 random bits, base64url without padding (64 characters). Only the
//! SHA-256 of a value is stored, once per family for its current token and
//! its predecessor; the family part lets a rotated token be recognised (and
//! its reuse detected) without keeping a record for every token ever issued.
//! Values of earlier versions (32 random bytes, 43 characters) name no
//! family and are looked up by their hash alone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

const FAMILY_LEN: usize = 16;
const RANDOM_LEN: usize = 32;

/// A new token value of `family_id` (a UUID); `None` when it is not one.
pub fn issue(family_id: &str) -> Option<String> {
    let family = uuid::Uuid::parse_str(family_id).ok()?;
    let mut bytes = [0u8; FAMILY_LEN + RANDOM_LEN];
    bytes[..FAMILY_LEN].copy_from_slice(family.as_bytes());
    rand::rng().fill_bytes(&mut bytes[FAMILY_LEN..]);
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The family a token value names, when it is of this format.
pub fn family_of(token: &str) -> Option<String> {
    if token.len() != 64 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let family: [u8; FAMILY_LEN] = bytes.get(..FAMILY_LEN)?.try_into().ok()?;
    (bytes.len() == FAMILY_LEN + RANDOM_LEN).then(|| uuid::Uuid::from_bytes(family).to_string())
}

/// What the store needs of a presented value: its SHA-256 (hex) and the
/// family it names, if any.
pub fn fingerprint(token: &str) -> (String, Option<String>) {
    (super::sha256_hex(token), family_of(token))
}

#[cfg(test)]
mod tests {
    use super::{family_of, issue};

    #[test]
    fn a_token_names_its_family_and_differs_every_time() {
        let family = uuid::Uuid::new_v4().to_string();
        let a = issue(&family).expect("token");
        let b = issue(&family).expect("token");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(family_of(&a).as_deref(), Some(family.as_str()));
        assert_eq!(
            family_of(&crate::authn::random_token()),
            None,
            "earlier format"
        );
        assert_eq!(family_of("not a token"), None);
        assert_eq!(issue("not-a-uuid"), None);
    }
}
