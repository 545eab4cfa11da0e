//! What the actix-web and axum extractors share: reading the bearer token
//! (RFC 6750 §2.1), the requirement types, and the refusal as a response.

// Without a framework feature, the extractors' helpers have no caller.
#![cfg_attr(not(any(feature = "actix-web", feature = "axum")), allow(dead_code))]

use std::marker::PhantomData;
use std::ops::Deref;

use crate::error::{AuthError, ResponseParts};
use crate::verifier::{Claims, Verifier};

/// The bearer token of a request, from its only `Authorization` header.
///
/// `authorization` are the values of every `Authorization` header, `query`
/// the raw query string.
///
/// # Errors
/// `token_missing` without a header; `invalid_request` for two headers or
/// a token in the query string (tokens never belong in URLs, RFC 6750 §5.3);
/// `token_malformed` for another scheme or an empty token.
pub(crate) fn bearer_token<'a>(
    mut authorization: impl Iterator<Item = &'a [u8]>,
    query: &str,
) -> Result<&'a str, AuthError> {
    let in_query = form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token");
    if in_query {
        return Err(AuthError::InvalidRequest(
            "Send the access token once, in the Authorization header only".to_owned(),
        ));
    }
    let Some(value) = authorization.next() else {
        return Err(AuthError::TokenMissing);
    };
    if authorization.next().is_some() {
        return Err(AuthError::InvalidRequest(
            "Send the access token once, in the Authorization header only".to_owned(),
        ));
    }
    let value = std::str::from_utf8(value)
        .ok()
        .filter(|v| v.is_ascii())
        .ok_or_else(|| {
            AuthError::TokenMalformed("The Authorization header is not ASCII".to_owned())
        })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::TokenMalformed(
            "The Authorization scheme must be Bearer".to_owned(),
        ));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::TokenMalformed(
            "The bearer token is empty or malformed".to_owned(),
        ));
    }
    Ok(token)
}

/// Verifies the request's bearer token.
pub(crate) async fn authenticate(
    verifier: &Verifier,
    token: Result<String, AuthError>,
) -> Result<Claims, Rejection> {
    let token = token.map_err(|e| verifier.reject(e))?;
    verifier
        .verify(&token)
        .await
        .map_err(|e| verifier.reject(e))
}

/// A refusal of a protected route: latchkey's 400/401/403/503 answer
/// (problem+json, `WWW-Authenticate` with `realm` and `error`, SPEC §5).
/// Handlers may return it too.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// Why.
    pub error: AuthError,
    /// The `realm` of the challenge.
    pub realm: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.code(), self.error)
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// Status, headers and body of the answer; logs the refusal with its
    /// code and the answer's `request_id` (never the token; a 500's or
    /// 503's cause is logged, not answered).
    pub fn to_response_parts(&self) -> ResponseParts {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        match &self.error {
            AuthError::Internal(cause) | AuthError::Unavailable(cause) => tracing::error!(
                code = self.error.code(),
                realm = %self.realm,
                %request_id,
                %cause,
                "request failed"
            ),
            error => tracing::info!(
                code = error.code(),
                realm = %self.realm,
                %request_id,
                "request refused"
            ),
        }
        self.error.to_response_parts(&self.realm, &request_id)
    }
}

impl Verifier {
    /// `error` as a refusal in this verifier's realm.
    pub fn reject(&self, error: AuthError) -> Rejection {
        Rejection {
            error,
            realm: self.realm().to_owned(),
        }
    }
}

/// The verified claims of the request's access token: the extractor for
/// any authenticated route. Refuses with 401 (or 400 `invalid_request`,
/// 503 in revocation-aware mode) as SPEC §5.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl Deref for Authenticated {
    type Target = Claims;
    fn deref(&self) -> &Claims {
        &self.0
    }
}

/// A role name for [`RequireRole`]; declare one with [`crate::role!`].
pub trait RoleName: Send + Sync + 'static {
    /// The role, as named in the tenant.
    const ROLE: &'static str;
}

/// An OAuth scope for [`RequireScope`]; declare one with [`crate::scope!`].
pub trait ScopeName: Send + Sync + 'static {
    /// The scope.
    const SCOPE: &'static str;
}

