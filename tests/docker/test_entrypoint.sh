#!/usr/bin/env bash
# tests/docker/test_entrypoint.sh - docker/entrypoint.sh run outside a container, against the real
# binary, with its paths taken from the environment (WB_BIN, WB_DATA). No Docker engine needed.
#
# usage: test_entrypoint.sh WABRIDGE [HS_SIM]
#   A. the first-run flow: 1st run writes the example config (exit 0), 2nd the registration
#      (exit 0), 3rd runs the bridge (here it stops at the database: exit 1, one clear line);
#      arguments pass through; an unwritable data folder and a bad config are reported.
#   B. the same with the environment of docker/docker-compose.yml's wabridge service: every
#      WABRIDGE_* there is accepted, and the registration points Synapse at http://wabridge:29318.
#   C. (with HS_SIM and the PostgreSQL fixture of tests/db, WABRIDGE_TEST_PG_STATE) the whole
#      start: docker/postgres-init.sh creates the bridge's role and database, the registration
#      is installed on hs-sim (as on Synapse), the entrypoint's third run starts the bridge as
#      that role (migrations as a database owner that is no superuser), SIGTERM stops it with 0.
set -uo pipefail

wabridge=${1:?usage: test_entrypoint.sh WABRIDGE [HS_SIM]}
hs_sim=${2:-}
root=$(cd "$(dirname "$0")/../.." && pwd)
entry=$root/docker/entrypoint.sh
compose=$root/docker/docker-compose.yml
pg_init=$root/docker/postgres-init.sh

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
bad() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

tmp=$(mktemp -d /tmp/wb-docker-test.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# Our own WABRIDGE_* variables only: nothing from the caller's environment.
for v in $(env | sed -n 's/^\(WABRIDGE_[A-Z0-9_]*\)=.*/\1/p'); do
    case $v in WABRIDGE_TEST_*) ;; *) unset "$v" ;; esac
done

# run_entry DIR OUT [ARGS...]: the entrypoint with WB_DATA=DIR; stdout+stderr to OUT; sets rc.
run_entry() {
    local dir=$1 out=$2
    shift 2
    WB_BIN=$wabridge WB_DATA=$dir sh "$entry" "$@" >"$out" 2>&1
    rc=$?
}
file_mode_is() { [ -f "$1" ] && [ "$(stat -c %a "$1")" = "$2" ]; }
lacks() { ! grep -qF -- "$1" "$2"; } # lacks TEXT FILE

echo "== A. first-run flow"
a=$tmp/a
mkdir -p "$a"
run_entry "$a" "$tmp/a1.out"
cat "$tmp/a1.out"
check "1st run exits 0" [ "$rc" = 0 ]
check "1st run wrote config.yaml (0600)" file_mode_is "$a/config.yaml" 600
check "1st run wrote the example (config.sample.yaml)" cmp -s "$a/config.yaml" "$root/config.sample.yaml"
check "1st run wrote no registration" [ ! -e "$a/registration.yaml" ]
check "1st run says to edit it" grep -q "Edit it" "$tmp/a1.out"

run_entry "$a" "$tmp/a2.out"
cat "$tmp/a2.out"
check "2nd run exits 0" [ "$rc" = 0 ]
check "2nd run wrote registration.yaml (0600)" file_mode_is "$a/registration.yaml" 600
check "2nd run generated the tokens into config.yaml" lacks "token: generate" "$a/config.yaml"
check "2nd run says where the registration goes" grep -q "app_service_config_files" "$tmp/a2.out"
as_token=$(sed -n "s/^as_token: '\(.*\)'$/\1/p" "$a/registration.yaml")
check "registration as_token is the config's" grep -qF "as_token: \"$as_token\"" "$a/config.yaml"

cp "$a/registration.yaml" "$tmp/reg.before"
WABRIDGE_DATABASE_URI="host=127.0.0.1 port=1 dbname=wabridge user=wabridge connect_timeout=5" \
    run_entry "$a" "$tmp/a3.out"
cat "$tmp/a3.out"
check "3rd run runs the bridge: no database -> exit 1" [ "$rc" = 1 ]
check "3rd run: one clear line about the database" grep -q "database: cannot connect (database.uri)" "$tmp/a3.out"
check "3rd run left the registration alone" cmp -s "$a/registration.yaml" "$tmp/reg.before"

