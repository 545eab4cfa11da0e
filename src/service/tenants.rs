//! Tenant lifecycle: creation with its built-ins, settings, suspension, deletion.

use serde_json::{Map, Value};

use super::Origin;
use crate::authn::keys;
use crate::domain::{
    ADMIN_CLI, ClientType, GrantType, SYSTEM_TENANT, TenantSettings, TenantSlug, TenantStatus,
};
use crate::error::{AppError, AppResult};
use crate::state::{AppState, Change};
use crate::store::db::clients::{self, Client};
use crate::store::db::tenants::{self, Tenant};
use crate::store::db::{self, DbConnection, Page, changes};
use crate::store::session::EndReason;

/// The built-in public client every tenant starts with.
fn admin_cli(tenant: &str) -> Client {
    Client {
        tenant: tenant.to_owned(),
        client_id: ADMIN_CLI.to_owned(),
        name: "latchkey admin CLI".to_owned(),
        client_type: ClientType::Public,
        secret_hash: None,
        grant_types: vec![GrantType::Password, GrantType::RefreshToken],
        redirect_uris: Vec::new(),
        post_logout_redirect_uris: Vec::new(),
        audience: Vec::new(),
        enabled: true,
        builtin: true,
        created_at: db::now(),
        generation: clients::new_generation(),
    }
}

/// Writes a tenant with its built-in roles, `admin-cli` and first signing key,
/// all in the caller's transaction.
pub fn insert_with_builtins(
    conn: &mut DbConnection,
    master: &keys::MasterKey,
    slug: &str,
    name: &str,
    settings: &TenantSettings,
) -> Result<Tenant, crate::store::StoreError> {
    let tenant = tenants::insert(conn, slug, name, settings)?;
    crate::authz::seed_builtin_roles(conn, slug)?;
    clients::insert(conn, &admin_cli(slug))?;
    keys::create_key(conn, master, slug, settings.signing_alg, db::now())?;
    Ok(tenant)
}

/// Merges a partial settings object over `base`; unknown fields are refused.
pub fn merge_settings(
    base: &TenantSettings,
    patch: Option<Map<String, Value>>,
) -> AppResult<TenantSettings> {
    let mut merged = match serde_json::to_value(base) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in patch.unwrap_or_default() {
        merged.insert(k, v);
    }
    let settings: TenantSettings = serde_json::from_value(Value::Object(merged))
        .map_err(|e| AppError::validation("settings", e))?;
    settings
        .validate()
        .map_err(|(field, problem)| AppError::validation(field, problem))?;
    Ok(settings)
}

/// Creates a tenant (platform admins only; checked at the edge).
pub async fn create(
    state: &AppState,
    slug: &str,
    name: &str,
    settings: Option<Map<String, Value>>,
    origin: &Origin,
) -> AppResult<Tenant> {
    let slug = TenantSlug::parse(slug).map_err(|e| AppError::validation("slug", e))?;
    if slug.as_str() == SYSTEM_TENANT {
        return Err(AppError::conflict("the tenant slug system is reserved"));
    }
    let name = name
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_owned();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::validation("name", "must be 1 to 200 characters"));
    }
    let settings = merge_settings(&TenantSettings::default(), settings)?;
    let master = state.keys.master().clone();
    let slug_owned = slug.to_string();
    let tenant = state
        .db
        .transaction(move |c| {
            let tenant = insert_with_builtins(c, &master, &slug_owned, &name, &settings)?;
            // Instances that cached "no such tenant" learn it exists.
            changes::record(c, &Change::Tenant(slug_owned.clone()).message())?;
            Ok(tenant)
        })
        .await?;
    state.announce(Change::Tenant(slug.to_string())).await;
    super::audit::record(
        state,
        SYSTEM_TENANT,
        "tenant.create",
        "success",
        Some(slug.as_str()),
        origin,
    )
    .await;
    Ok(tenant)
}

pub async fn get(state: &AppState, slug: &str) -> AppResult<Tenant> {
    let slug = slug.to_owned();
    Ok(state.db.run(move |c| tenants::get(c, &slug)).await?)
}

pub async fn list(
    state: &AppState,
    cursor: Option<String>,
    limit: usize,
) -> AppResult<Page<Tenant>> {
    Ok(state
        .db
        .run(move |c| tenants::list(c, cursor.as_deref(), limit))
        .await?)
}

/// A partial update of a tenant.
#[derive(Debug, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub status: Option<TenantStatus>,
    pub settings: Option<Map<String, Value>>,
}

