DROP TABLE audit_events;
DROP TABLE casbin_rules;
DROP TABLE roles;
DROP TABLE signing_keys;
DROP TABLE clients;
DROP TABLE users;
DROP TABLE tenants;