run_entry "$a" "$tmp/a4.out" --version
check "arguments starting with - go to wabridge" grep -q "^wabridge " "$tmp/a4.out"
run_entry "$a" "$tmp/a5.out" sh -c 'echo other-command'
check "other arguments run as a command" grep -q "^other-command$" "$tmp/a5.out"

run_entry "$tmp/no/such/folder" "$tmp/a6.out"
cat "$tmp/a6.out"
check "a data folder it cannot write: exit 1" [ "$rc" = 1 ]
check "... with the chown to do" grep -q "chown" "$tmp/a6.out"

rm "$a/registration.yaml"
WABRIDGE_APPSERVICE_PORT=abc run_entry "$a" "$tmp/a7.out"
cat "$tmp/a7.out"
check "a bad option at the 2nd step: exit 1" [ "$rc" = 1 ]
check "... naming the variable" grep -q "WABRIDGE_APPSERVICE_PORT" "$tmp/a7.out"
check "... and no registration written" [ ! -e "$a/registration.yaml" ]

echo "== B. the environment of docker/docker-compose.yml"
# The wabridge service's WABRIDGE_* lines, ${MATRIX_DOMAIN...} replaced by a test domain.
awk '
    /^  [A-Za-z0-9_-]+:/ { svc = $1 }
    svc == "wabridge:" && /^ +WABRIDGE_[A-Z0-9_]+:/ {
        line = $0
        sub(/^ +/, "", line)
        name = line; sub(/:.*/, "", name)
        value = line; sub(/^[^:]*: */, "", value); sub(/ +#.*$/, "", value)
        if (value ~ /^".*"$/ || value ~ /^'\''.*'\''$/) value = substr(value, 2, length(value) - 2)
        print name "=" value
    }' "$compose" |
    sed 's/[$]{MATRIX_DOMAIN[^}]*}/example.test/g' >"$tmp/compose.env"
cat "$tmp/compose.env"
check "compose sets the bridge's addresses and database" \
    grep -q "^WABRIDGE_DATABASE_URI=" "$tmp/compose.env"
check "compose env: nothing left to interpolate" lacks '$' "$tmp/compose.env"
compose_env=()
while IFS= read -r line; do compose_env+=("$line"); done <"$tmp/compose.env"

b=$tmp/b
mkdir -p "$b"
env "${compose_env[@]}" WB_BIN="$wabridge" WB_DATA="$b" sh "$entry" >"$tmp/b1.out" 2>&1
rc=$?
cat "$tmp/b1.out"
check "compose env, 1st run exits 0" [ "$rc" = 0 ]
check "compose env, 1st run names the overrides" grep -q "WABRIDGE_HOMESERVER_ADDRESS" "$tmp/b1.out"
check "compose env, 1st run shows no value" lacks "synapse:8008" "$tmp/b1.out"
env "${compose_env[@]}" WB_BIN="$wabridge" WB_DATA="$b" sh "$entry" >"$tmp/b2.out" 2>&1
rc=$?
cat "$tmp/b2.out"
check "compose env accepted: 2nd run exits 0" [ "$rc" = 0 ]
check "registration url is the wabridge service" grep -q "^url: 'http://wabridge:29318'$" "$b/registration.yaml"
check "registration namespace is MATRIX_DOMAIN's" grep -qF 'whatsapp_.+:example\.test' "$b/registration.yaml"

echo "== C. the whole start (postgres-init.sh, hs-sim, PostgreSQL)"
state=${WABRIDGE_TEST_PG_STATE:-}
if [ -z "$hs_sim" ] || [ -z "$state" ] || [ ! -f "$state/conninfo" ]; then
    echo "skipped: needs HS_SIM and the PostgreSQL fixture (WABRIDGE_TEST_PG_STATE)"
else
    base=$(cat "$state/conninfo") # host=DIR port=N user=wabridge (a superuser, trust)
    pg_host=$(echo "$base" | sed -n 's/.*host=\([^ ]*\).*/\1/p')
    pg_port=$(echo "$base" | sed -n 's/.*port=\([^ ]*\).*/\1/p')
    role=wb_docker_role
    db=wb_docker_db
    psql "$base dbname=postgres" -qc "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
    # As the postgres image runs it: POSTGRES_USER/POSTGRES_DB, on the server's socket.
    PGHOST=$pg_host PGPORT=$pg_port POSTGRES_USER=wabridge POSTGRES_DB=postgres \
        BRIDGE_DB_USER=$role BRIDGE_DB_NAME=$db BRIDGE_DB_PASSWORD="it's a \"quoted\" pass" \
        sh "$pg_init" >"$tmp/c0.out" 2>&1
    rc=$?
    cat "$tmp/c0.out"
    check "postgres-init.sh succeeds" [ "$rc" = 0 ]
    owner=$(psql "$base dbname=postgres" -tAc "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '$db'")
    check "postgres-init.sh: the database belongs to the role" [ "$owner" = "$role" ]
    super=$(psql "$base dbname=postgres" -tAc "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'")
    check "postgres-init.sh: the role is no superuser" [ "$super" = f ]
    BRIDGE_DB_PASSWORD='' PGHOST=$pg_host PGPORT=$pg_port POSTGRES_USER=wabridge POSTGRES_DB=postgres \
        sh "$pg_init" >/dev/null 2>&1
    check "postgres-init.sh without BRIDGE_DB_PASSWORD fails" [ $? != 0 ]

    # A free port for the appservice endpoint (the registration needs it before hs-sim starts).
    as_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    c=$tmp/c
    mkdir -p "$c"
    # compose's environment, with the addresses of this machine instead of the compose network
    # (and the endpoint on 127.0.0.1 only).
    local_env=("${compose_env[@]}"
        "WABRIDGE_APPSERVICE_ADDRESS=http://127.0.0.1:$as_port"
        "WABRIDGE_APPSERVICE_HOSTNAME=127.0.0.1"
        "WABRIDGE_APPSERVICE_PORT=$as_port"
        "WABRIDGE_DATABASE_URI=host=$pg_host port=$pg_port user=$role dbname=$db"
        "WABRIDGE_WORKERS_ENGINE=1" "WABRIDGE_WORKERS_PORTAL=2"
        "PGPASSWORD=unused (trust)")
    env "${local_env[@]}" WB_BIN="$wabridge" WB_DATA="$c" sh "$entry" >/dev/null 2>&1
    env "${local_env[@]}" WB_BIN="$wabridge" WB_DATA="$c" sh "$entry" >"$tmp/c2.out" 2>&1
    check "registration generated for the local run" [ -f "$c/registration.yaml" ]

    "$hs_sim" 0 example.test "$c/registration.yaml" >"$tmp/hs.out" 2>"$tmp/hs.err" &
    pids+=($!)
    hs_port=""
    for _ in $(seq 1 100); do
        hs_port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$tmp/hs.out")
        [ -n "$hs_port" ] && break
        sleep 0.1
    done
    check "hs-sim started with the registration" [ -n "$hs_port" ]

    env "${local_env[@]}" "WABRIDGE_HOMESERVER_ADDRESS=http://127.0.0.1:$hs_port" \
        WB_BIN="$wabridge" WB_DATA="$c" sh "$entry" >"$tmp/c3.out" 2>&1 &
    bridge=$!
    pids+=("$bridge")
    running=no
    for _ in $(seq 1 300); do
        if grep -q "running (bridge bot @whatsappbot:example.test)" "$tmp/c3.out"; then
            running=yes
            break
        fi
        kill -0 "$bridge" 2>/dev/null || break
        sleep 0.1
    done
    check "3rd run starts the bridge" [ "$running" = yes ]
    tables=$(psql "$base dbname=$db" -tAc \
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = '$role'")
    check "the bridge migrated its database as the role ($tables tables)" [ "${tables:-0}" -ge 10 ]
    kill -TERM "$bridge" 2>/dev/null
    wait "$bridge"
    rc=$?
    cat "$tmp/c3.out"
    check "SIGTERM stops it with exit 0" [ "$rc" = 0 ]
    check "hs-sim reached the bridge at the registration's url (ping)" lacks "could not ping us" "$tmp/c3.out"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    pids=()
    psql "$base dbname=postgres" -qc "DROP DATABASE IF EXISTS $db" -c "DROP ROLE IF EXISTS $role" >/dev/null 2>&1
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
