//! What every way of signing a user in shares (the `password` grant and
//! the hosted login page, SPEC §7 and §9): the password check under the
//! lockout, the new session, and the tokens a session starts with.

use super::{AccessFor, UNKNOWN_USER, mint_access, roles_of, session_ttl, user_unchanged};
use crate::authn::password::Verified;
use crate::authn::{refresh_tokens, sha256_hex};
use crate::config::Secret;
use crate::domain::{Email, UserStatus};
use crate::error::{AppError, AppResult};
use crate::service::lockout;
use crate::service::{Origin, unix_now};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users::{self, User};
use crate::store::session::{EndReason, RefreshRecord, SessionRecord};

/// A user whose password was just verified, with the hash it was checked
/// against (a later change of it ends the sign-in).
pub(crate) struct SignedIn {
    pub user: User,
    pub verified_hash: String,
}

/// Checks an e-mail and password under the account lockout (SPEC §7).
/// `None` for a wrong password, an unknown e-mail, a disabled user or a
/// locked account alike: the failure is counted and audited here.
pub(crate) async fn check_password(
    state: &AppState,
    tenant: &Tenant,
    username: &str,
    password: &Secret,
    origin: &Origin,
) -> AppResult<Option<SignedIn>> {
    let user = match Email::parse(username) {
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
    let reserved = lockout::reserve(state, tenant, &lock_id).await?;
    // A locked account is checked against the dummy hash: same time, and
    // the guess is never tried against the real one.
    let stored = user
        .as_ref()
        .filter(|_| reserved.admitted())
        .map(|u| u.password_hash.as_str());
    let verified = match state.passwords.verify(password, stored).await {
        Ok(v) => v,
        Err(e) => {
            lockout::abandoned(state, tenant, &reserved).await;
            return Err(AppError::internal(e));
        }
    };
    match (user, verified) {
        (Some(user), v @ (Verified::Yes | Verified::YesRehashed(_)))
            if user.status == UserStatus::Active =>
        {
            let mut verified_hash = user.password_hash.clone();
            if let Verified::YesRehashed(hash) = v {
                let (t, id, old) = (tenant.slug.clone(), user.id.clone(), verified_hash.clone());
                let renewed = hash.clone();
                let renewal = state
                    .db
                    .run(move |c| users::renew_password_hash(c, &t, &id, &old, &renewed))
                    .await;
                match renewal {
                    Ok(true) => verified_hash = hash,
                    // Another sign-in renewed it first (or the password
                    // changed): the hash now stored must verify this
                    // password too, or the re-check after the session
                    // starts refuses.
                    Ok(false) => {
                        let (t, id) = (tenant.slug.clone(), user.id.clone());
                        let current = state.db.run(move |c| users::find(c, &t, &id)).await;
                        if let Ok(Some(now)) = current
                            && let Ok(Verified::Yes | Verified::YesRehashed(_)) = state
                                .passwords
                                .verify(password, Some(&now.password_hash))
                                .await
                        {
                            verified_hash = now.password_hash;
                        }
                    }
                    Err(e) => {
                        lockout::abandoned(state, tenant, &reserved).await;
                        return Err(e.into());
                    }
                }
            }
            lockout::succeeded(state, tenant, &reserved).await?;
            Ok(Some(SignedIn {
                user,
                verified_hash,
            }))
        }
        (user, _) => {
            let target = user.as_ref().map(|u| u.id.as_str());
            crate::service::audit::record(state, &tenant.slug, "login", "failure", target, origin)
                .await;
            lockout::failed(state, tenant, target, &reserved, origin).await?;
            Ok(None)
        }
    }
}

/// Starts the SPEC §4 session of a verified sign-in through `client_id`.
/// `None` when the user was disabled or changed password meanwhile (the
/// session is then over at once). `with_refresh`: whether it must live as
/// long as a refresh family.
pub(crate) async fn start_session(
    state: &AppState,
    tenant: &Tenant,
    client_id: &str,
    verified: &SignedIn,
    with_refresh: bool,
    origin: &Origin,
) -> AppResult<Option<SessionRecord>> {
    let user = &verified.user;
    let (t, id) = (tenant.slug.clone(), user.id.clone());
    state
        .db
        .run(move |c| users::touch_login(c, &t, &id))
        .await?;
    let now = unix_now();
    let session = SessionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.clone(),
        client_id: client_id.to_owned(),
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
    // A disable or password change that committed after the user was read
    // either cut the user off after this session began (so it is over), or
    // is seen here.
    if !user_unchanged(state, &tenant.slug, &user.id, &verified.verified_hash).await? {
        state
            .sessions
            .end_session(
                &tenant.slug,
                &session.id,
                EndReason::Disabled,
                state.linger(tenant),
            )
            .await?;
        return Ok(None);
    }
    if !evicted.is_empty() {
        tracing::info!(
            tenant = %tenant.slug,
            user_id = %user.id,
            ended = evicted.len(),
            "oldest sessions ended: the user reached the session limit"
        );
        crate::service::audit::record(
            state,
            &tenant.slug,
            "session.limit_reached",
            "success",
            Some(&user.id),
            origin,
        )
        .await;
    }
    let login_origin = Origin {
        actor: Some(user.id.clone()),
        ..origin.clone()
    };
    crate::service::audit::record(
        state,
        &tenant.slug,
        "login",
        "success",
        Some(&user.id),
        &login_origin,
    )
    .await;
    Ok(Some(session))
}

/// The tokens a session starts with for a client.
pub(crate) struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    pub family_id: Option<String>,
}

/// Signs an access token for the session's user and, when the client has
/// the `refresh_token` grant, starts a refresh family. `family_id` and
/// `jti` are chosen here unless given.
pub(crate) async fn issue_tokens(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    session: &SessionRecord,
    scope: &str,
    family_id: Option<String>,
    jti: Option<String>,
) -> AppResult<Issued> {
    let roles = roles_of(state, &tenant.slug, &session.user_id).await?;
    let minted = mint_access(
        state,
        tenant,
        client,
        AccessFor {
            sub: &session.user_id,
            sid: Some(&session.id),
            scope,
            roles,
            jti,
        },
    )
    .await?;
    let mut issued = Issued {
        access_token: minted.token,
        expires_in: minted.expires_in,
        refresh_token: None,
        family_id: None,
    };
    if client.allows(crate::domain::GrantType::RefreshToken) {
        let family_id = family_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let rt = refresh_tokens::issue(&family_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("family id is not a UUID")))?;
        let s = &tenant.settings;
        let now = unix_now();
        // A family ends with its session at the latest (a later client of a
        // browser session gets what is left of it).
        let family_expires_at = (now + s.refresh_token_ttl_seconds as i64)
            .min(session.created_at + s.refresh_token_ttl_seconds as i64);
        let record = RefreshRecord {
            family_id: family_id.clone(),
            session_id: session.id.clone(),
            client_id: client.client_id.clone(),
            user_id: session.user_id.clone(),
            expires_at: (now + s.refresh_idle_timeout_seconds as i64).min(family_expires_at),
            family_expires_at,
            scope: scope.to_owned(),
            client_generation: client.generation.clone(),
        };
        state
            .sessions
            .start_family(&tenant.slug, &sha256_hex(&rt), &record)
            .await?;
        issued.refresh_token = Some(rt);
        issued.family_id = Some(family_id);
    }
    Ok(issued)
}
