//! Users of a tenant.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::users;
use super::{DbConnection, Page, cursor_position, now};
use crate::domain::UserStatus;
use crate::store::StoreError;

#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    tenant: String,
    email: String,
    email_normalized: String,
    password_hash: String,
    status: String,
    email_verified: bool,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    last_login_at: Option<NaiveDateTime>,
}

/// A user as stored. `Debug` leaves the password hash out.
#[derive(Clone)]
pub struct User {
    pub id: String,
    pub tenant: String,
    pub email: String,
    pub password_hash: String,
    pub status: UserStatus,
    pub email_verified: bool,
    pub created_at: NaiveDateTime,
    pub last_login_at: Option<NaiveDateTime>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

fn status_text(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            status: if r.status == "disabled" {
                UserStatus::Disabled
            } else {
                UserStatus::Active
            },
            id: r.id,
            tenant: r.tenant,
            email: r.email,
            password_hash: r.password_hash,
            email_verified: r.email_verified,
            created_at: r.created_at,
            last_login_at: r.last_login_at,
        }
    }
}

/// Inserts a user; an e-mail taken in the tenant is a conflict.
pub fn insert(
    conn: &mut DbConnection,
    tenant: &str,
    email: &crate::domain::Email,
    password_hash: &str,
) -> Result<User, StoreError> {
    let at = now();
    let row = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        tenant: tenant.to_owned(),
        email: email.as_str().to_owned(),
        email_normalized: email.normalized(),
        password_hash: password_hash.to_owned(),
        status: status_text(UserStatus::Active).to_owned(),
        email_verified: false,
        created_at: at,
        updated_at: at,
        last_login_at: None,
    };
    diesel::insert_into(users::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("a user with this e-mail exists in the tenant".to_owned())
            }
            other => other,
        })?;
    Ok(row.into())
}

pub fn find(conn: &mut DbConnection, tenant: &str, id: &str) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .filter(users::tenant.eq(tenant))
        .filter(users::id.eq(id))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::from))
}

pub fn get(conn: &mut DbConnection, tenant: &str, id: &str) -> Result<User, StoreError> {
    find(conn, tenant, id)?.ok_or(StoreError::NotFound("user"))
}

pub fn find_by_email(
    conn: &mut DbConnection,
    tenant: &str,
    email_normalized: &str,
) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .filter(users::tenant.eq(tenant))
        .filter(users::email_normalized.eq(email_normalized))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(User::from))
}

/// Lists a tenant's users in creation order.
pub fn list(
    conn: &mut DbConnection,
    tenant: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Page<User>, StoreError> {
    let mut q = users::table
        .filter(users::tenant.eq(tenant))
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit as i64 + 1)
        .into_boxed();
    if let Some(after) = cursor_position("users", cursor)? {
        q = q.filter(users::id.gt(after));
    }
    let rows: Vec<User> = q.load(conn)?.into_iter().map(User::from).collect();
    Ok(Page::from_rows("users", rows, limit, |u| u.id.clone()))
}

pub fn count(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn set_status(
    conn: &mut DbConnection,
    tenant: &str,
    id: &str,
    status: UserStatus,
) -> Result<(), StoreError> {
    let n = diesel::update(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id)),
    )
    .set((
        users::status.eq(status_text(status)),
        users::updated_at.eq(now()),
    ))
    .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

pub fn set_email(
    conn: &mut DbConnection,
    tenant: &str,
    id: &str,
    email: &crate::domain::Email,
) -> Result<(), StoreError> {
    let n = diesel::update(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id)),
    )
    .set((
        users::email.eq(email.as_str()),
        users::email_normalized.eq(email.normalized()),
        users::email_verified.eq(false),
        users::updated_at.eq(now()),
    ))
    .execute(conn)
    .map_err(|e| match StoreError::from(e) {
        StoreError::Conflict(_) => {
            StoreError::Conflict("a user with this e-mail exists in the tenant".to_owned())
        }
        other => other,
    })?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

/// Replaces the password hash only if it is still `old` (a re-hash at sign-in
/// must never undo a password change made meanwhile). Answers whether it did.
pub fn renew_password_hash(
    conn: &mut DbConnection,
    tenant: &str,
    id: &str,
    old: &str,
    new: &str,
) -> Result<bool, StoreError> {
    let n = diesel::update(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id))
            .filter(users::password_hash.eq(old)),
    )
    .set((users::password_hash.eq(new), users::updated_at.eq(now())))
    .execute(conn)?;
    Ok(n == 1)
}

pub fn set_password_hash(
    conn: &mut DbConnection,
    tenant: &str,
    id: &str,
    hash: &str,
) -> Result<(), StoreError> {
    let n = diesel::update(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id)),
    )
    .set((users::password_hash.eq(hash), users::updated_at.eq(now())))
    .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}

pub fn touch_login(conn: &mut DbConnection, tenant: &str, id: &str) -> Result<(), StoreError> {
    diesel::update(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id)),
    )
    .set(users::last_login_at.eq(Some(now())))
    .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, tenant: &str, id: &str) -> Result<(), StoreError> {
    let n = diesel::delete(
        users::table
            .filter(users::tenant.eq(tenant))
            .filter(users::id.eq(id)),
    )
    .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("user"));
    }
    Ok(())
}
