//! Black-box tests of latchkey through HTTP, one compiled binary.

mod admin;
mod attacks;
mod authz;
mod cli;
mod compose;
mod crash;
mod cutoffs;
mod delegated;
mod differential;
mod errors;
mod faults;
mod flow;
mod governance;
mod helpers;
mod instances;
mod isolation;
mod jwks;
mod limits;
mod lockout;
mod metrics;
mod openapi;
mod refresh;
mod revocation;
mod shutdown;
mod store;
