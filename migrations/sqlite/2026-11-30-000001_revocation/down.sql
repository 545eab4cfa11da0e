DROP TABLE changes;
ALTER TABLE clients DROP COLUMN generation;
