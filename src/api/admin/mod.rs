//! The admin API. Every handler names its permission through its extractor
//! (`Authorized<P>` or `PlatformAdmin`), which runs before the handler body.

pub mod clients;
pub mod governance;
pub mod roles;
pub mod tenants;
pub mod users;

use utoipa_actix_web::service_config::ServiceConfig;

pub use users::UserView;

/// Registers every admin route; the OpenAPI document is collected from the
/// same registrations, so tests enumerate the routes from it.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(tenants::list_tenants)
        .service(tenants::create_tenant)
        .service(tenants::get_tenant)
        .service(tenants::patch_tenant)
        .service(tenants::delete_tenant)
        .service(users::list_users)
        .service(users::create_user)
        .service(users::get_user)
        .service(users::patch_user)
        .service(users::delete_user)
        .service(governance::list_sessions)
        .service(governance::revoke_sessions)
        .service(roles::get_user_roles)
        .service(roles::put_user_roles)
        .service(roles::list_roles)
        .service(roles::create_role)
        .service(roles::get_role)
        .service(roles::put_role)
        .service(roles::delete_role)
        .service(clients::list_clients)
        .service(clients::create_client)
        .service(clients::get_client)
        .service(clients::patch_client)
        .service(clients::delete_client)
        .service(governance::list_keys)
        .service(governance::rotate_key)
        .service(governance::list_audit);
}
