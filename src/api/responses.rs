//! Error responses shared by the operations of the OpenAPI document, each
//! described once.

use crate::error::{OAuthError, Problem};

/// `400` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BadRequest {
    #[response(
        status = 400,
        description = "Invalid request: `validation_failed` (the field is named in `detail`), `weak_password`, `invalid_request`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `401` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Unauthorized {
    #[response(
        status = 401,
        description = "Not authenticated: `token_missing`, `token_malformed`, `token_invalid`, `token_expired`, `token_not_yet_valid`, `token_wrong_audience`, `session_revoked`, `account_disabled`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `403` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Forbidden {
    #[response(
        status = 403,
        description = "`forbidden`: the permission named in `detail` is missing",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `404` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum NotFound {
    #[response(
        status = 404,
        description = "`not_found`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `409` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Conflict {
    #[response(
        status = 409,
        description = "`conflict`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `413` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum PayloadTooLarge {
    #[response(
        status = 413,
        description = "`payload_too_large`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `415` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum UnsupportedMediaType {
    #[response(
        status = 415,
        description = "`unsupported_media_type`",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `503` as `application/problem+json`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Unavailable {
    #[response(
        status = 503,
        description = "`store_unavailable`: the database or session store is unreachable",
        content_type = "application/problem+json"
    )]
    Problem(Problem),
}

/// `400` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthBadRequest {
    #[response(
        status = 400,
        description = "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`"
    )]
    Error(OAuthError),
}

/// `401` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthInvalidClient {
    #[response(
        status = 401,
        description = "`invalid_client` (with `WWW-Authenticate: Basic` when Basic was used)"
    )]
    Error(OAuthError),
}

/// `404` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthNotFound {
    #[response(status = 404, description = "`not_found`: no such tenant")]
    Error(OAuthError),
}

/// `413` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthPayloadTooLarge {
    #[response(status = 413, description = "`payload_too_large`")]
    Error(OAuthError),
}

/// `415` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthUnsupportedMediaType {
    #[response(status = 415, description = "`unsupported_media_type`")]
    Error(OAuthError),
}

/// `503` as an RFC 6749 §5.2 body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum OAuthUnavailable {
    #[response(status = 503, description = "`store_unavailable`")]
    Error(OAuthError),
}
