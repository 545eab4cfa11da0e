//! OAuth clients of a tenant.

use crate::api::responses::{
    BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};
use crate::error::Problem;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_web::{delete, get, patch, post};
use serde::{Deserialize, Serialize};

use crate::api::extract::{Authorized, ClientsRead, ClientsWrite};
use crate::api::{Json, Query};
use crate::api::{ListQuery, ListResponse, no_content, rfc3339};
use crate::domain::{ClientType, GrantType};
use crate::error::AppResult;
use crate::service::clients;
use crate::state::AppState;
use crate::store::db::clients::Client;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ClientView {
    client_id: String,
    name: String,
    #[serde(rename = "type")]
    client_type: ClientType,
    grant_types: Vec<GrantType>,
    redirect_uris: Vec<String>,
    post_logout_redirect_uris: Vec<String>,
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
            post_logout_redirect_uris: c.post_logout_redirect_uris,
            audience: c.audience,
            enabled: c.enabled,
            created_at: rfc3339(c.created_at),
            client_secret: secret,
        }
    }
}

/// A new client; its `type` decides which grants it may list.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum CreateClient {
    /// A client that keeps a secret (a backend): any grant.
    Confidential {
        #[schema(min_length = 1, max_length = 200, pattern = "[^ \\t\\n\\r\\f]")]
        name: String,
        #[schema(min_items = 1)]
        grant_types: Vec<GrantType>,
        /// https URLs, http URLs of loopback IP literals (any port matches),
        /// or private-use schemes of native apps (`com.example.app:/callback`);
        /// matched exactly, no fragment.
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        redirect_uris: Vec<RedirectUri>,
        /// Where `end_session` may send the browser afterwards (OIDC
        /// RP-Initiated Logout); the same rules as `redirect_uris`.
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        post_logout_redirect_uris: Vec<RedirectUri>,
        /// API identifiers put in `aud`; default: the client id.
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        audience: Vec<AudienceId>,
        /// Chosen by latchkey when omitted.
        #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
        client_id: Option<String>,
    },
    /// A client that cannot keep a secret (a browser or device app).
    Public {
        #[schema(min_length = 1, max_length = 200, pattern = "[^ \\t\\n\\r\\f]")]
        name: String,
        #[schema(min_items = 1)]
        grant_types: Vec<PublicGrant>,
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        redirect_uris: Vec<RedirectUri>,
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        post_logout_redirect_uris: Vec<RedirectUri>,
        #[serde(default)]
        #[schema(max_items = 20, inline)]
        audience: Vec<AudienceId>,
        #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
        client_id: Option<String>,
    },
}

/// The grants a public client may use.
#[derive(Deserialize, utoipa::ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum PublicGrant {
    AuthorizationCode,
    Password,
    RefreshToken,
}

impl From<PublicGrant> for GrantType {
    fn from(g: PublicGrant) -> Self {
        match g {
            PublicGrant::AuthorizationCode => GrantType::AuthorizationCode,
            PublicGrant::Password => GrantType::Password,
            PublicGrant::RefreshToken => GrantType::RefreshToken,
        }
    }
}

/// A redirect URI (SPEC §9): https, http of a loopback IP literal (or any
/// host while the public URL is http), or a private-use scheme of a native
/// app; the characters of RFC 3986 without fragment (percent-encode the rest).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(
    pattern = "^(https?://[!$-;=?-Z_a-z~]+|http://\\[::1\\](:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[!$-;=?-Z_a-z~]*)?|[a-z][a-z0-9+-]*(\\.[a-z0-9+-]+)+:/[!$-;=?-Z_a-z~]*)$",
    max_length = 2000
)]
pub struct RedirectUri(String);

/// An API identifier.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(pattern = "[^ \\t\\n\\r\\f]", min_length = 1, max_length = 200)]
pub struct AudienceId(String);

