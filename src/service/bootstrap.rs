//! First start: the `system` tenant and its first platform administrator;
//! and the `bootstrap` command for any tenant's first admin.

use crate::authn::random_token;
use crate::authz::{ROLE_ADMIN, ROLE_PLATFORM_ADMIN};
use crate::config::Secret;
use crate::domain::{Email, SYSTEM_TENANT, TenantSettings, TenantSlug};
use crate::error::{AppError, AppResult};
use crate::state::{AppState, Change};
use crate::store::db::{policies, tenants, users};

/// What a bootstrap did.
#[derive(Debug)]
pub struct Bootstrapped {
    pub tenant: String,
    pub user_id: String,
    pub email: String,
    /// Set when latchkey chose the password; shown once.
    pub generated_password: Option<Secret>,
}

/// Creates `tenant` if needed and a first admin in it (`platform-admin` in
/// `system`, `admin` elsewhere).
pub async fn bootstrap_admin(
    state: &AppState,
    tenant: &str,
    email: &str,
    password: Option<Secret>,
) -> AppResult<Bootstrapped> {
    let slug = TenantSlug::parse(tenant).map_err(|e| AppError::validation("tenant", e))?;
    let email = Email::parse(email).map_err(|e| AppError::validation("admin-email", e))?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(|| Secret::new(random_token()));
    // A generated password is 256 random bits: the policy check (and the
    // strength dictionaries it would load for good) has nothing to add.
    if !generated {
        let policy_probe = tenants::Tenant {
            slug: slug.to_string(),
            name: String::new(),
            status: crate::domain::TenantStatus::Active,
            settings: TenantSettings::default(),
            created_at: crate::store::db::now(),
        };
        super::users::check_policy(&policy_probe, email.as_str(), password.expose())?;
    }
    let hash = state
        .passwords
        .hash(&password)
        .await
        .map_err(AppError::internal)?;
    let master = state.keys.master().clone();
    let slug_s = slug.to_string();
    let role = if slug.as_str() == SYSTEM_TENANT {
        ROLE_PLATFORM_ADMIN
    } else {
        ROLE_ADMIN
    };
    let user = state
        .db
        .transaction(move |c| {
            if tenants::find(c, &slug_s)?.is_none() {
                let name = if slug_s == SYSTEM_TENANT {
                    "latchkey platform".to_owned()
                } else {
                    slug_s.clone()
                };
                super::tenants::insert_with_builtins(
                    c,
                    &master,
                    &slug_s,
                    &name,
                    &TenantSettings::default(),
                )?;
            }
            let user = users::insert(c, &slug_s, &email, &hash)?;
            policies::assign_role(c, &slug_s, &user.id, role)?;
            Ok(user)
        })
        .await?;
    state.changed(Change::Tenant(slug.to_string())).await?;
    state.changed(Change::Policy(slug.to_string())).await?;
    Ok(Bootstrapped {
        tenant: slug.to_string(),
        user_id: user.id,
        email: user.email,
        generated_password: generated.then_some(password),
    })
}

/// On first start (no user anywhere), creates the platform admin from the
/// configuration, or with a generated password in embedded mode.
pub async fn first_start(state: &AppState) -> AppResult<Option<Bootstrapped>> {
    let users = state.db.run(users::count).await?;
    let configured = state.config.bootstrap_admin_email.is_some()
        || state.config.bootstrap_admin_password.is_some();
    if users > 0 {
        if configured {
            tracing::warn!(
                database = %crate::store::db::Backend::describe(&state.config.database_url),
                "LATCHKEY_BOOTSTRAP_ADMIN_EMAIL / LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD are set but \
                 ignored: the database already has users (they only create the first admin; \
                 sign in with the admin created then, or start on an empty database)"
            );
        }
        return Ok(None);
    }
    let embedded = matches!(
        crate::store::db::Backend::from_url(&state.config.database_url),
        Ok(crate::store::db::Backend::Sqlite)
    );
    if !embedded && state.config.bootstrap_admin_password.is_none() {
        // SPEC §2: a generated password is printed only in embedded mode.
        tracing::warn!(
            "no platform admin yet: set LATCHKEY_BOOTSTRAP_ADMIN_EMAIL and \
             LATCHKEY_BOOTSTRAP_ADMIN_PASSWORD, or run `latchkey bootstrap --tenant system \
             --admin-email <e>`"
        );
        return Ok(None);
    }
    let email = state
        .config
        .bootstrap_admin_email
        .clone()
        .unwrap_or_else(|| "admin@latchkey.local".to_owned());
    let password = state.config.bootstrap_admin_password.clone();
    match bootstrap_admin(state, SYSTEM_TENANT, &email, password).await {
        Ok(done) => Ok(Some(done)),
        // Another instance starting at the same time bootstrapped first.
        Err(e) if e.code() == crate::error::ErrorCode::Conflict => Ok(None),
        Err(e) => Err(e),
    }
}
