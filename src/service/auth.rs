//! Sign-in, token issuance, refresh rotation with reuse detection,
//! revocation, introspection and sessions.

use serde::{Deserialize, Serialize};

use super::{Origin, unix_now};
use crate::authn::keys::MasterKey;
use crate::authn::password::Verified;
use crate::authn::tokens::{self, AccessClaims, Audience, TokenError};
use crate::authn::{random_token, sha256_hex, verify_sha256};
use crate::config::Secret;
use crate::domain::{ClientType, Email, GrantType, TenantStatus, UserStatus};
use crate::error::{AppError, AppResult, ErrorCode, Flavor};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users;
use crate::store::session::{
    AccessState, EndReason, LockoutPolicy, LoginLock, RefreshRecord, RefreshState, RotateOutcome,
    Rotation, SessionRecord, UserCut,
};

/// How a client presented its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    Basic,
    Post,
    None,
}

/// Client credentials from a token, revoke or introspect request.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: Option<String>,
    pub secret: Option<Secret>,
    pub method: ClientAuthMethod,
}

/// RFC 6749 §5.1 success body. Also what the grace window replays.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Scopes a user token may carry.
const USER_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
const DEFAULT_USER_SCOPE: &str = "openid profile email";

const WRONG_CREDENTIALS: &str = "The e-mail or password is wrong.";
/// The failed-login counter of e-mails that name no user.
const UNKNOWN_USER: &str = "-";
const BAD_REFRESH: &str = "The refresh token is invalid, expired or revoked.";

fn oauth(code: ErrorCode, description: &str) -> AppError {
    AppError::oauth(code, description)
}

