//! OAuth clients of a tenant.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::clients;
use super::{DbConnection, Page, cursor_position, now};
use crate::domain::{ClientType, GrantType};
use crate::store::StoreError;

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
struct ClientRow {
    tenant: String,
    client_id: String,
    name: String,
    client_type: String,
    secret_hash: Option<String>,
    grant_types: String,
    redirect_uris: String,
    audience: String,
    enabled: bool,
    builtin: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    generation: String,
    post_logout_redirect_uris: String,
}

/// A client as stored. `Debug` leaves the secret hash out.
#[derive(Clone)]
pub struct Client {
    pub tenant: String,
    pub client_id: String,
    pub name: String,
    pub client_type: ClientType,
    pub secret_hash: Option<String>,
    pub grant_types: Vec<GrantType>,
    pub redirect_uris: Vec<String>,
    pub audience: Vec<String>,
    pub enabled: bool,
    pub builtin: bool,
    pub created_at: NaiveDateTime,
    /// Tokens carry the generation they were issued under; a new one starts
    /// when the client is disabled or its tenant suspended (never reused).
    pub generation: String,
    /// Where the browser may be sent after RP-initiated logout (OIDC
    /// RP-Initiated Logout 1.0 §3; same rules as `redirect_uris`).
    pub post_logout_redirect_uris: Vec<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_type", &self.client_type)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(r: ClientRow) -> Result<Self, StoreError> {
        Ok(Client {
            client_type: if r.client_type == "public" {
                ClientType::Public
            } else {
                ClientType::Confidential
            },
            grant_types: serde_json::from_str(&r.grant_types).map_err(StoreError::other)?,
            redirect_uris: serde_json::from_str(&r.redirect_uris).map_err(StoreError::other)?,
            post_logout_redirect_uris: serde_json::from_str(&r.post_logout_redirect_uris)
                .map_err(StoreError::other)?,
            audience: serde_json::from_str(&r.audience).map_err(StoreError::other)?,
            tenant: r.tenant,
            client_id: r.client_id,
            name: r.name,
            secret_hash: r.secret_hash,
            enabled: r.enabled,
            builtin: r.builtin,
            created_at: r.created_at,
            generation: r.generation,
        })
    }
}

fn to_row(c: &Client) -> Result<ClientRow, StoreError> {
    Ok(ClientRow {
        tenant: c.tenant.clone(),
        client_id: c.client_id.clone(),
        name: c.name.clone(),
        client_type: match c.client_type {
            ClientType::Public => "public",
            ClientType::Confidential => "confidential",
        }
        .to_owned(),
        secret_hash: c.secret_hash.clone(),
        grant_types: serde_json::to_string(&c.grant_types).map_err(StoreError::other)?,
        redirect_uris: serde_json::to_string(&c.redirect_uris).map_err(StoreError::other)?,
        audience: serde_json::to_string(&c.audience).map_err(StoreError::other)?,
        enabled: c.enabled,
        builtin: c.builtin,
        created_at: c.created_at,
        updated_at: now(),
        generation: c.generation.clone(),
        post_logout_redirect_uris: serde_json::to_string(&c.post_logout_redirect_uris)
            .map_err(StoreError::other)?,
    })
}

/// Inserts a client; a taken `client_id` in the tenant is a conflict.
pub fn insert(conn: &mut DbConnection, c: &Client) -> Result<(), StoreError> {
    diesel::insert_into(clients::table)
        .values(&to_row(c)?)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("client {} exists in the tenant", c.client_id))
            }
            other => other,
        })?;
    Ok(())
}

pub fn find(
    conn: &mut DbConnection,
    tenant: &str,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    clients::table
        .find((tenant, client_id))
        .select(ClientRow::as_select())
        .first(conn)
        .optional()?
        .map(Client::try_from)
        .transpose()
}

pub fn get(conn: &mut DbConnection, tenant: &str, client_id: &str) -> Result<Client, StoreError> {
    find(conn, tenant, client_id)?.ok_or(StoreError::NotFound("client"))
}

pub fn list(
    conn: &mut DbConnection,
    tenant: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<Client>, StoreError> {
    let mut q = clients::table
        .filter(clients::tenant.eq(tenant))
        .select(ClientRow::as_select())
        .order(clients::client_id.asc())
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(after) = cursor_position("clients", cursor)? {
        q = q.filter(clients::client_id.gt(after));
    }
    let rows = q
        .load(conn)?
        .into_iter()
        .map(Client::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_rows("clients", rows, limit, |c| {
        c.client_id.clone()
    }))
}

/// The redirect URIs of every enabled client of a tenant (at most 20 each).
pub fn redirect_uris_of_tenant(
    conn: &mut DbConnection,
    tenant: &str,
) -> Result<Vec<String>, StoreError> {
    let lists: Vec<String> = clients::table
        .filter(clients::tenant.eq(tenant))
        .filter(clients::enabled.eq(true))
        .select(clients::redirect_uris)
        .load(conn)?;
    let mut out = Vec::new();
    for list in lists {
        let uris: Vec<String> = serde_json::from_str(&list).map_err(StoreError::other)?;
        out.extend(uris);
    }
    Ok(out)
}

/// Writes the mutable fields of a client.
pub fn update(conn: &mut DbConnection, c: &Client) -> Result<(), StoreError> {
    let row = to_row(c)?;
    let n = diesel::update(clients::table.find((&c.tenant, &c.client_id)))
        .set((
            clients::name.eq(row.name),
            clients::grant_types.eq(row.grant_types),
            clients::redirect_uris.eq(row.redirect_uris),
            clients::post_logout_redirect_uris.eq(row.post_logout_redirect_uris),
            clients::audience.eq(row.audience),
            clients::enabled.eq(row.enabled),
            clients::updated_at.eq(row.updated_at),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("client"));
    }
    Ok(())
}

pub fn delete(conn: &mut DbConnection, tenant: &str, client_id: &str) -> Result<(), StoreError> {
    let n = diesel::delete(clients::table.find((tenant, client_id))).execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("client"));
    }
    Ok(())
}

/// A fresh client generation: random, so a re-created client id never
/// matches tokens of the client that had it before.
pub fn new_generation() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Starts a new generation for one client (it was disabled). Other updates
/// never write the generation, so none can bring an old one back.
pub fn renew_generation(
    conn: &mut DbConnection,
    tenant: &str,
    client_id: &str,
) -> Result<String, StoreError> {
    let generation = new_generation();
    diesel::update(clients::table.find((tenant, client_id)))
        .set(clients::generation.eq(&generation))
        .execute(conn)?;
    Ok(generation)
}

/// Starts a new generation for every client of a tenant (suspension): all
/// tokens issued so far stay dead whatever happens to the tenant later.
pub fn renew_generations(conn: &mut DbConnection, tenant: &str) -> Result<(), StoreError> {
    diesel::update(clients::table.filter(clients::tenant.eq(tenant)))
        .set((
            clients::generation.eq(new_generation()),
            clients::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}
