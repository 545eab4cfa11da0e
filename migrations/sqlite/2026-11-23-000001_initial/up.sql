CREATE TABLE tenants (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_normalized TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    last_login_at TIMESTAMP,
    UNIQUE (tenant, email_normalized)
);
CREATE INDEX users_tenant_id ON users (tenant, id);

CREATE TABLE clients (
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    name TEXT NOT NULL,
    client_type TEXT NOT NULL,
    secret_hash TEXT,
    grant_types TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    audience TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, client_id)
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    alg TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    activates_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    expires_at TIMESTAMP
);
CREATE INDEX signing_keys_tenant ON signing_keys (tenant, created_at);

CREATE TABLE roles (
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    builtin BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE casbin_rules (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    ptype TEXT NOT NULL,
    v0 TEXT NOT NULL DEFAULT '',
    v1 TEXT NOT NULL DEFAULT '',
    v2 TEXT NOT NULL DEFAULT '',
    v3 TEXT NOT NULL DEFAULT '',
    v4 TEXT NOT NULL DEFAULT '',
    v5 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX casbin_rules_tenant ON casbin_rules (tenant, ptype);
CREATE UNIQUE INDEX casbin_rules_unique ON casbin_rules (tenant, ptype, v0, v1, v2, v3, v4, v5);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    at TIMESTAMP NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT,
    target TEXT,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    details TEXT
);
CREATE INDEX audit_events_tenant_id ON audit_events (tenant, id);