/// Checks a requested scope against what may be granted; `None` means the default.
fn grant_scope(requested: Option<&str>, allowed: &[&str], default: &str) -> AppResult<String> {
    let Some(requested) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default.to_owned());
    };
    let mut out: Vec<&str> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.contains(&s) {
            return Err(oauth(
                ErrorCode::InvalidScope,
                "The requested scope is not available to this client.",
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

/// Authenticates the client of an OAuth request (RFC 6749 §2.3).
pub async fn authenticate_client(
    state: &AppState,
    tenant: &str,
    creds: &ClientCredentials,
) -> AppResult<Client> {
    let fail = |detail: &str| {
        let e = oauth(ErrorCode::InvalidClient, detail).with_realm(tenant);
        if creds.method == ClientAuthMethod::Basic {
            e.basic_challenge()
        } else {
            e
        }
    };
    let Some(client_id) = creds.client_id.clone().filter(|c| !c.is_empty()) else {
        return Err(fail("Client authentication is required."));
    };
    let client = state
        .client(tenant, &client_id)
        .await
        .map_err(|e| AppError::from(e).in_flavor(Flavor::OAuth))?;
    let presented = creds.secret.as_ref().map(Secret::expose);
    let Some(client) = client else {
        // Same work as a known client, so timing tells nothing.
        let _ = verify_sha256(presented.unwrap_or_default(), &sha256_hex("-"));
        return Err(fail("Client authentication failed."));
    };
    let authenticated = match (client.client_type, &client.secret_hash, presented) {
        (ClientType::Confidential, Some(hash), Some(secret)) => verify_sha256(secret, hash),
        (ClientType::Public, _, None) => creds.method == ClientAuthMethod::None,
        _ => false,
    };
    if !authenticated || !client.enabled {
        return Err(fail("Client authentication failed."));
    }
    Ok((*client).clone())
}

/// What the token endpoint was asked.
#[derive(Debug, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub scope: Option<String>,
}

/// The token endpoint: every error is already OAuth-shaped.
pub async fn token(
    state: &AppState,
    tenant: &Tenant,
    creds: &ClientCredentials,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let grant = match req.grant_type.as_deref() {
        None | Some("") => {
            return Err(oauth(ErrorCode::InvalidRequest, "grant_type is required."));
        }
        Some("password") => GrantType::Password,
        Some("refresh_token") => GrantType::RefreshToken,
        Some("client_credentials") => GrantType::ClientCredentials,
        Some(_) => {
            return Err(oauth(
                ErrorCode::UnsupportedGrantType,
                "The grant type is not supported.",
            ));
        }
    };
    let client = authenticate_client(state, &tenant.slug, creds).await?;
    if !client.allows(grant) {
        return Err(oauth(
            ErrorCode::UnauthorizedClient,
            "The client may not use this grant type.",
        ));
    }
    if tenant.status == TenantStatus::Suspended {
        return Err(oauth(ErrorCode::InvalidGrant, "The tenant is suspended."));
    }
    let result = match grant {
        GrantType::Password => password_grant(state, tenant, &client, req, origin).await,
        GrantType::RefreshToken => refresh_grant(state, tenant, &client, req, origin).await,
        GrantType::ClientCredentials => client_credentials_grant(state, tenant, &client, req).await,
    };
    result.map_err(|e| e.in_flavor(Flavor::OAuth))
}

/// Signs an access token for `sub` through `client`.
async fn mint_access(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    sub: &str,
    sid: Option<&str>,
    scope: &str,
    roles: Vec<String>,
) -> AppResult<(String, u64)> {
    let keys = state.keys.keys(&tenant.slug).await?;
    let signing = keys.signing.as_ref().ok_or_else(|| {
        AppError::internal(anyhow::anyhow!(
            "tenant {} has no active signing key",
            tenant.slug
        ))
    })?;
    let now = unix_now();
    let ttl = tenant.settings.access_token_ttl_seconds;
    let audience = if client.audience.is_empty() {
        vec![client.client_id.clone()]
    } else {
        client.audience.clone()
    };
    let claims = AccessClaims {
        iss: state.issuer(&tenant.slug),
        sub: sub.to_owned(),
        aud: Audience::from_list(audience),
        azp: client.client_id.clone(),
        client_id: client.client_id.clone(),
        exp: now + ttl as i64,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::new_v4().to_string(),
        tid: tenant.slug.clone(),
        sid: sid.map(str::to_owned),
        scope: scope.to_owned(),
        roles,
        cgen: client.generation.clone(),
    };
    let token = tokens::sign(signing, &claims).map_err(AppError::internal)?;
    Ok((token, ttl))
}

/// The user's roles, from the policy snapshot (never more than a second
/// behind a change, SPEC §6).
async fn roles_of(state: &AppState, tenant: &str, user_id: &str) -> AppResult<Vec<String>> {
    Ok(state.authz.roles_of(tenant, user_id).await?)
}

/// Whether the user exists and is active, as the database says now.
async fn user_still_active(state: &AppState, tenant: &str, user_id: &str) -> AppResult<bool> {
    let (t, id) = (tenant.to_owned(), user_id.to_owned());
    Ok(state
        .db
        .run(move |c| users::find(c, &t, &id))
        .await?
        .is_some_and(|u| u.status == UserStatus::Active))
}

/// How long a session record lives: its longest refresh family, or its
/// access token when the client gets no refresh token.
fn session_ttl(state: &AppState, tenant: &Tenant, with_refresh: bool) -> u64 {
    let s = &tenant.settings;
    let base = if with_refresh {
        s.refresh_token_ttl_seconds.max(s.access_token_ttl_seconds)
    } else {
        s.access_token_ttl_seconds
    };
    base + state.config.clock_leeway_seconds
}

async fn password_grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let (Some(username), Some(password)) = (req.username, req.password) else {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "username and password are required.",
        ));
    };
    let scope = grant_scope(req.scope.as_deref(), USER_SCOPES, DEFAULT_USER_SCOPE)?;
    let user = match Email::parse(&username) {
        Ok(email) => {
            let (t, e) = (tenant.slug.clone(), email.normalized());
            state
                .db
                .run(move |c| users::find_by_email(c, &t, &e))
                .await?
        }
        Err(_) => None,
    };
    // Unknown e-mails take the same store round trips as known ones, under
    // an id no user has, so timing tells nothing about who exists.
    let lock_id = user
        .as_ref()
        .map_or(UNKNOWN_USER, |u| u.id.as_str())
        .to_owned();
    let lock = state.sessions.login_lock(&tenant.slug, &lock_id).await?;
    let verified = state
        .passwords
        .verify(&password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(AppError::internal)?;
    let now = unix_now();
    let user = match (user, verified) {
        (Some(user), v @ (Verified::Yes | Verified::YesRehashed(_)))
            if user.status == UserStatus::Active && !lock.is_locked(now) =>
        {
            if let Verified::YesRehashed(hash) = v {
                let (t, id) = (tenant.slug.clone(), user.id.clone());
                state
                    .db
                    .run(move |c| users::set_password_hash(c, &t, &id, &hash))
                    .await?;
            }
            if lock != LoginLock::default() {
                state
                    .sessions
                    .clear_login_failures(&tenant.slug, &user.id)
                    .await?;
            }
            user
        }
        (user, _) => {
            let target = user.as_ref().map(|u| u.id.as_str());
            let policy = LockoutPolicy::with_threshold(tenant.settings.lockout_threshold);
            let after = state
                .sessions
                .login_failed(&tenant.slug, &lock_id, &policy, now)
                .await?;
            super::audit::record(state, &tenant.slug, "login", "failure", target, origin).await;
            if let Some(id) = target
                && after.is_locked(now)
                && !lock.is_locked(now)
            {
                crate::metrics::account_locked();
                tracing::info!(
                    tenant = %tenant.slug,
                    user_id = %id,
                    locked_for_seconds = after.locked_until - now,
                    "account locked after repeated failed sign-ins"
                );
                super::audit::record(
                    state,
                    &tenant.slug,
                    "login.locked",
                    "failure",
                    target,
                    origin,
                )
                .await;
            }
            // A locked account answers exactly like a wrong password.
            return Err(oauth(ErrorCode::InvalidGrant, WRONG_CREDENTIALS));
        }
    };
    let (t, id) = (tenant.slug.clone(), user.id.clone());
    state
        .db
        .run(move |c| users::touch_login(c, &t, &id))
        .await?;

    let with_refresh = client.allows(GrantType::RefreshToken);
    let now = unix_now();
    let session = SessionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        client_id: client.client_id.clone(),
        created_at: now,
        last_used_at: now,
        ip: origin.ip.clone(),
        user_agent: origin.user_agent.clone(),
    };
    let evicted = state
        .sessions
        .create_session(
            &tenant.slug,
            &session,
            session_ttl(state, tenant, with_refresh),
            state.config.max_sessions_per_user,
            state.linger(tenant),
        )
        .await?;
    // A disable that committed after the user was read above cut the user
    // off after this session began (so it is over), or is seen here.
    if !user_still_active(state, &tenant.slug, &user.id).await? {
        state
            .sessions
            .end_session(
                &tenant.slug,
                &session.id,
                EndReason::Disabled,
                state.linger(tenant),
            )
            .await?;
        return Err(oauth(ErrorCode::InvalidGrant, WRONG_CREDENTIALS));
    }
    if !evicted.is_empty() {
        tracing::info!(
            tenant = %tenant.slug,
            user_id = %user.id,
            ended = evicted.len(),
            "oldest sessions ended: the user reached the session limit"
        );
        super::audit::record(
            state,
            &tenant.slug,
            "session.limit_reached",
            "success",
            Some(&user.id),
            origin,
        )
        .await;
    }
    let roles = roles_of(state, &tenant.slug, &user.id).await?;
    let (access_token, expires_in) = mint_access(
        state,
        tenant,
        client,
        &user.id,
        Some(&session.id),
        &scope,
        roles,
    )
    .await?;
    let refresh_token = if with_refresh {
        let rt = random_token();
        let s = &tenant.settings;
        let family_expires_at = now + s.refresh_token_ttl_seconds as i64;
        let record = RefreshRecord {
            family_id: uuid::Uuid::new_v4().to_string(),
            session_id: session.id.clone(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            expires_at: (now + s.refresh_idle_timeout_seconds as i64).min(family_expires_at),
            family_expires_at,
            scope: scope.clone(),
            client_generation: client.generation.clone(),
        };
        state
            .sessions
            .start_family(&tenant.slug, &sha256_hex(&rt), &record)
            .await?;
        Some(rt)
    } else {
        None
    };
    crate::metrics::token_issued("password");
    let login_origin = Origin {
        actor: Some(user.id.clone()),
        ..origin.clone()
    };
    super::audit::record(
        state,
        &tenant.slug,
        "login",
        "success",
        Some(&user.id),
        &login_origin,
    )
    .await;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        refresh_token,
        scope,
    })
}

