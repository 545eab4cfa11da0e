-- See the PostgreSQL migration of the same name.
ALTER TABLE clients ADD COLUMN generation TEXT NOT NULL DEFAULT '';

CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX changes_at ON changes (at);
