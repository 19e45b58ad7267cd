#!/bin/sh
# tests/db/migrate_cli.sh - `wabridge --migrate` against the test server: a fresh database is
# migrated to the newest version, a second run changes nothing, a bad connection string fails.
set -eu
wabridge=$1
base=$(cat "$WABRIDGE_TEST_PG_STATE/conninfo")
db=wb_migrate_cli
psql "$base dbname=postgres" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
first=$("$wabridge" --migrate "$base dbname=$db")
echo "$first"
echo "$first" | grep -q "migrated from version 0 to"
second=$("$wabridge" --migrate "$base dbname=$db")
echo "$second"
echo "$second" | grep -q "up to date"
if "$wabridge" --migrate "$base dbname=no_such_database" 2>/dev/null; then
    echo "a missing database was accepted"; exit 1
fi
tables=$(psql "$base dbname=$db" -tAc "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
echo "tables: $tables"
[ "$tables" -ge 20 ]
echo "1 passed, 0 failed"
