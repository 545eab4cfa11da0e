//! Persistence: the relational database (diesel over PostgreSQL or SQLite)
//! and the session store (Redis or in-process).

pub mod db;
pub mod session;

/// A failure of either store, typed so the edge can answer the right status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} unavailable: {1:#}")]
    Unavailable(&'static str, anyhow::Error),
    /// A list cursor this list did not issue.
    #[error("not a cursor of this list")]
    InvalidCursor,
    #[error(transparent)]
    Other(anyhow::Error),
}

impl StoreError {
    pub fn other(e: impl Into<anyhow::Error>) -> Self {
        Self::Other(e.into())
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => StoreError::NotFound("record"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::Conflict("an object with the same identifier exists".to_owned())
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                StoreError::Unavailable("database", anyhow::anyhow!("{}", info.message()))
            }
            other => StoreError::Other(other.into()),
        }
    }
}
