DROP TABLE revoked_tokens;
DROP TABLE changes;
ALTER TABLE clients DROP COLUMN generation;