/// The key that seals a successor pair: derived from the predecessor token,
/// which only its holder knows.
fn grace_key(refresh_token: &str) -> MasterKey {
    MasterKey::derived("latchkey refresh grace", refresh_token)
}

async fn refresh_grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
    origin: &Origin,
) -> AppResult<TokenResponse> {
    let Some(presented) = req.refresh_token else {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "refresh_token is required.",
        ));
    };
    let presented = presented.expose();
    let hash = sha256_hex(presented);
    // A lost race is retried once the winner's rotation is visible.
    for _ in 0..3 {
        let Some(entry) = state.sessions.get_refresh(&tenant.slug, &hash).await? else {
            return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
        };
        let record = &entry.record;
        if record.client_id != client.client_id
            || record.client_generation != client.generation
            || !entry.family_active
            || !entry.session_active
        {
            return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
        }
        let now = unix_now();
        match entry.state {
            RefreshState::Rotated {
                rotated_at,
                successor_is_current,
                sealed_successor,
            } => {
                let in_grace = now - rotated_at <= tenant.settings.refresh_grace_seconds as i64;
                if successor_is_current
                    && in_grace
                    && let Some(sealed) = sealed_successor
                    && let Ok(plain) = grace_key(presented).open(&sealed, &hash)
                    && let Ok(pair) = serde_json::from_slice::<TokenResponse>(&plain)
                {
                    return Ok(pair);
                }
                return Err(reuse_detected(state, tenant, record, origin).await);
            }
            RefreshState::Current => {
                if now > record.expires_at || now > record.family_expires_at {
                    return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                }
                let scope = match req.scope.as_deref() {
                    None => record.scope.clone(),
                    Some(requested) => {
                        let allowed: Vec<&str> = record.scope.split(' ').collect();
                        grant_scope(Some(requested), &allowed, &record.scope)?
                    }
                };
                if !user_still_active(state, &tenant.slug, &record.user_id).await? {
                    return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                }
                let roles = roles_of(state, &tenant.slug, &record.user_id).await?;
                let (access_token, expires_in) = mint_access(
                    state,
                    tenant,
                    client,
                    &record.user_id,
                    Some(&record.session_id),
                    &scope,
                    roles,
                )
                .await?;
                let successor = random_token();
                let pair = TokenResponse {
                    access_token,
                    token_type: "Bearer".to_owned(),
                    expires_in,
                    refresh_token: Some(successor.clone()),
                    scope,
                };
                let sealed = grace_key(presented)
                    .seal(
                        &serde_json::to_vec(&pair).map_err(AppError::internal)?,
                        &hash,
                    )
                    .map_err(|e| AppError::internal(anyhow::anyhow!(e)))?;
                let new_record = RefreshRecord {
                    expires_at: (now + tenant.settings.refresh_idle_timeout_seconds as i64)
                        .min(record.family_expires_at),
                    scope: pair.scope.clone(),
                    ..record.clone()
                };
                let new_hash = sha256_hex(&successor);
                let outcome = state
                    .sessions
                    .rotate_refresh(
                        &tenant.slug,
                        Rotation {
                            old_hash: &hash,
                            new_hash: &new_hash,
                            new_record: &new_record,
                            sealed_successor: &sealed,
                            now,
                        },
                    )
                    .await?;
                match outcome {
                    RotateOutcome::Rotated => {
                        crate::metrics::token_issued("refresh_token");
                        return Ok(pair);
                    }
                    RotateOutcome::LostRace => continue,
                    RotateOutcome::Revoked => {
                        return Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH));
                    }
                }
            }
        }
    }
    Err(oauth(ErrorCode::InvalidGrant, BAD_REFRESH))
}

