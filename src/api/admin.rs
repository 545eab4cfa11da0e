//! The admin API: tenants (platform admins), users and clients of a tenant.
//! Every handler names its permission through its extractor.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::extract::{
    Authorized, ClientsRead, ClientsWrite, PlatformAdmin, TenantRead, TenantWrite, UsersRead,
    UsersWrite,
};
use super::{ListQuery, ListResponse, no_content, resource, rfc3339};
use crate::config::Secret;
use crate::domain::{ClientType, GrantType, TenantSettings, TenantStatus, UserStatus};
use crate::error::{AppError, AppResult};
use crate::service::{clients, tenants, users};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users::User;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/admin/tenants")
            .route(web::get().to(list_tenants))
            .route(web::post().to(create_tenant)),
    )
    .service(
        resource("/admin/tenants/{t}")
            .route(web::get().to(get_tenant))
            .route(web::patch().to(patch_tenant))
            .route(web::delete().to(delete_tenant)),
    )
    .service(
        resource("/admin/tenants/{t}/users")
            .route(web::get().to(list_users))
            .route(web::post().to(create_user)),
    )
    .service(
        resource("/admin/tenants/{t}/users/{user_id}")
            .route(web::get().to(get_user))
            .route(web::patch().to(patch_user))
            .route(web::delete().to(delete_user)),
    )
    .service(
        resource("/admin/tenants/{t}/clients")
            .route(web::get().to(list_clients))
            .route(web::post().to(create_client)),
    )
    .service(
        resource("/admin/tenants/{t}/clients/{client_id}")
            .route(web::get().to(get_client))
            .route(web::patch().to(patch_client))
            .route(web::delete().to(delete_client)),
    );
}

// ---- tenants ----

