#!/bin/bash
# Demo database for docker-compose.yml: the login roles the rules map (app, support_alice, dba)
# and the `customers` table whose protected columns are bytea (pgshroud stores ciphertext there).
# Run once by the postgres image on an empty data directory.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$APP_PASSWORD" \
    -v support_password="$SUPPORT_PASSWORD" \
    -v dba_password="$DBA_PASSWORD" <<'SQL'
CREATE ROLE app LOGIN PASSWORD :'app_password';
CREATE ROLE support_alice LOGIN PASSWORD :'support_password';
CREATE ROLE dba LOGIN PASSWORD :'dba_password';

CREATE TABLE customers (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL,
    email bytea UNIQUE,   -- protected: text, encrypted by pgshroud
    age   bytea           -- protected: int4, encrypted by pgshroud
);

GRANT SELECT, INSERT, UPDATE, DELETE ON customers TO app;
GRANT USAGE ON SEQUENCE customers_id_seq TO app;
GRANT SELECT ON customers TO support_alice, dba;
SQL
