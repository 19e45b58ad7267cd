#!/bin/sh
# docker/postgres-init.sh - run once by the postgres image, when it creates its cluster (mounted
# into /docker-entrypoint-initdb.d by docker-compose.yml): adds the bridge's role and database
# beside Synapse's (POSTGRES_USER / POSTGRES_DB). The values come from the postgres service's
# environment: BRIDGE_DB_PASSWORD (required), BRIDGE_DB_USER and BRIDGE_DB_NAME (both "wabridge"
# by default). psql quotes them (:"name", :'literal'), so any password works.
# tests/docker/test_entrypoint.sh runs it against a private PostgreSQL server.
if [ -z "${BRIDGE_DB_PASSWORD:-}" ]; then
    echo "postgres-init.sh: BRIDGE_DB_PASSWORD is not set" >&2
    false
else
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v bridge_user="${BRIDGE_DB_USER:-wabridge}" -v bridge_db="${BRIDGE_DB_NAME:-wabridge}" \
        -v bridge_password="$BRIDGE_DB_PASSWORD" <<'EOSQL'
CREATE ROLE :"bridge_user" LOGIN PASSWORD :'bridge_password';
CREATE DATABASE :"bridge_db" OWNER :"bridge_user" ENCODING 'UTF8';
EOSQL
fi
