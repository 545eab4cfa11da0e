//! The `client_credentials` grant: a token for a confidential client itself.

use super::{AccessFor, TokenRequest, TokenResponse, grant_scope, mint_access, oauth};
use crate::domain::ClientType;
use crate::error::{AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;

pub(super) async fn grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
) -> AppResult<TokenResponse> {
    if client.client_type != ClientType::Confidential {
        return Err(oauth(
            ErrorCode::UnauthorizedClient,
            "Only confidential clients may use client_credentials.",
        ));
    }
    let scope = grant_scope(req.scope.as_deref(), &[], "")?;
    let sub = format!("client:{}", client.client_id);
    let minted = mint_access(
        state,
        tenant,
        client,
        AccessFor {
            sub: &sub,
            sid: None,
            scope: &scope,
            roles: Vec::new(),
            jti: None,
        },
    )
    .await?;
    crate::metrics::token_issued("client_credentials");
    Ok(TokenResponse {
        access_token: minted.token,
        token_type: "Bearer".to_owned(),
        expires_in: minted.expires_in,
        refresh_token: None,
        id_token: None,
        scope,
    })
}
