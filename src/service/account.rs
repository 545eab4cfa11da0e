//! What a signed-in user does to their own account: sign out (one session or
//! all), change the password (every other session ends).

use super::Origin;
use crate::authn::password::Verified;
use crate::authn::tokens::AccessClaims;
use crate::config::Secret;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::db::tenants::Tenant;
use crate::store::db::users;
use crate::store::session::EndReason;

/// Ends the caller's session, or every session of the user.
pub async fn logout(
    state: &AppState,
    tenant: &Tenant,
    claims: &AccessClaims,
    all: bool,
    origin: &Origin,
) -> AppResult<()> {
    let linger = state.linger(tenant);
    super::revocation::deny_access_token(state, &tenant.slug, &claims.jti, claims.exp).await?;
    if let (Some(sid), Some(user)) = (claims.sid.as_deref(), claims.user_id()) {
        if all {
            state
                .sessions
                .end_user_sessions(
                    &tenant.slug,
                    user,
                    state.user_cut(tenant, None, EndReason::Revoked),
                )
                .await?;
        } else {
            state
                .sessions
                .end_session(&tenant.slug, sid, EndReason::Revoked, linger)
                .await?;
        }
    }
    super::audit::record(
        state,
        &tenant.slug,
        "logout",
        "success",
        Some(&claims.sub),
        origin,
    )
    .await;
    Ok(())
}

/// Changes the caller's password; every other session ends.
pub async fn change_password(
    state: &AppState,
    tenant: &Tenant,
    claims: &AccessClaims,
    current: &Secret,
    new: &Secret,
    origin: &Origin,
) -> AppResult<()> {
    let user_id = claims
        .user_id()
        .ok_or_else(|| AppError::new(ErrorCode::Forbidden, "Only a user has a password."))?;
    let user = super::users::get(state, &tenant.slug, user_id).await?;
    // A wrong current password counts towards the lockout like a failed
    // sign-in; a locked account is not checked (same answer).
    let reserved = super::lockout::reserve(state, tenant, &user.id).await?;
    let stored = reserved.admitted().then_some(user.password_hash.as_str());
    let verified = match state.passwords.verify(current, stored).await {
        Ok(v) => v,
        Err(e) => {
            super::lockout::abandoned(state, tenant, &reserved).await;
            return Err(AppError::internal(e));
        }
    };
    if verified == Verified::No {
        super::lockout::failed(state, tenant, Some(user_id), &reserved, origin).await?;
        super::audit::record(
            state,
            &tenant.slug,
            "password.change",
            "failure",
            Some(user_id),
            origin,
        )
        .await;
        return Err(AppError::validation(
            "current_password",
            "is not the current password",
        ));
    }
    super::lockout::succeeded(state, tenant, &reserved).await?;
    super::users::check_policy(tenant, &user.email, new.expose())?;
    let hash = state
        .passwords
        .hash(new)
        .await
        .map_err(AppError::internal)?;
    let (t, id) = (tenant.slug.clone(), user.id.clone());
    state
        .db
        .run(move |c| users::set_password_hash(c, &t, &id, &hash))
        .await?;
    state
        .sessions
        .end_user_sessions(
            &tenant.slug,
            &user.id,
            state.user_cut(tenant, claims.sid.as_deref(), EndReason::Revoked),
        )
        .await?;
    super::audit::record(
        state,
        &tenant.slug,
        "password.change",
        "success",
        Some(user_id),
        origin,
    )
    .await;
    Ok(())
}