/// A permission for [`RequirePermission`], decided by latchkey's
/// `/authz/check`; declare one with [`crate::permission!`].
pub trait PermissionName: Send + Sync + 'static {
    /// The resource (`documents`).
    const RESOURCE: &'static str;
    /// The action (`edit`).
    const ACTION: &'static str;
}

/// An authenticated request whose token holds role `R`: otherwise 403
/// `forbidden`.
pub struct RequireRole<R: RoleName>(pub Claims, PhantomData<R>);

/// An authenticated request whose token was granted scope `S`: otherwise
/// 403 `insufficient_scope` naming it.
pub struct RequireScope<S: ScopeName>(pub Claims, PhantomData<S>);

/// An authenticated request whose subject latchkey's `/authz/check` allows
/// `P` (through the verifier's client, decisions cached briefly): otherwise
/// 403 `forbidden`, or 503 when latchkey cannot be asked.
pub struct RequirePermission<P: PermissionName>(pub Claims, PhantomData<P>);

macro_rules! claims_wrapper {
    ($name:ident, $bound:ident) => {
        impl<T: $bound> $name<T> {
            pub(crate) fn new(claims: Claims) -> Self {
                $name(claims, PhantomData)
            }
            /// The verified claims.
            pub fn into_inner(self) -> Claims {
                self.0
            }
        }
        impl<T: $bound> Deref for $name<T> {
            type Target = Claims;
            fn deref(&self) -> &Claims {
                &self.0
            }
        }
        impl<T: $bound> std::fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0).finish()
            }
        }
    };
}
claims_wrapper!(RequireRole, RoleName);
claims_wrapper!(RequireScope, ScopeName);
claims_wrapper!(RequirePermission, PermissionName);

pub(crate) async fn require_role<R: RoleName>(
    verifier: &Verifier,
    token: Result<String, AuthError>,
) -> Result<RequireRole<R>, Rejection> {
    let claims = authenticate(verifier, token).await?;
    verifier
        .require_role(&claims, R::ROLE)
        .map_err(|e| verifier.reject(e))?;
    Ok(RequireRole::new(claims))
}

pub(crate) async fn require_scope<S: ScopeName>(
    verifier: &Verifier,
    token: Result<String, AuthError>,
) -> Result<RequireScope<S>, Rejection> {
    let claims = authenticate(verifier, token).await?;
    verifier
        .require_scope(&claims, S::SCOPE)
        .map_err(|e| verifier.reject(e))?;
    Ok(RequireScope::new(claims))
}

pub(crate) async fn require_permission<P: PermissionName>(
    verifier: &Verifier,
    token: Result<String, AuthError>,
) -> Result<RequirePermission<P>, Rejection> {
    let claims = authenticate(verifier, token).await?;
    verifier
        .require_permission(&claims, P::RESOURCE, P::ACTION)
        .await
        .map_err(|e| verifier.reject(e))?;
    Ok(RequirePermission::new(claims))
}

/// Declares a role for [`RequireRole`]: `role!(pub Editor = "editor");`
#[macro_export]
macro_rules! role {
    ($vis:vis $name:ident = $role:literal) => {
        $vis struct $name;
        impl $crate::RoleName for $name {
            const ROLE: &'static str = $role;
        }
    };
}

/// Declares a scope for [`RequireScope`]: `scope!(pub ReadOrders = "orders:read");`
#[macro_export]
macro_rules! scope {
    ($vis:vis $name:ident = $scope:literal) => {
        $vis struct $name;
        impl $crate::ScopeName for $name {
            const SCOPE: &'static str = $scope;
        }
    };
}

/// Declares a permission for [`RequirePermission`]:
/// `permission!(pub EditDocuments = "documents", "edit");`
#[macro_export]
macro_rules! permission {
    ($vis:vis $name:ident = $resource:literal, $action:literal) => {
        $vis struct $name;
        impl $crate::PermissionName for $name {
            const RESOURCE: &'static str = $resource;
            const ACTION: &'static str = $action;
        }
    };
}
