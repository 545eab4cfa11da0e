//! The `password` grant (first-party clients that enable it, RFC 9700 §2.4):
//! lockout, timing-safe verification, and a new session.

use super::{
    DEFAULT_USER_SCOPE, TokenRequest, TokenResponse, UNKNOWN_USER, USER_SCOPES, WRONG_CREDENTIALS,
    grant_scope, mint_access, oauth, roles_of, session_ttl, user_unchanged,
};
use crate::authn::password::Verified;
use crate::authn::{refresh_tokens, sha256_hex};
use crate::domain::{Email, GrantType, UserStatus};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::lockout;
use crate::service::{Origin, unix_now};
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::db::users;
use crate::store::session::{EndReason, RefreshRecord, SessionRecord};

pub(super) async fn grant(
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
    let reserved = lockout::reserve(state, tenant, &lock_id).await?;
    // A locked account is checked against the dummy hash: same time, and
    // the guess is never tried against the real one.
    let stored = user
        .as_ref()
        .filter(|_| reserved.admitted())
        .map(|u| u.password_hash.as_str());
    let verified = match state.passwords.verify(&password, stored).await {
        Ok(v) => v,
        Err(e) => {
            lockout::abandoned(state, tenant, &reserved).await;
            return Err(AppError::internal(e));
        }
    };
    let (user, verified_hash) = match (user, verified) {
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
                    // password too, or the re-check below refuses.
                    Ok(false) => {
                        let (t, id) = (tenant.slug.clone(), user.id.clone());
                        let current = state.db.run(move |c| users::find(c, &t, &id)).await;
                        if let Ok(Some(now)) = current
                            && let Ok(Verified::Yes | Verified::YesRehashed(_)) = state
                                .passwords
                                .verify(&password, Some(&now.password_hash))
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
            (user, verified_hash)
        }
        (user, _) => {
            let target = user.as_ref().map(|u| u.id.as_str());
            crate::service::audit::record(state, &tenant.slug, "login", "failure", target, origin)
                .await;
            lockout::failed(state, tenant, target, &reserved, origin).await?;
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
    // A disable or password change that committed after the user was read
    // above either cut the user off after this session began (so it is
    // over), or is seen here.
    if !user_unchanged(state, &tenant.slug, &user.id, &verified_hash).await? {
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
        let family_id = uuid::Uuid::new_v4().to_string();
        let rt = refresh_tokens::issue(&family_id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("family id is not a UUID")))?;
        let s = &tenant.settings;
        let family_expires_at = now + s.refresh_token_ttl_seconds as i64;
        let record = RefreshRecord {
            family_id,
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
    crate::service::audit::record(
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
