//! The `password` grant (first-party clients that enable it, RFC 9700 §2.4):
//! lockout, timing-safe verification, and a new session.

use super::signin::{check_password, issue_tokens, start_session};
use super::{
    DEFAULT_USER_SCOPE, TokenRequest, TokenResponse, USER_SCOPES, WRONG_CREDENTIALS, grant_scope,
    oauth,
};
use crate::domain::GrantType;
use crate::error::{AppResult, ErrorCode};
use crate::service::Origin;
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;

pub(super) async fn grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let (Some(username), Some(password)) = (req.username, req.password) else {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "username and password are required.",
        ));
    };
    let scope = grant_scope(req.scope.as_deref(), USER_SCOPES, DEFAULT_USER_SCOPE)?;
    // A locked account answers exactly like a wrong password.
    let Some(signed_in) = check_password(state, tenant, &username, &password, origin).await? else {
        return Err(oauth(ErrorCode::InvalidGrant, WRONG_CREDENTIALS));
    };
    let with_refresh = client.allows(GrantType::RefreshToken);
    let Some(session) = start_session(
        state,
        tenant,
        &client.client_id,
        &signed_in,
        with_refresh,
        origin,
    )
    .await?
    else {
        return Err(oauth(ErrorCode::InvalidGrant, WRONG_CREDENTIALS));
    };
    let issued = issue_tokens(state, tenant, client, &session, &scope, None, None).await?;
    crate::metrics::token_issued("password");
    Ok(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        id_token: None,
        scope,
    })
}
