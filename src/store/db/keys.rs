//! Signing keys of a tenant (private parts sealed with the master key).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::DbConnection;
use super::schema::signing_keys;
use crate::store::StoreError;

/// A signing key as stored. `Debug` leaves the sealed private key out.
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys)]
pub struct KeyRow {
    pub kid: String,
    pub tenant: String,
    pub alg: String,
    /// AES-256-GCM sealed PKCS#8 DER, base64.
    pub private_key: String,
    /// The public JWK, JSON.
    pub public_jwk: String,
    /// `active` or `retired`.
    pub status: String,
    pub created_at: NaiveDateTime,
    pub activates_at: NaiveDateTime,
    pub retired_at: Option<NaiveDateTime>,
    /// When the key leaves the JWKS (every token it signed has expired).
    pub expires_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for KeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRow")
            .field("kid", &self.kid)
            .field("tenant", &self.tenant)
            .field("alg", &self.alg)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

pub fn insert(conn: &mut DbConnection, row: &KeyRow) -> Result<(), StoreError> {
    diesel::insert_into(signing_keys::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Every key of the tenant that may still verify a token, newest first.
pub fn usable(
    conn: &mut DbConnection,
    tenant: &str,
    at: NaiveDateTime,
) -> Result<Vec<KeyRow>, StoreError> {
    Ok(signing_keys::table
        .filter(signing_keys::tenant.eq(tenant))
        .filter(
            signing_keys::expires_at
                .is_null()
                .or(signing_keys::expires_at.gt(at)),
        )
        .order(signing_keys::created_at.desc())
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// Every key of the tenant, newest first.
pub fn all(conn: &mut DbConnection, tenant: &str) -> Result<Vec<KeyRow>, StoreError> {
    Ok(signing_keys::table
        .filter(signing_keys::tenant.eq(tenant))
        .order(signing_keys::created_at.desc())
        .select(KeyRow::as_select())
        .load(conn)?)
}

/// `(tenant, created_at of its newest key)` for every tenant.
pub fn newest_per_tenant(
    conn: &mut DbConnection,
) -> Result<Vec<(String, Option<NaiveDateTime>)>, StoreError> {
    use diesel::dsl::max;
    Ok(signing_keys::table
        .group_by(signing_keys::tenant)
        .select((signing_keys::tenant, max(signing_keys::created_at)))
        .load(conn)?)
}

/// Retires every active key of the tenant at `at` (possibly in the future:
/// they keep signing until then); they stay published until `expires_at`.
pub fn retire_active(
    conn: &mut DbConnection,
    tenant: &str,
    at: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        signing_keys::table
            .filter(signing_keys::tenant.eq(tenant))
            .filter(signing_keys::status.eq("active")),
    )
    .set((
        signing_keys::status.eq("retired"),
        signing_keys::retired_at.eq(Some(at)),
        signing_keys::expires_at.eq(Some(expires_at)),
    ))
    .execute(conn)?)
}

/// Serialises key changes of one tenant across instances for the rest of
/// the caller's transaction (a PostgreSQL advisory lock; SQLite has a single
/// writer already).
pub fn lock_tenant(conn: &mut DbConnection, tenant: &str) -> Result<(), StoreError> {
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(format!("latchkey-keys:{tenant}"))
            .execute(pg)?;
    }
    Ok(())
}
