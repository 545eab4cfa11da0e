//! The admin API. Every route is listed once in [`routes`], which both
//! registers it and lets tests enumerate it; every handler names its
//! permission through its extractor (`Authorized<P>` or `PlatformAdmin`).

pub mod clients;
pub mod governance;
pub mod roles;
pub mod tenants;
pub mod users;

use actix_web::http::Method;
use actix_web::{Route, web};

pub use users::UserView;

/// One admin route: method, path template, the permission it needs (for
/// documentation and tests; the handler's extractor enforces it).
pub struct AdminRoute {
    pub method: Method,
    pub path: &'static str,
    pub permission: &'static str,
    handler: fn() -> Route,
}

macro_rules! route {
    ($method:ident $path:literal $permission:literal => $handler:path) => {
        AdminRoute {
            method: Method::$method,
            path: $path,
            permission: $permission,
            handler: || web::route().to($handler),
        }
    };
}

/// Every admin route.
pub fn routes() -> Vec<AdminRoute> {
    vec![
        route!(GET "/admin/tenants" "platform-admin" => tenants::list_tenants),
        route!(POST "/admin/tenants" "platform-admin" => tenants::create_tenant),
        route!(GET "/admin/tenants/{t}" "tenant:read" => tenants::get_tenant),
        route!(PATCH "/admin/tenants/{t}" "tenant:write" => tenants::patch_tenant),
        route!(DELETE "/admin/tenants/{t}" "platform-admin" => tenants::delete_tenant),
        route!(GET "/admin/tenants/{t}/users" "users:read" => users::list_users),
        route!(POST "/admin/tenants/{t}/users" "users:write" => users::create_user),
        route!(GET "/admin/tenants/{t}/users/{user_id}" "users:read" => users::get_user),
        route!(PATCH "/admin/tenants/{t}/users/{user_id}" "users:write" => users::patch_user),
        route!(DELETE "/admin/tenants/{t}/users/{user_id}" "users:write" => users::delete_user),
        route!(GET "/admin/tenants/{t}/users/{user_id}/sessions" "sessions:read" => governance::list_sessions),
        route!(POST "/admin/tenants/{t}/users/{user_id}/sessions/revoke" "sessions:write" => governance::revoke_sessions),
        route!(GET "/admin/tenants/{t}/users/{user_id}/roles" "roles:read" => roles::get_user_roles),
        route!(PUT "/admin/tenants/{t}/users/{user_id}/roles" "roles:write" => roles::put_user_roles),
        route!(GET "/admin/tenants/{t}/roles" "roles:read" => roles::list_roles),
        route!(POST "/admin/tenants/{t}/roles" "roles:write" => roles::create_role),
        route!(GET "/admin/tenants/{t}/roles/{role}" "roles:read" => roles::get_role),
        route!(PUT "/admin/tenants/{t}/roles/{role}" "roles:write" => roles::put_role),
        route!(DELETE "/admin/tenants/{t}/roles/{role}" "roles:write" => roles::delete_role),
        route!(GET "/admin/tenants/{t}/clients" "clients:read" => clients::list_clients),
        route!(POST "/admin/tenants/{t}/clients" "clients:write" => clients::create_client),
        route!(GET "/admin/tenants/{t}/clients/{client_id}" "clients:read" => clients::get_client),
        route!(PATCH "/admin/tenants/{t}/clients/{client_id}" "clients:write" => clients::patch_client),
        route!(DELETE "/admin/tenants/{t}/clients/{client_id}" "clients:write" => clients::delete_client),
        route!(GET "/admin/tenants/{t}/keys" "keys:read" => governance::list_keys),
        route!(POST "/admin/tenants/{t}/keys/rotate" "keys:write" => governance::rotate_key),
        route!(GET "/admin/tenants/{t}/audit" "audit:read" => governance::list_audit),
    ]
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let all = routes();
    let mut paths: Vec<&'static str> = Vec::new();
    for r in &all {
        if !paths.contains(&r.path) {
            paths.push(r.path);
        }
    }
    for path in paths {
        let mut resource = super::resource(path);
        for r in all.iter().filter(|r| r.path == path) {
            resource = resource.route((r.handler)().method(r.method.clone()));
        }
        cfg.service(resource);
    }
}
