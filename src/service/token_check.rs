//! Checking a bearer token: signature, claims, then every cut-off (SPEC §4,
//! §5). Every protected route goes through `authenticate_bearer` or
//! `check_access_state`.

use crate::authn::tokens::{self, AccessClaims, TokenError};
use crate::domain::TenantStatus;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::session::AccessState;

/// Verifies a bearer token for a tenant's resource endpoints, including the
/// deny-list and session state, and maps every failure to its SPEC §5 code.
pub async fn authenticate_bearer(
    state: &AppState,
    tenant: &str,
    token: &str,
) -> AppResult<AccessClaims> {
    let claims = tokens::verify(
        &state.keys,
        &state.public_url,
        tenant,
        token,
        state.config.clock_leeway_seconds,
    )
    .await
    .map_err(|e| token_error(e).with_realm(tenant))?;
    check_access_state(state, &claims)
        .await
        .map_err(|e| e.with_realm(tenant))?;
    Ok(claims)
}

/// The revocation half of token checking: the tenant and the client as the
/// database says (through this instance's view, never more than a second
/// behind), then the deny-list, session state and user cut-off in one store
/// round trip. Every cut-off is checked here, so no route can skip one.
pub async fn check_access_state(state: &AppState, claims: &AccessClaims) -> AppResult<()> {
    let revoked = || {
        AppError::new(
            ErrorCode::SessionRevoked,
            "The session of this token has ended",
        )
    };
    let disabled = || {
        AppError::new(
            ErrorCode::AccountDisabled,
            "The account or tenant is disabled",
        )
    };
    let tenant = match state.tenant(&claims.tid).await {
        Ok(t) => t,
        Err(crate::store::StoreError::NotFound(_)) => return Err(revoked()),
        Err(e) => return Err(e.into()),
    };
    if tenant.status == TenantStatus::Suspended {
        return Err(disabled());
    }
    match state.client(&claims.tid, &claims.azp).await? {
        None => return Err(revoked()),
        Some(c) if !c.enabled => return Err(disabled()),
        Some(c) if c.generation != claims.cgen => return Err(revoked()),
        Some(_) => {}
    }
    let session = claims.sid.as_deref().map(|sid| (sid, claims.sub.as_str()));
    for _ in 0..2 {
        match state
            .sessions
            .access_state(&claims.tid, &claims.jti, session)
            .await?
        {
            AccessState::Active => return Ok(()),
            AccessState::Revoked => return Err(revoked()),
            AccessState::Disabled => return Err(disabled()),
            AccessState::Unsynced => super::revocation::refill_store(state, &claims.tid).await?,
        }
    }
    Err(crate::store::StoreError::Unavailable(
        "session store",
        anyhow::anyhow!("the store forgets the tenant's revoked tokens as soon as it is refilled"),
    )
    .into())
}

/// Maps a verification failure to its SPEC §5 code.
pub fn token_error(e: TokenError) -> AppError {
    match e {
        TokenError::Malformed(d) => AppError::new(ErrorCode::TokenMalformed, d),
        TokenError::Invalid(d) => AppError::new(ErrorCode::TokenInvalid, d),
        TokenError::Expired => AppError::new(ErrorCode::TokenExpired, "The access token expired"),
        TokenError::NotYetValid => AppError::new(
            ErrorCode::TokenNotYetValid,
            "The access token is not yet valid",
        ),
        TokenError::OtherTenant => AppError::new(
            ErrorCode::TokenWrongAudience,
            "The access token was issued by another tenant",
        ),
        TokenError::Store(e) => e.into(),
    }
}
