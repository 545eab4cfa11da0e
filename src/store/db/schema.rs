//! The one schema both backends share (ids as text, times as UTC timestamps).

diesel::table! {
    tenants (slug) {
        slug -> Text,
        name -> Text,
        status -> Text,
        settings -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        tenant -> Text,
        email -> Text,
        email_normalized -> Text,
        password_hash -> Text,
        status -> Text,
        email_verified -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    clients (tenant, client_id) {
        tenant -> Text,
        client_id -> Text,
        name -> Text,
        client_type -> Text,
        secret_hash -> Nullable<Text>,
        grant_types -> Text,
        redirect_uris -> Text,
        audience -> Text,
        enabled -> Bool,
        builtin -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        generation -> Text,
        post_logout_redirect_uris -> Text,
    }
}

diesel::table! {
    revoked_tokens (tenant, jti) {
        tenant -> Text,
        jti -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    changes (seq) {
        seq -> BigInt,
        message -> Text,
        at -> Timestamp,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        tenant -> Text,
        alg -> Text,
        private_key -> Text,
        public_jwk -> Text,
        status -> Text,
        created_at -> Timestamp,
        activates_at -> Timestamp,
        retired_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    roles (tenant, name) {
        tenant -> Text,
        name -> Text,
        description -> Text,
        builtin -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    casbin_rules (id) {
        id -> Text,
        tenant -> Text,
        ptype -> Text,
        v0 -> Text,
        v1 -> Text,
        v2 -> Text,
        v3 -> Text,
        v4 -> Text,
        v5 -> Text,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Text,
        tenant -> Text,
        at -> Timestamp,
        action -> Text,
        outcome -> Text,
        actor -> Nullable<Text>,
        target -> Nullable<Text>,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        request_id -> Nullable<Text>,
        details -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    users,
    clients,
    signing_keys,
    roles,
    casbin_rules,
    audit_events,
    changes,
    revoked_tokens,
);
