//! Client authentication at the token, revocation and introspection
//! endpoints (RFC 6749 §2.3): `client_secret_basic`, `client_secret_post`,
//! or a public client's `client_id` alone.

use super::{ClientAuthMethod, ClientCredentials, oauth};
use crate::authn::{sha256_hex, verify_sha256};
use crate::config::Secret;
use crate::domain::ClientType;
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::state::AppState;
use crate::store::db::clients::Client;

/// Authenticates the client of an OAuth request (RFC 6749 §2.3).
pub async fn authenticate_client(
    state: &AppState,
    tenant: &str,
    creds: &ClientCredentials,
) -> AppResult<Client> {
    let fail = |detail: &str| {
        let e = oauth(ErrorCode::InvalidClient, detail).with_realm(tenant);
        if creds.method == ClientAuthMethod::Basic {
            e.basic_challenge()
        } else {
            e
        }
    };
    let Some(client_id) = creds.client_id.clone().filter(|c| !c.is_empty()) else {
        return Err(fail("Client authentication is required."));
    };
    // An id that cannot exist is never looked up (or cached).
    let client = if crate::service::clients::valid_client_id(&client_id) {
        state
            .client(tenant, &client_id)
            .await
            .map_err(|e| AppError::from(e).in_flavor(Flavor::OAuth))?
    } else {
        None
    };
    let presented = creds.secret.as_ref().map(Secret::expose);
    let Some(client) = client else {
        // Same work as a known client, so timing tells nothing.
        let _ = verify_sha256(presented.unwrap_or_default(), &sha256_hex("-"));
        return Err(fail("Client authentication failed."));
    };
    let authenticated = match (client.client_type, &client.secret_hash, presented) {
        (ClientType::Confidential, Some(hash), Some(secret)) => verify_sha256(secret, hash),
        (ClientType::Public, _, None) => creds.method == ClientAuthMethod::None,
        _ => false,
    };
    if !authenticated || !client.enabled {
        return Err(fail("Client authentication failed."));
    }
    Ok((*client).clone())
}