/// A rotated token came back outside the grace window: revoke the family and
/// its session, and record it.
async fn reuse_detected(
    state: &AppState,
    tenant: &Tenant,
    record: &RefreshRecord,
    origin: &Origin,
) -> AppError {
    let revoke = async {
        state
            .sessions
            .revoke_family(&tenant.slug, &record.family_id)
            .await?;
        state
            .sessions
            .end_session(
                &tenant.slug,
                &record.session_id,
                EndReason::Revoked,
                state.linger(tenant),
            )
            .await
    };
    if let Err(e) = revoke.await {
        return AppError::from(e).in_flavor(Flavor::OAuth);
    }
    crate::metrics::reuse_detected();
    tracing::warn!(
        tenant = %tenant.slug,
        user = %record.user_id,
        family = %record.family_id,
        "refresh token reuse detected; family and session revoked"
    );
    super::audit::record(
        state,
        &tenant.slug,
        "refresh_token.reuse_detected",
        "failure",
        Some(&record.user_id),
        origin,
    )
    .await;
    oauth(ErrorCode::InvalidGrant, BAD_REFRESH)
}

async fn client_credentials_grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
) -> AppResult<TokenResponse> {
    if client.client_type != ClientType::Confidential {
        return Err(oauth(
            ErrorCode::UnauthorizedClient,
            "Only confidential clients may use client_credentials.",
        ));
    }
    let scope = grant_scope(req.scope.as_deref(), &[], "")?;
    let sub = format!("client:{}", client.client_id);
    let (access_token, expires_in) =
        mint_access(state, tenant, client, &sub, None, &scope, Vec::new()).await?;
    crate::metrics::token_issued("client_credentials");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in,
        refresh_token: None,
        scope,
    })
}