#[derive(Serialize)]
pub struct TenantView {
    slug: String,
    name: String,
    status: TenantStatus,
    settings: TenantSettings,
    created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        Self {
            slug: t.slug,
            name: t.name,
            status: t.status,
            settings: t.settings,
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    settings: Option<Map<String, Value>>,
}

async fn list_tenants(
    state: web::Data<AppState>,
    _: PlatformAdmin,
    q: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let page = tenants::list(&state, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(TenantView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

async fn create_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    body: web::Json<CreateTenant>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let t = tenants::create(
        &state,
        &body.slug,
        &body.name,
        body.settings,
        &admin.origin(&req),
    )
    .await?;
    Ok(HttpResponse::Created().json(TenantView::from(t)))
}

async fn get_tenant(auth: Authorized<TenantRead>) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(TenantView::from((*auth.tenant).clone())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTenant {
    name: Option<String>,
    status: Option<TenantStatus>,
    settings: Option<Map<String, Value>>,
}

async fn patch_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<TenantWrite>,
    body: web::Json<PatchTenant>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let slug = auth.tenant.slug.clone();
    if body.status.is_some() && !auth.caller.platform_admin {
        return Err(AppError::forbidden("platform-admin (to change status)").with_realm(&slug));
    }
    let patch = tenants::TenantPatch {
        name: body.name,
        status: body.status,
        settings: body.settings,
    };
    let t = tenants::update(&state, &slug, patch, &auth.origin(&req)).await?;
    Ok(HttpResponse::Ok().json(TenantView::from(t)))
}

async fn delete_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    admin: PlatformAdmin,
    t: web::Path<String>,
) -> AppResult<HttpResponse> {
    tenants::delete(&state, &t, &admin.origin(&req))
        .await
        .map_err(|e| e.with_realm(&t))?;
    Ok(no_content())
}

// ---- users ----

/// A user as the API shows it: never a password hash.
#[derive(Serialize)]
pub struct UserView {
    id: String,
    email: String,
    status: UserStatus,
    email_verified: bool,
    created_at: String,
    last_login_at: Option<String>,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            status: u.status,
            email_verified: u.email_verified,
            created_at: rfc3339(u.created_at),
            last_login_at: u.last_login_at.map(rfc3339),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    email: String,
    password: Secret,
}

async fn list_users(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    q: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let page = users::list(&state, &auth.tenant.slug, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(UserView::from)
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    body: web::Json<CreateUser>,
) -> AppResult<HttpResponse> {
    let body = body.into_inner();
    let user = users::create(
        &state,
        &auth.tenant,
        &body.email,
        &body.password,
        &auth.origin(&req),
    )
    .await
    .map_err(|e| e.with_realm(&auth.tenant.slug))?;
    Ok(HttpResponse::Created().json(UserView::from(user)))
}

async fn get_user(
    state: web::Data<AppState>,
    auth: Authorized<UsersRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let user = users::get(&state, &auth.tenant.slug, &id).await?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    status: Option<UserStatus>,
    email: Option<String>,
    password: Option<Secret>,
}

async fn patch_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    path: web::Path<(String, String)>,
    body: web::Json<PatchUser>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let body = body.into_inner();
    let patch = users::UserPatch {
        status: body.status,
        email: body.email,
        password: body.password,
    };
    let user = users::update(&state, &auth.tenant, &id, patch, &auth.origin(&req))
        .await
        .map_err(|e| e.with_realm(&auth.tenant.slug))?;
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<UsersWrite>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    users::delete(&state, &auth.tenant, &id, &auth.origin(&req)).await?;
    Ok(no_content())
}

// ---- clients ----

#[derive(Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    #[serde(rename = "type")]
    client_type: ClientType,
    grant_types: Vec<GrantType>,
    redirect_uris: Vec<String>,
    audience: Vec<String>,
    enabled: bool,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

impl ClientView {
    fn new(c: Client, secret: Option<String>) -> Self {
        Self {
            client_id: c.client_id,
            name: c.name,
            client_type: c.client_type,
            grant_types: c.grant_types,
            redirect_uris: c.redirect_uris,
            audience: c.audience,
            enabled: c.enabled,
            created_at: rfc3339(c.created_at),
            client_secret: secret,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    name: String,
    #[serde(rename = "type")]
    client_type: ClientType,
    grant_types: Vec<GrantType>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    audience: Vec<String>,
    client_id: Option<String>,
}

async fn list_clients(
    state: web::Data<AppState>,
    auth: Authorized<ClientsRead>,
    q: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let page = clients::list(&state, &auth.tenant.slug, q.cursor.clone(), q.limit()?).await?;
    Ok(HttpResponse::Ok().json(ListResponse {
        items: page
            .items
            .into_iter()
            .map(|c| ClientView::new(c, None))
            .collect::<Vec<_>>(),
        next_cursor: page.next_cursor,
    }))
}

async fn create_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    body: web::Json<CreateClient>,
) -> AppResult<HttpResponse> {
    let b = body.into_inner();
    let new = clients::NewClient {
        name: b.name,
        client_type: b.client_type,
        grant_types: b.grant_types,
        redirect_uris: b.redirect_uris,
        audience: b.audience,
        client_id: b.client_id,
    };
    let (client, secret) =
        clients::create(&state, &auth.tenant.slug, new, &auth.origin(&req)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(ClientView::new(client, secret)))
}

async fn get_client(
    state: web::Data<AppState>,
    auth: Authorized<ClientsRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let client = clients::get(&state, &auth.tenant.slug, &id).await?;
    Ok(HttpResponse::Ok().json(ClientView::new(client, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchClient {
    name: Option<String>,
    grant_types: Option<Vec<GrantType>>,
    redirect_uris: Option<Vec<String>>,
    audience: Option<Vec<String>>,
    enabled: Option<bool>,
}

async fn patch_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    path: web::Path<(String, String)>,
    body: web::Json<PatchClient>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let b = body.into_inner();
    let patch = clients::ClientPatch {
        name: b.name,
        grant_types: b.grant_types,
        redirect_uris: b.redirect_uris,
        audience: b.audience,
        enabled: b.enabled,
    };
    let client = clients::update(&state, &auth.tenant.slug, &id, patch, &auth.origin(&req)).await?;
    Ok(HttpResponse::Ok().json(ClientView::new(client, None)))
}

async fn delete_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    clients::delete(&state, &auth.tenant.slug, &id, &auth.origin(&req)).await?;
    Ok(no_content())
}