/// Lists the tenant's OAuth clients (`clients:read`).
#[utoipa::path(
    tag = "clients",
    params(("t" = String, Path, description = "Tenant slug"), ListQuery),
    responses(
        (status = 200, description = "Clients by id", body = ListResponse<ClientView>),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/clients")]
pub async fn list_clients(
    state: web::Data<AppState>,
    auth: Authorized<ClientsRead>,
    q: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner()?;
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

/// Creates a client (`clients:write`); a confidential client's secret is answered this once.
#[utoipa::path(
    tag = "clients",
    params(("t" = String, Path, description = "Tenant slug")),
    request_body = CreateClient,
    responses(
        (status = 201, description = "The client; `client_secret` is answered this once", body = ClientView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[post("/admin/tenants/{t}/clients")]
pub async fn create_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    body: Json<CreateClient>,
) -> AppResult<HttpResponse> {
    let new = match body.into_inner()? {
        CreateClient::Confidential {
            name,
            grant_types,
            redirect_uris,
            post_logout_redirect_uris,
            audience,
            client_id,
        } => clients::NewClient {
            name,
            client_type: ClientType::Confidential,
            grant_types,
            redirect_uris: redirect_uris.into_iter().map(|u| u.0).collect(),
            post_logout_redirect_uris: post_logout_redirect_uris.into_iter().map(|u| u.0).collect(),
            audience: audience.into_iter().map(|a| a.0).collect(),
            client_id,
        },
        CreateClient::Public {
            name,
            grant_types,
            redirect_uris,
            post_logout_redirect_uris,
            audience,
            client_id,
        } => clients::NewClient {
            name,
            client_type: ClientType::Public,
            grant_types: grant_types.into_iter().map(GrantType::from).collect(),
            redirect_uris: redirect_uris.into_iter().map(|u| u.0).collect(),
            post_logout_redirect_uris: post_logout_redirect_uris.into_iter().map(|u| u.0).collect(),
            audience: audience.into_iter().map(|a| a.0).collect(),
            client_id,
        },
    };
    let (client, secret) =
        clients::create(&state, &auth.tenant.slug, new, &auth.origin(&req)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(ClientView::new(client, secret)))
}

/// Reads a client (`clients:read`).
#[utoipa::path(
    tag = "clients",
    params(("t" = String, Path, description = "Tenant slug"), ("client_id" = String, Path, description = "Client id")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[get("/admin/tenants/{t}/clients/{client_id}")]
pub async fn get_client(
    state: web::Data<AppState>,
    auth: Authorized<ClientsRead>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let client = clients::get(&state, &auth.tenant.slug, &id).await?;
    Ok(HttpResponse::Ok().json(ClientView::new(client, None)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchClient {
    #[schema(min_length = 1, max_length = 200, pattern = "[^ \\t\\n\\r\\f]")]
    name: Option<String>,
    #[schema(min_items = 1)]
    grant_types: Option<Vec<GrantType>>,
    #[schema(max_items = 20, inline)]
    redirect_uris: Option<Vec<RedirectUri>>,
    #[schema(max_items = 20, inline)]
    post_logout_redirect_uris: Option<Vec<RedirectUri>>,
    #[schema(max_items = 20, inline)]
    audience: Option<Vec<AudienceId>>,
    enabled: Option<bool>,
}

/// Updates a client (`clients:write`); `{"enabled": false}` makes its tokens 401 at once.
#[utoipa::path(
    tag = "clients",
    params(("t" = String, Path, description = "Tenant slug"), ("client_id" = String, Path, description = "Client id")),
    request_body = PatchClient,
    responses(
        (status = 409, description = "`conflict`: the grants do not fit the client's type", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The updated client", body = ClientView),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[patch("/admin/tenants/{t}/clients/{client_id}")]
pub async fn patch_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    path: web::Path<(String, String)>,
    body: Json<PatchClient>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    let b = body.into_inner()?;
    let patch = clients::ClientPatch {
        name: b.name,
        grant_types: b.grant_types,
        redirect_uris: b
            .redirect_uris
            .map(|v| v.into_iter().map(|u| u.0).collect()),
        post_logout_redirect_uris: b
            .post_logout_redirect_uris
            .map(|v| v.into_iter().map(|u| u.0).collect()),
        audience: b.audience.map(|v| v.into_iter().map(|a| a.0).collect()),
        enabled: b.enabled,
    };
    let client = clients::update(&state, &auth.tenant.slug, &id, patch, &auth.origin(&req)).await?;
    Ok(HttpResponse::Ok().json(ClientView::new(client, None)))
}

/// Deletes a client; its tokens die with it (`clients:write`).
#[utoipa::path(
    tag = "clients",
    params(("t" = String, Path, description = "Tenant slug"), ("client_id" = String, Path, description = "Client id")),
    responses(
        (status = 204, description = "Deleted; its tokens die with it"),
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Unavailable
    ),
    security(("bearer" = []))
)]
#[delete("/admin/tenants/{t}/clients/{client_id}")]
pub async fn delete_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    auth: Authorized<ClientsWrite>,
    path: web::Path<(String, String)>,
) -> AppResult<HttpResponse> {
    let (_, id) = path.into_inner();
    clients::delete(&state, &auth.tenant.slug, &id, &auth.origin(&req)).await?;
    Ok(no_content())
}