/// Verifies a bearer token for a tenant's resource endpoints, including the
/// deny-list and session state, and maps every failure to its SPEC §5 code.
pub async fn authenticate_bearer(
    state: &AppState,
    tenant: &str,
    token: &str,
) -> AppResult<AccessClaims> {
    let claims = tokens::verify(
        &state.keys,
        &state.public_url,
        tenant,
        token,
        state.config.clock_leeway_seconds,
    )
    .await
    .map_err(|e| token_error(e).with_realm(tenant))?;
    check_access_state(state, &claims)
        .await
        .map_err(|e| e.with_realm(tenant))?;
    Ok(claims)
}

/// The revocation half of token checking: the tenant and the client as the
/// database says (through this instance's view, never more than a second
/// behind), then the deny-list, session state and user cut-off in one store
/// round trip. Every cut-off is checked here, so no route can skip one.
pub async fn check_access_state(state: &AppState, claims: &AccessClaims) -> AppResult<()> {
    let revoked = || {
        AppError::new(
            ErrorCode::SessionRevoked,
            "The session of this token has ended",
        )
    };
    let disabled = || {
        AppError::new(
            ErrorCode::AccountDisabled,
            "The account or tenant is disabled",
        )
    };
    let tenant = match state.tenant(&claims.tid).await {
        Ok(t) => t,
        Err(crate::store::StoreError::NotFound(_)) => return Err(revoked()),
        Err(e) => return Err(e.into()),
    };
    if tenant.status == TenantStatus::Suspended {
        return Err(disabled());
    }
    match state.client(&claims.tid, &claims.azp).await? {
        None => return Err(revoked()),
        Some(c) if !c.enabled => return Err(disabled()),
        Some(c) if c.generation != claims.cgen => return Err(revoked()),
        Some(_) => {}
    }
    let session = claims.sid.as_deref().map(|sid| (sid, claims.sub.as_str()));
    match state
        .sessions
        .access_state(&claims.tid, &claims.jti, session)
        .await?
    {
        AccessState::Active => Ok(()),
        AccessState::Revoked => Err(revoked()),
        AccessState::Disabled => Err(disabled()),
    }
}

