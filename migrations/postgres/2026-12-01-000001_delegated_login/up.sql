-- OIDC RP-initiated logout (SPEC §9): where a client may send the browser
-- after signing out. A JSON array, as redirect_uris.
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]';
