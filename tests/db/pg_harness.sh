#!/bin/sh
# tests/db/pg_harness.sh - a private PostgreSQL server for the tests: start, stop, restart.
#
# usage: pg_harness.sh start|stop|restart|status STATE_DIR
#   start:   initdb into a fresh /tmp/wabridge-pg.XXXXXX (short path: Unix socket names are limited
#            to 107 bytes), then run the server listening ONLY on a Unix socket in that folder (no
#            TCP), as the `postgres` system user when we are root (CI runs as root; PostgreSQL
#            refuses to), else as ourselves. Writes STATE_DIR/conninfo ("host=... port=...
#            user=wabridge", no dbname: tests add their own database) and STATE_DIR/dir.
#   stop:    stops the server and deletes the folder.
#   restart: pg_ctl restart (fast shutdown), used by the fault tests.
# Binaries: Debian's /usr/lib/postgresql/<newest>/bin, or $WABRIDGE_PG_BIN (apt-get install
# postgresql provides them).
set -eu

cmd=${1:?usage: pg_harness.sh start|stop|restart|status STATE_DIR}
state=${2:?usage: pg_harness.sh start|stop|restart|status STATE_DIR}
port=${WABRIDGE_PG_PORT:-5432}

if [ -n "${WABRIDGE_PG_BIN:-}" ]; then
    bin=$WABRIDGE_PG_BIN
else
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "pg_harness: PostgreSQL server binaries not found: apt-get install postgresql" >&2
    exit 1
fi

# Runs a command as the server's user, from a folder that user can read.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "pg_harness: running as root needs the 'postgres' user (apt-get install postgresql)" >&2
            exit 1
        fi
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

server_opts() {
    echo "-c listen_addresses='' -k $1 -p $port -c unix_socket_permissions=0777 -c max_connections=60 -c shared_buffers=64MB"
}

case "$cmd" in
start)
    mkdir -p "$state"
    if [ -f "$state/dir" ]; then
        "$0" stop "$state" || true
    fi
    dir=$(mktemp -d /tmp/wabridge-pg.XXXXXX)
    chmod 755 "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
    echo "$dir" >"$state/dir"
    if ! as_pg "$bin/initdb" -D "$dir/data" -U wabridge -A trust -E UTF8 --no-locale --no-sync \
        >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        exit 1
    fi
    if ! as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$(server_opts "$dir")" \
        start >/dev/null; then
        cat "$dir/server.log" >&2
        exit 1
    fi
    echo "host=$dir port=$port user=wabridge" >"$state/conninfo"
    echo "pg_harness: PostgreSQL running, socket in $dir"
    ;;
stop)
    if [ ! -f "$state/dir" ]; then exit 0; fi
    dir=$(cat "$state/dir")
    if [ -d "$dir/data" ]; then
        as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    case "$dir" in /tmp/wabridge-pg.*) rm -rf "$dir" ;; esac
    rm -f "$state/dir" "$state/conninfo"
    echo "pg_harness: PostgreSQL stopped"
    ;;
restart)
    dir=$(cat "$state/dir")
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -m fast -w -t 60 -o "$(server_opts "$dir")" \
        restart >/dev/null
    ;;
status)
    dir=$(cat "$state/dir")
    as_pg "$bin/pg_ctl" -D "$dir/data" status
    ;;
*)
    echo "pg_harness: unknown command $cmd" >&2
    exit 2
    ;;
esac
