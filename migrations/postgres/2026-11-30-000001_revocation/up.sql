-- A client's generation: access and refresh tokens carry the generation they
-- were issued under; disabling the client or suspending its tenant starts a
-- new one, so nothing issued before comes back when it is enabled again or
-- when a client with the same id is created.
ALTER TABLE clients ADD COLUMN generation TEXT NOT NULL DEFAULT '';
-- A client disabled before this version starts a generation of its own, so
-- enabling it later does not revive what it issued before.
UPDATE clients SET generation = md5(random()::text || client_id) WHERE NOT enabled;

-- Cache-invalidating changes, polled by every instance so that a lost
-- pub/sub message still reaches it within a second.
CREATE TABLE changes (
    seq BIGSERIAL PRIMARY KEY,
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
