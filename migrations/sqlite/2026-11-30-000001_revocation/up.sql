-- See the PostgreSQL migration of the same name.
ALTER TABLE clients ADD COLUMN generation TEXT NOT NULL DEFAULT '';
-- A client disabled before this version starts a generation of its own, so
-- enabling it later does not revive what it issued before.
UPDATE clients SET generation = lower(hex(randomblob(8))) WHERE enabled = 0;

CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX changes_at ON changes (at);

-- Access tokens revoked before they expire (RFC 7009, logout): the session
-- store holds them for every check; this table lets it be refilled after
-- it lost its data.
CREATE TABLE revoked_tokens (
    tenant TEXT NOT NULL REFERENCES tenants (slug) ON DELETE CASCADE,
    jti TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (tenant, jti)
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
