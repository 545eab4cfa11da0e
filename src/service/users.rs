//! Users: creation with the password policy, status, e-mail, password.

use super::Origin;
use crate::config::Secret;
use crate::domain::{Email, UserStatus, check_password};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;
use crate::store::db::Page;
use crate::store::db::tenants::Tenant;
use crate::store::db::users::{self, User};
use crate::store::session::EndReason;

/// Checks a new password against the tenant's policy.
pub fn check_policy(tenant: &Tenant, email: &str, password: &str) -> AppResult<()> {
    let local = email.split('@').next().unwrap_or_default();
    check_password(
        password,
        tenant.settings.password_min_length,
        &[email, local],
    )
    .map_err(|w| AppError::new(ErrorCode::WeakPassword, w.0))
}

/// Creates a user after checking e-mail and password.
pub async fn create(
    state: &AppState,
    tenant: &Tenant,
    email: &str,
    password: &Secret,
    origin: &Origin,
) -> AppResult<User> {
    let email = Email::parse(email).map_err(|e| AppError::validation("email", e))?;
    check_policy(tenant, email.as_str(), password.expose())?;
    let hash = state
        .passwords
        .hash(password)
        .await
        .map_err(AppError::internal)?;
    let slug = tenant.slug.clone();
    let user = state
        .db
        .run(move |c| users::insert(c, &slug, &email, &hash))
        .await?;
    super::audit::record(
        state,
        &tenant.slug,
        "user.create",
        "success",
        Some(&user.id),
        origin,
    )
    .await;
    Ok(user)
}

pub async fn get(state: &AppState, tenant: &str, id: &str) -> AppResult<User> {
    let (tenant, id) = (tenant.to_owned(), id.to_owned());
    Ok(state.db.run(move |c| users::get(c, &tenant, &id)).await?)
}

pub async fn list(
    state: &AppState,
    tenant: &str,
    cursor: Option<String>,
    limit: usize,
) -> AppResult<Page<User>> {
    let tenant = tenant.to_owned();
    Ok(state
        .db
        .run(move |c| users::list(c, &tenant, cursor.as_deref(), limit))
        .await?)
}

/// A partial update of a user.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub status: Option<UserStatus>,
    pub email: Option<String>,
    pub password: Option<Secret>,
    /// Lift a sign-in lock and forget the failed attempts.
    pub unlock: bool,
}

/// Applies a patch. Disabling ends every session (`account_disabled`); a new
/// password ends every session (`session_revoked`).
pub async fn update(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    patch: UserPatch,
    origin: &Origin,
) -> AppResult<User> {
    let user = get(state, &tenant.slug, id).await?;
    let email = patch
        .email
        .as_deref()
        .map(Email::parse)
        .transpose()
        .map_err(|e| AppError::validation("email", e))?;
    let hash = match &patch.password {
        Some(pw) => {
            let shown = email.as_ref().map_or(user.email.as_str(), Email::as_str);
            check_policy(tenant, shown, pw.expose())?;
            Some(state.passwords.hash(pw).await.map_err(AppError::internal)?)
        }
        None => None,
    };
    let (slug, uid, status) = (tenant.slug.clone(), user.id.clone(), patch.status);
    state
        .db
        .transaction(move |c| {
            if let Some(email) = &email {
                users::set_email(c, &slug, &uid, email)?;
            }
            if let Some(hash) = &hash {
                users::set_password_hash(c, &slug, &uid, hash)?;
            }
            if let Some(status) = status {
                users::set_status(c, &slug, &uid, status)?;
            }
            crate::store::db::changes::record(
                c,
                &crate::state::Change::User(slug.clone(), uid.clone()).message(),
            )
        })
        .await?;
    state
        .announce(crate::state::Change::User(
            tenant.slug.clone(),
            user.id.clone(),
        ))
        .await;
    if patch.status == Some(UserStatus::Disabled) {
        state
            .sessions
            .end_user_sessions(
                &tenant.slug,
                &user.id,
                state.user_cut(tenant, None, EndReason::Disabled),
            )
            .await?;
        super::audit::record(
            state,
            &tenant.slug,
            "user.disable",
            "success",
            Some(&user.id),
            origin,
        )
        .await;
    } else if patch.password.is_some() {
        state
            .sessions
            .end_user_sessions(
                &tenant.slug,
                &user.id,
                state.user_cut(tenant, None, EndReason::Revoked),
            )
            .await?;
    }
    if patch.unlock {
        state
            .sessions
            .clear_login_failures(&tenant.slug, &user.id)
            .await?;
        super::audit::record(
            state,
            &tenant.slug,
            "user.unlock",
            "success",
            Some(&user.id),
            origin,
        )
        .await;
    }
    super::audit::record(
        state,
        &tenant.slug,
        "user.update",
        "success",
        Some(&user.id),
        origin,
    )
    .await;
    get(state, &tenant.slug, id).await
}

/// Deletes a user and ends their sessions.
pub async fn delete(state: &AppState, tenant: &Tenant, id: &str, origin: &Origin) -> AppResult<()> {
    let (slug, uid) = (tenant.slug.clone(), id.to_owned());
    state
        .db
        .transaction(move |c| {
            users::delete(c, &slug, &uid)?;
            crate::store::db::policies::delete_rules(c, &slug, "g", std::slice::from_ref(&uid))?;
            crate::store::db::changes::record(
                c,
                &crate::state::Change::User(slug.clone(), uid.clone()).message(),
            )?;
            crate::store::db::changes::record(
                c,
                &crate::state::Change::Policy(slug.clone()).message(),
            )
        })
        .await?;
    state
        .announce(crate::state::Change::User(
            tenant.slug.clone(),
            id.to_owned(),
        ))
        .await;
    state
        .sessions
        .end_user_sessions(
            &tenant.slug,
            id,
            state.user_cut(tenant, None, EndReason::Revoked),
        )
        .await?;
    state
        .announce(crate::state::Change::Policy(tenant.slug.clone()))
        .await;
    super::audit::record(
        state,
        &tenant.slug,
        "user.delete",
        "success",
        Some(id),
        origin,
    )
    .await;
    Ok(())
}
