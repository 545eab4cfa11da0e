//! The change log: every cache-invalidating change, kept for an hour so that
//! every instance can poll what the pub/sub bus may have lost.

use diesel::prelude::*;

use super::schema::changes;
use super::{DbConnection, now};
use crate::store::StoreError;

/// Appends one change message.
pub fn record(conn: &mut DbConnection, message: &str) -> Result<(), StoreError> {
    diesel::insert_into(changes::table)
        .values((changes::message.eq(message), changes::at.eq(now())))
        .execute(conn)?;
    Ok(())
}

/// The newest sequence number (0 for an empty log).
pub fn latest(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(changes::table
        .select(diesel::dsl::max(changes::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Changes after `seq`, oldest first, at most `limit`.
pub fn after(
    conn: &mut DbConnection,
    seq: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    Ok(changes::table
        .filter(changes::seq.gt(seq))
        .order(changes::seq.asc())
        .limit(limit)
        .select((changes::seq, changes::message))
        .load(conn)?)
}

/// Forgets changes older than `age`.
pub fn prune(conn: &mut DbConnection, age: chrono::Duration) -> Result<usize, StoreError> {
    Ok(diesel::delete(changes::table.filter(changes::at.lt(now() - age))).execute(conn)?)
}
