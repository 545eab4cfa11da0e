//! latchkey: a multi-tenant identity provider.
//!
//! A request travels one way: [`api`] (parse, authenticate, authorize) ->
//! [`service`] (decide, within one transaction) -> [`store`] (persist).

pub mod api;
pub mod authn;
pub mod authz;
pub mod cache;
pub mod config;
pub mod domain;
pub mod error;
pub mod memory;
pub mod metrics;
pub mod ratelimit;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;
