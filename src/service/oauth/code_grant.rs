//! The `authorization_code` grant (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC
//! Core §3.1.3): a single-use code, bound to its client, redirect URI, PKCE
//! challenge and session, becomes tokens and an ID token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::id_tokens::{self, IdTokenFor};
use super::signin::issue_tokens;
use super::{TokenRequest, TokenResponse, active_user, oauth};
use crate::authn::sha256_hex;
use crate::error::{AppResult, ErrorCode};
use crate::service::authorize::{CodeGrant, pkce_value_ok};
use crate::service::revocation;
use crate::service::unix_now;
use crate::state::AppState;
use crate::store::db::clients::Client;
use crate::store::db::tenants::Tenant;
use crate::store::session::{Ephemeral, Taken};

/// One answer for every refused code, so that a stolen code's holder learns
/// nothing (not even whether it is still unused).
const BAD_CODE: &str = "The authorization code is invalid, expired or already used, or was \
    issued for another client, redirect_uri or code_challenge.";

/// RFC 7636 §4.6: `BASE64URL(SHA256(code_verifier)) == code_challenge`.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

pub(super) async fn grant(
    state: &AppState,
    tenant: &Tenant,
    client: &Client,
    req: TokenRequest,
) -> AppResult<TokenResponse> {
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (req.code, req.redirect_uri, req.code_verifier)
    else {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "code, redirect_uri and code_verifier are required.",
        ));
    };
    if !pkce_value_ok(verifier.expose()) {
        return Err(oauth(
            ErrorCode::InvalidRequest,
            "code_verifier must be 43 to 128 unreserved characters (RFC 7636 §4.1).",
        ));
    }
    let hash = sha256_hex(code.expose());
    let binding_holds = |grant: &CodeGrant| {
        grant.client_id == client.client_id
            && grant.redirect_uri == redirect_uri
            && pkce_matches(verifier.expose(), &grant.code_challenge)
    };
    // The binding is checked before the code is taken, so a request that
    // could never have exchanged it (another client, a guessed verifier)
    // does not spend it; the take below is what makes it single use.
    let stored = state
        .sessions
        .get_ephemeral(&tenant.slug, Ephemeral::Code, &hash)
        .await?
        .and_then(|v| serde_json::from_str::<CodeGrant>(&v).ok());
    if stored.as_ref().is_some_and(|g| !binding_holds(g)) {
        return Err(oauth(ErrorCode::InvalidGrant, BAD_CODE));
    }
    // What this exchange will issue is named before the code is taken, so
    // that a second use of the code can revoke it (RFC 6749 §4.1.2): the
    // first access token's `jti` and the refresh family, two independent
    // random ids (a family id is a secret of its refresh tokens).
    let issued = Issued {
        jti: uuid::Uuid::new_v4().to_string(),
        family_id: uuid::Uuid::new_v4().to_string(),
        client_id: client.client_id.clone(),
    };
    let taken = state
        .sessions
        .take_ephemeral(
            &tenant.slug,
            Ephemeral::Code,
            &hash,
            &issued.mark(),
            mark_ttl(state, tenant),
        )
        .await?;
    let grant: CodeGrant = match taken {
        Taken::Fresh(value) => {
            serde_json::from_str(&value).map_err(|_| oauth(ErrorCode::InvalidGrant, BAD_CODE))?
        }
        Taken::Used(mark) => {
            // Only the client the code was exchanged by can replay it: a
            // leaked code sent through another (public) client revokes
            // nothing of the first.
            if let Some(first) = Issued::parse(&mark)
                && first.client_id == client.client_id
            {
                code_replayed(state, tenant, &first).await;
            }
            return Err(oauth(ErrorCode::InvalidGrant, BAD_CODE));
        }
        Taken::Missing => return Err(oauth(ErrorCode::InvalidGrant, BAD_CODE)),
    };
    if !binding_holds(&grant) {
        return Err(oauth(ErrorCode::InvalidGrant, BAD_CODE));
    }
    let (Some(session), Some(user)) = (
        state.sessions.get_session(&tenant.slug, &grant.sid).await?,
        active_user(state, &tenant.slug, &grant.user_id).await?,
    ) else {
        return Err(oauth(
            ErrorCode::InvalidGrant,
            "The sign-in this code came from has ended.",
        ));
    };
    if session.user_id != user.id {
        return Err(oauth(ErrorCode::InvalidGrant, BAD_CODE));
    }
    let issued = issue_tokens(
        state,
        tenant,
        client,
        &session,
        &grant.scope,
        Some(issued.family_id),
        Some(issued.jti),
    )
    .await?;
    let id_token = if id_tokens::wants_id_token(&grant.scope) {
        let what = IdTokenFor {
            user: &user,
            sid: &session.id,
            auth_time: grant.auth_time,
            nonce: grant.nonce.as_deref(),
            access_token: &issued.access_token,
            scope: &grant.scope,
        };
        Some(id_tokens::mint(state, tenant, client, what).await?)
    } else {
        None
    };
    crate::metrics::token_issued("authorization_code");
    Ok(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer".to_owned(),
        expires_in: issued.expires_in,
        refresh_token: issued.refresh_token,
        id_token,
        scope: grant.scope,
    })
}

/// What the first exchange of a code issues, and to which client, as the
/// used code's mark (`{jti} {family} {client_id}`).
struct Issued {
    jti: String,
    family_id: String,
    client_id: String,
}

impl Issued {
    fn mark(&self) -> String {
        format!("{} {} {}", self.jti, self.family_id, self.client_id)
    }

    fn parse(mark: &str) -> Option<Self> {
        let mut parts = mark.splitn(3, ' ');
        let (jti, family_id, client_id) = (parts.next()?, parts.next()?, parts.next()?);
        (uuid::Uuid::parse_str(jti).is_ok() && uuid::Uuid::parse_str(family_id).is_ok()).then(
            || Self {
                jti: jti.to_owned(),
                family_id: family_id.to_owned(),
                client_id: client_id.to_owned(),
            },
        )
    }
}

/// How long a used code is remembered: as long as the access token its
/// first use issued can live, so a replay in that time still revokes it.
fn mark_ttl(state: &AppState, tenant: &Tenant) -> u64 {
    tenant.settings.access_token_ttl_seconds + state.config.clock_leeway_seconds
}

/// A code came back after its first use: what that use issued is revoked
/// (its refresh family and its access token), and the event recorded.
async fn code_replayed(state: &AppState, tenant: &Tenant, issued: &Issued) {
    let exp = unix_now() + tenant.settings.access_token_ttl_seconds as i64;
    let family = state
        .sessions
        .revoke_family(&tenant.slug, &issued.family_id)
        .await;
    let access = revocation::deny_access_token(state, &tenant.slug, &issued.jti, exp).await;
    if let Err(e) = family {
        tracing::error!(tenant = %tenant.slug, error = %e, "replayed code: family not revoked");
    }
    if let Err(e) = access {
        tracing::error!(tenant = %tenant.slug, error = %e.detail(), "replayed code: access token not denied");
    }
    tracing::warn!(tenant = %tenant.slug, "authorization code reused; what it issued is revoked");
    crate::service::audit::record(
        state,
        &tenant.slug,
        "authorization_code.reuse_detected",
        "failure",
        None,
        &crate::service::Origin::default(),
    )
    .await;
}
