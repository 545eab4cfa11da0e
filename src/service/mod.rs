//! Use cases and their transaction boundaries.

pub mod account;
pub mod audit;
pub mod authorize;
pub mod bootstrap;
pub mod changes;
pub mod clients;
pub mod introspection;
pub mod keys;
pub mod lockout;
pub mod oauth;
pub mod revocation;
pub mod roles;
pub mod sessions;
pub mod tenants;
pub mod token_check;
pub mod users;

/// Who did something, and from where: for audit events and session records.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub actor: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}