/// Applies a patch. Suspension starts a new generation for every client of
/// the tenant (every token issued so far stays dead, also after the tenant
/// is active again) and ends every session; a new signing algorithm rotates
/// the key (the old one stays published until its tokens expire).
pub async fn update(
    state: &AppState,
    slug: &str,
    patch: TenantPatch,
    origin: &Origin,
) -> AppResult<Tenant> {
    // Checked first; applied below to the row as it is then, under a lock,
    // so a concurrent patch never undoes a suspension.
    get(state, slug).await?;
    let name = match patch.name {
        Some(name) => {
            let name = name
                .trim_matches(|c: char| c.is_ascii_whitespace())
                .to_owned();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(AppError::validation("name", "must be 1 to 200 characters"));
            }
            Some(name)
        }
        None => None,
    };
    if slug == SYSTEM_TENANT && patch.status == Some(TenantStatus::Suspended) {
        return Err(AppError::validation(
            "status",
            "the system tenant cannot be suspended",
        ));
    }
    let status = patch.status;
    let settings = patch.settings;
    let master = state.keys.master().clone();
    let leeway = state.config.clock_leeway_seconds as i64;
    let delay = chrono::Duration::seconds(state.config.key_activation_delay_seconds as i64);
    let owned = slug.to_owned();
    let (tenant, previous, announced) = state
        .db
        .transaction(move |c| {
            db::lock_entity(c, &format!("tenant:{owned}"))?;
            let previous = tenants::get(c, &owned)?;
            let mut tenant = previous.clone();
            if let Some(name) = name {
                tenant.name = name;
            }
            if let Some(status) = status {
                tenant.status = status;
            }
            if settings.is_some() {
                match merge_settings(&tenant.settings, settings) {
                    Ok(merged) => tenant.settings = merged,
                    Err(e) => return Ok(Err(e)),
                }
            }
            tenants::update(c, &tenant)?;
            let mut announced = vec![
                Change::Tenant(owned.clone()),
                Change::Clients(owned.clone()),
            ];
            if previous.status != TenantStatus::Suspended
                && tenant.status == TenantStatus::Suspended
            {
                clients::renew_generations(c, &owned)?;
            }
            if tenant.settings.signing_alg != previous.settings.signing_alg {
                keys::rotate(
                    c,
                    &master,
                    &owned,
                    tenant.settings.signing_alg,
                    delay,
                    chrono::Duration::seconds(
                        previous.settings.access_token_ttl_seconds as i64 + leeway,
                    ),
                )?;
                announced.push(Change::Keys(owned.clone()));
            }
            for change in &announced {
                changes::record(c, &change.message())?;
            }
            Ok(Ok((tenant, previous, announced)))
        })
        .await??;
    // Announced on every call, so a call that failed half-way can be repeated.
    for change in announced {
        state.announce(change).await;
    }
    let previous_status = previous.status;
    if tenant.status == TenantStatus::Suspended {
        end_all_sessions(state, &tenant).await?;
    }
    if tenant.status != previous_status {
        let suspended = tenant.status == TenantStatus::Suspended;
        let action = if suspended {
            "tenant.suspend"
        } else {
            "tenant.activate"
        };
        super::audit::record(state, SYSTEM_TENANT, action, "success", Some(slug), origin).await;
    }
    super::audit::record(state, slug, "tenant.update", "success", Some(slug), origin).await;
    Ok(tenant)
}

/// Ends the sessions of every user of a tenant (suspension).
async fn end_all_sessions(state: &AppState, tenant: &Tenant) -> AppResult<()> {
    let mut cursor = None;
    loop {
        let page = super::users::list(state, &tenant.slug, cursor, 200).await?;
        for user in &page.items {
            state
                .sessions
                .end_user_sessions(
                    &tenant.slug,
                    &user.id,
                    state.user_cut(tenant, None, EndReason::Disabled),
                )
                .await?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// Deletes a tenant and everything it owns.
pub async fn delete(state: &AppState, slug: &str, origin: &Origin) -> AppResult<()> {
    if slug == SYSTEM_TENANT {
        return Err(AppError::validation(
            "tenant",
            "the system tenant cannot be deleted",
        ));
    }
    let owned = slug.to_owned();
    let gone = [
        Change::Tenant(slug.to_owned()),
        Change::Clients(slug.to_owned()),
        Change::Keys(slug.to_owned()),
        Change::Policy(slug.to_owned()),
    ];
    let messages: Vec<String> = gone.iter().map(Change::message).collect();
    state
        .db
        .transaction(move |c| {
            tenants::delete(c, &owned)?;
            for message in &messages {
                changes::record(c, message)?;
            }
            Ok(())
        })
        .await?;
    for change in gone {
        state.announce(change).await;
    }
    state.sessions.purge_tenant(slug).await?;
    super::audit::record(
        state,
        SYSTEM_TENANT,
        "tenant.delete",
        "success",
        Some(slug),
        origin,
    )
    .await;
    Ok(())
}
