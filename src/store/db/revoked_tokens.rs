//! Access tokens revoked before they expire, kept until they would have
//! expired: the durable copy of the session store's `jti` deny-list.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::revoked_tokens;
use super::{DbConnection, now};
use crate::store::StoreError;

/// Records a revoked `jti`; recording it twice is not an error.
pub fn record(
    conn: &mut DbConnection,
    tenant: &str,
    jti: &str,
    expires_at: NaiveDateTime,
) -> Result<(), StoreError> {
    let inserted = diesel::insert_into(revoked_tokens::table)
        .values((
            revoked_tokens::tenant.eq(tenant),
            revoked_tokens::jti.eq(jti),
            revoked_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn);
    match inserted.map_err(StoreError::from) {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The tenant's revoked tokens that have not expired: `(jti, expires_at)`.
pub fn unexpired(
    conn: &mut DbConnection,
    tenant: &str,
) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
    Ok(revoked_tokens::table
        .filter(revoked_tokens::tenant.eq(tenant))
        .filter(revoked_tokens::expires_at.gt(now()))
        .select((revoked_tokens::jti, revoked_tokens::expires_at))
        .load(conn)?)
}

/// Forgets tokens that have expired anyway.
pub fn prune(conn: &mut DbConnection) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.le(now())))
            .execute(conn)?,
    )
}
