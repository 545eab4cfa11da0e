//! # latchkey-client
//!
//! What an application built on latchkey links so that it gets latchkey's
//! 401/403 contract right without reading the specification (SPEC §10):
//!
//! - [`Verifier`]: verifies access tokens for one tenant and one audience
//!   (discovery, JWKS cached per `max-age`, at most one refetch per 10 s for
//!   unknown `kid`s, algorithm pinned to the key, `typ`, `iss`, `aud`,
//!   `exp`/`nbf` with leeway), optionally revocation-aware through
//!   `/oauth/introspect`; failures are an [`AuthError`] carrying latchkey's
//!   `code`.
//! - Extractors for actix-web (feature `actix-web`) and axum (feature
//!   `axum`): [`Authenticated`], [`RequireRole`], [`RequireScope`] and
//!   [`RequirePermission`] (decided by latchkey's `/authz/check`), answering
//!   401/403 as latchkey does (problem+json, `WWW-Authenticate`).
//! - [`TokenManager`]: holds a user's (or a service's) tokens, refreshes
//!   ahead of expiry with one refresh in flight, retries once on
//!   `token_expired`, and ends in [`TokenError::SignInRequired`] instead of
//!   a loop.
//!
//! HTTPS to latchkey needs the default feature `rustls`.

#![warn(missing_docs)]

mod error;
mod extract;
mod tokens;
mod verifier;

#[cfg(feature = "actix-web")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;

pub use error::{AuthError, DiscoveryError, Problem, ResponseParts};
pub use extract::{
    Authenticated, PermissionName, Rejection, RequirePermission, RequireRole, RequireScope,
    RoleName, ScopeName,
};
pub use tokens::{
    ClientCredentials, MemoryTokenStore, SignInReason, StoreError, TokenError, TokenManager,
    TokenManagerBuilder, TokenSet, TokenStore,
};
pub use verifier::{Claims, UNKNOWN_KID_REFETCH_INTERVAL, Verifier, VerifierBuilder};
