//! OAuth clients: creation (the secret is shown once), updates, deletion.

use super::Origin;
use crate::authn::{random_token, sha256_hex};
use crate::domain::{ClientType, GrantType, REDIRECT_URI_RULE, redirect_uri_allowed};
use crate::error::{AppError, AppResult};
use crate::state::{AppState, Change};
use crate::store::db::clients::{self, Client};
use crate::store::db::{self, Page, changes};

/// A client to create.
#[derive(Debug)]
pub struct NewClient {
    pub name: String,
    pub client_type: ClientType,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub audience: Vec<String>,
    pub client_id: Option<String>,
}

/// SPEC §9: with an https public URL, only loopback redirects may be http.
fn https_required(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

/// `client_id` syntax: 1 to 128 letters, digits, `.`, `_` or `-`.
pub(crate) fn valid_client_id(id: &str) -> bool {
    let b = id.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

fn check_name(name: &str) -> AppResult<String> {
    let name = name.trim_matches(|c: char| c.is_ascii_whitespace());
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::validation("name", "must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

/// The grants in their first order, each once.
fn unique(grants: Vec<GrantType>) -> Vec<GrantType> {
    let mut out = Vec::with_capacity(grants.len());
    for g in grants {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

fn check_grants(client_type: ClientType, grants: &[GrantType]) -> AppResult<()> {
    if grants.is_empty() {
        return Err(AppError::validation(
            "grant_types",
            "must name at least one grant",
        ));
    }
    if client_type == ClientType::Public && grants.contains(&GrantType::ClientCredentials) {
        return Err(AppError::validation(
            "grant_types",
            "a public client cannot use client_credentials",
        ));
    }
    Ok(())
}

/// `field` is `redirect_uris` or `post_logout_redirect_uris` (same rules).
fn check_uris(field: &str, uris: &[String], https_required: bool) -> AppResult<()> {
    if uris.len() > 20 {
        return Err(AppError::validation(field, "at most 20"));
    }
    if uris
        .iter()
        .any(|u| !redirect_uri_allowed(u, https_required))
    {
        return Err(AppError::validation(field, REDIRECT_URI_RULE));
    }
    Ok(())
}

fn check_audience(audience: &[String]) -> AppResult<()> {
    if audience.len() > 20
        || audience.iter().any(|a| {
            a.trim_matches(|c: char| c.is_ascii_whitespace()).is_empty() || a.chars().count() > 200
        })
    {
        return Err(AppError::validation(
            "audience",
            "at most 20 non-empty identifiers of up to 200 characters",
        ));
    }
    Ok(())
}

/// Creates a client; answers the plain secret (confidential clients) once.
pub async fn create(
    state: &AppState,
    tenant: &str,
    new: NewClient,
    origin: &Origin,
) -> AppResult<(Client, Option<String>)> {
    let name = check_name(&new.name)?;
    check_grants(new.client_type, &new.grant_types)?;
    check_uris("redirect_uris", &new.redirect_uris, https_required(state))?;
    check_uris(
        "post_logout_redirect_uris",
        &new.post_logout_redirect_uris,
        https_required(state),
    )?;
    check_audience(&new.audience)?;
    let client_id = match new.client_id {
        Some(id) if valid_client_id(&id) => id,
        Some(_) => {
            return Err(AppError::validation(
                "client_id",
                "1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            ));
        }
        None => format!("c-{}", uuid::Uuid::new_v4().simple()),
    };
    let secret = (new.client_type == ClientType::Confidential).then(random_token);
    let grant_types = unique(new.grant_types);
    let client = Client {
        tenant: tenant.to_owned(),
        client_id,
        name,
        client_type: new.client_type,
        secret_hash: secret.as_deref().map(sha256_hex),
        grant_types,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        audience: new.audience,
        enabled: true,
        builtin: false,
        created_at: db::now(),
        generation: clients::new_generation(),
    };
    let to_insert = client.clone();
    let change = Change::Client(tenant.to_owned(), client.client_id.clone());
    let message = change.message();
    state
        .db
        .transaction(move |c| {
            clients::insert(c, &to_insert)?;
            changes::record(c, &message)
        })
        .await?;
    // A client id used before by a deleted client starts with a generation
    // of its own: nothing issued to the earlier client matches it.
    state.announce(change).await;
    super::audit::record(
        state,
        tenant,
        "client.create",
        "success",
        Some(&client.client_id),
        origin,
    )
    .await;
    Ok((client, secret))
}

pub async fn get(state: &AppState, tenant: &str, client_id: &str) -> AppResult<Client> {
    let (t, id) = (tenant.to_owned(), client_id.to_owned());
    Ok(state.db.run(move |c| clients::get(c, &t, &id)).await?)
}

pub async fn list(
    state: &AppState,
    tenant: &str,
    cursor: Option<String>,
    limit: usize,
) -> AppResult<Page<Client>> {
    let t = tenant.to_owned();
    Ok(state
        .db
        .run(move |c| clients::list(c, &t, cursor.as_deref(), limit))
        .await?)
}

/// A partial update of a client.
#[derive(Debug, Default)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub grant_types: Option<Vec<GrantType>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub audience: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// Applies a patch. Disabling a client starts a new generation: its tokens
/// are 401 at once and stay dead when it is enabled again. The change is
/// announced on every call, so a call that failed half-way can be repeated.
pub async fn update(
    state: &AppState,
    tenant: &str,
    client_id: &str,
    patch: ClientPatch,
    origin: &Origin,
) -> AppResult<Client> {
    // Checked against what is stored now; written below against the row as
    // it is then, under a lock, so a concurrent patch never undoes a disable
    // (or brings an old generation back).
    let current = get(state, tenant, client_id).await?;
    let name = patch.name.as_deref().map(check_name).transpose()?;
    let grant_types = match patch.grant_types {
        Some(grants) => {
            if current.client_type == ClientType::Public
                && grants.contains(&GrantType::ClientCredentials)
            {
                return Err(AppError::conflict(
                    "this client is public: client_credentials needs a confidential client",
                ));
            }
            check_grants(current.client_type, &grants)?;
            Some(unique(grants))
        }
        None => None,
    };
    if let Some(uris) = &patch.redirect_uris {
        check_uris("redirect_uris", uris, https_required(state))?;
    }
    if let Some(uris) = &patch.post_logout_redirect_uris {
        check_uris("post_logout_redirect_uris", uris, https_required(state))?;
    }
    if let Some(audience) = &patch.audience {
        check_audience(audience)?;
    }
    let change = Change::Client(tenant.to_owned(), client_id.to_owned());
    let (t, id, message) = (tenant.to_owned(), client_id.to_owned(), change.message());
    let enabled = patch.enabled;
    let (redirect_uris, audience) = (patch.redirect_uris, patch.audience);
    let post_logout_redirect_uris = patch.post_logout_redirect_uris;
    let client = state
        .db
        .transaction(move |c| {
            db::lock_entity(c, &format!("client:{t}:{id}"))?;
            let mut client = clients::get(c, &t, &id)?;
            if let Some(name) = name {
                client.name = name;
            }
            if let Some(grants) = grant_types {
                client.grant_types = grants;
            }
            if let Some(uris) = redirect_uris {
                client.redirect_uris = uris;
            }
            if let Some(uris) = post_logout_redirect_uris {
                client.post_logout_redirect_uris = uris;
            }
            if let Some(audience) = audience {
                client.audience = audience;
            }
            let disabling = enabled == Some(false) && client.enabled;
            if let Some(enabled) = enabled {
                client.enabled = enabled;
            }
            clients::update(c, &client)?;
            if disabling {
                client.generation = clients::renew_generation(c, &t, &id)?;
            }
            changes::record(c, &message)?;
            Ok(client)
        })
        .await?;
    state.announce(change).await;
    super::audit::record(
        state,
        tenant,
        "client.update",
        "success",
        Some(client_id),
        origin,
    )
    .await;
    Ok(client)
}

pub async fn delete(
    state: &AppState,
    tenant: &str,
    client_id: &str,
    origin: &Origin,
) -> AppResult<()> {
    let change = Change::Client(tenant.to_owned(), client_id.to_owned());
    let (t, id, message) = (tenant.to_owned(), client_id.to_owned(), change.message());
    state
        .db
        .transaction(move |c| {
            clients::delete(c, &t, &id)?;
            changes::record(c, &message)
        })
        .await?;
    // Tokens already issued to it die with it: the view no longer has it.
    state.announce(change).await;
    super::audit::record(
        state,
        tenant,
        "client.delete",
        "success",
        Some(client_id),
        origin,
    )
    .await;
    Ok(())
}