/// Maps a verification failure to its SPEC §5 code.
pub fn token_error(e: TokenError) -> AppError {
    match e {
        TokenError::Malformed(d) => AppError::new(ErrorCode::TokenMalformed, d),
        TokenError::Invalid(d) => AppError::new(ErrorCode::TokenInvalid, d),
        TokenError::Expired => AppError::new(ErrorCode::TokenExpired, "The access token expired"),
        TokenError::NotYetValid => AppError::new(
            ErrorCode::TokenNotYetValid,
            "The access token is not yet valid",
        ),
        TokenError::OtherTenant => AppError::new(
            ErrorCode::TokenWrongAudience,
            "The access token was issued by another tenant",
        ),
        TokenError::Store(e) => e.into(),
    }
}

/// RFC 7009: revokes a refresh token (its family and session) or an access
/// token (its `jti`). Unknown or foreign tokens are ignored, as the RFC asks.
pub async fn revoke(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    token: &str,
    origin: &Origin,
) -> AppResult<()> {
    let hash = sha256_hex(token);
    if let Some(entry) = state.sessions.get_refresh(&tenant.slug, &hash).await? {
        if entry.record.client_id == client.client_id {
            state
                .sessions
                .revoke_family(&tenant.slug, &entry.record.family_id)
                .await?;
            state
                .sessions
                .end_session(
                    &tenant.slug,
                    &entry.record.session_id,
                    EndReason::Revoked,
                    state.linger(tenant),
                )
                .await?;
            super::audit::record(
                state,
                &tenant.slug,
                "token.revoke",
                "success",
                Some(&entry.record.user_id),
                origin,
            )
            .await;
        }
        return Ok(());
    }
    match tokens::verify(
        &state.keys,
        &state.public_url,
        &tenant.slug,
        token,
        state.config.clock_leeway_seconds,
    )
    .await
    {
        Ok(claims) if claims.azp == client.client_id => {
            let ttl = (claims.exp - unix_now()).max(0) as u64 + state.config.clock_leeway_seconds;
            state
                .sessions
                .deny_jti(&tenant.slug, &claims.jti, ttl)
                .await?;
            Ok(())
        }
        Err(TokenError::Store(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// RFC 7662 answer.
#[derive(Debug, Clone, Serialize, Default, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

/// RFC 7662: whether a token of this tenant is active, and what it says.
pub async fn introspect(
    state: &AppState,
    tenant: &Tenant,
    token: &str,
) -> AppResult<Introspection> {
    let hash = sha256_hex(token);
    if let Some(entry) = state.sessions.get_refresh(&tenant.slug, &hash).await? {
        let now = unix_now();
        let r = &entry.record;
        let current_generation = state
            .client(&tenant.slug, &r.client_id)
            .await?
            .filter(|c| c.enabled)
            .map(|c| c.generation.clone());
        let active = entry.state == RefreshState::Current
            && entry.family_active
            && entry.session_active
            && current_generation.as_deref() == Some(r.client_generation.as_str())
            && now <= r.expires_at
            && now <= r.family_expires_at;
        if !active {
            return Ok(Introspection::default());
        }
        return Ok(Introspection {
            active: true,
            scope: Some(r.scope.clone()),
            client_id: Some(r.client_id.clone()),
            sub: Some(r.user_id.clone()),
            token_type: Some("refresh_token".to_owned()),
            exp: Some(r.expires_at.min(r.family_expires_at)),
            iss: Some(state.issuer(&tenant.slug)),
            tid: Some(tenant.slug.clone()),
            sid: Some(r.session_id.clone()),
            ..Introspection::default()
        });
    }
    let claims = match authenticate_bearer(state, &tenant.slug, token).await {
        Ok(c) => c,
        Err(e) if e.code() == ErrorCode::StoreUnavailable => return Err(e),
        Err(_) => return Ok(Introspection::default()),
    };
    Ok(Introspection {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        sub: Some(claims.sub),
        token_type: Some("Bearer".to_owned()),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        iss: Some(claims.iss),
        aud: Some(claims.aud),
        jti: Some(claims.jti),
        tid: Some(claims.tid),
        sid: claims.sid,
        roles: Some(claims.roles),
    })
}

/// Ends the caller's session, or every session of the user.
pub async fn logout(
    state: &AppState,
    tenant: &Tenant,
    claims: &AccessClaims,
    all: bool,
    origin: &Origin,
) -> AppResult<()> {
    let linger = state.linger(tenant);
    let ttl = (claims.exp - unix_now()).max(0) as u64 + state.config.clock_leeway_seconds;
    state
        .sessions
        .deny_jti(&tenant.slug, &claims.jti, ttl)
        .await?;
    if let (Some(sid), Some(user)) = (claims.sid.as_deref(), claims.user_id()) {
        if all {
            state
                .sessions
                .end_user_sessions(
                    &tenant.slug,
                    user,
                    UserCut {
                        except: None,
                        reason: EndReason::Revoked,
                        linger,
                    },
                )
                .await?;
        } else {
            state
                .sessions
                .end_session(&tenant.slug, sid, EndReason::Revoked, linger)
                .await?;
        }
    }
    super::audit::record(
        state,
        &tenant.slug,
        "logout",
        "success",
        Some(&claims.sub),
        origin,
    )
    .await;
    Ok(())
}

/// Changes the caller's password; every other session ends.
pub async fn change_password(
    state: &AppState,
    tenant: &Tenant,
    claims: &AccessClaims,
    current: &Secret,
    new: &Secret,
    origin: &Origin,
) -> AppResult<()> {
    let user_id = claims
        .user_id()
        .ok_or_else(|| AppError::new(ErrorCode::Forbidden, "Only a user has a password."))?;
    let user = super::users::get(state, &tenant.slug, user_id).await?;
    let verified = state
        .passwords
        .verify(current, Some(&user.password_hash))
        .await
        .map_err(AppError::internal)?;
    if verified == Verified::No {
        super::audit::record(
            state,
            &tenant.slug,
            "password.change",
            "failure",
            Some(user_id),
            origin,
        )
        .await;
        return Err(AppError::validation(
            "current_password",
            "is not the current password",
        ));
    }
    super::users::check_policy(tenant, &user.email, new.expose())?;
    let hash = state
        .passwords
        .hash(new)
        .await
        .map_err(AppError::internal)?;
    let (t, id) = (tenant.slug.clone(), user.id.clone());
    state
        .db
        .run(move |c| users::set_password_hash(c, &t, &id, &hash))
        .await?;
    state
        .sessions
        .end_user_sessions(
            &tenant.slug,
            &user.id,
            UserCut {
                except: claims.sid.as_deref(),
                reason: EndReason::Revoked,
                linger: state.linger(tenant),
            },
        )
        .await?;
    super::audit::record(
        state,
        &tenant.slug,
        "password.change",
        "success",
        Some(user_id),
        origin,
    )
    .await;
    Ok(())
}
