#!/bin/sh
# docker/entrypoint.sh - the wabridge container's entry point (docs/docker.md).
#
# With no arguments, like the mautrix bridges' images:
#   1. no config file yet: writes the example (`wabridge -e`), says what to edit, exits 0;
#   2. no registration file yet: generates the tokens into the config and writes the registration
#      (`wabridge -g`), says to install it on the homeserver, exits 0;
#   3. otherwise runs the bridge (`exec wabridge -c CONFIG`: it is PID 1, SIGTERM drains it).
# The WABRIDGE_* environment variables (config.sample.yaml's header) apply to 2 and 3 as to any
# wabridge run.
# With arguments: `-...` runs wabridge with them (`--version`, `--libraries`, `-g -c ...`);
# anything else is run as a command (`sh`).
#
# Paths come from the environment, so tests/docker/test_entrypoint.sh can run this outside a
# container: WB_BIN (/usr/bin/wabridge), WB_DATA (/data), WB_CONFIG (WB_DATA/config.yaml),
# WB_REGISTRATION (WB_DATA/registration.yaml).
set -eu

WB_BIN=${WB_BIN:-/usr/bin/wabridge}
WB_DATA=${WB_DATA:-/data}
WB_CONFIG=${WB_CONFIG:-$WB_DATA/config.yaml}
WB_REGISTRATION=${WB_REGISTRATION:-$WB_DATA/registration.yaml}

if [ $# -gt 0 ]; then
    case $1 in
    -*) exec "$WB_BIN" "$@" ;;
    *) exec "$@" ;;
    esac
fi

say() { printf 'wabridge-docker: %s\n' "$*"; }

# The folder holding a file we are about to write must be writable by this user.
need_writable() {
    dir=$(dirname "$1")
    if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then
        say "cannot write to $dir as uid $(id -u) (gid $(id -g))." >&2
        say "On the host, give the folder mounted there to that user (with" >&2
        say "docker/docker-compose.yml: sudo chown -R $(id -u):$(id -g) docker/data/wabridge)." >&2
        exit 1
    fi
}

# Names (never values: they can hold secrets) of the WABRIDGE_* variables set here.
env_overrides() {
    env | sed -n 's/^\(WABRIDGE_[A-Z0-9_]*\)=.\{1,\}$/\1/p' | sort | tr '\n' ' '
}

if [ ! -f "$WB_CONFIG" ]; then
    need_writable "$WB_CONFIG"
    "$WB_BIN" -e -c "$WB_CONFIG" >/dev/null
    say "no config found: wrote the example config to $WB_CONFIG."
    overrides=$(env_overrides)
    if [ -n "$overrides" ]; then
        say "These options come from the environment and win over the file: $overrides"
    fi
    say "Edit it (at least bridge.permissions, and homeserver.* / database.uri where the"
    say "environment does not set them), then start the container again: it will generate"
    say "the appservice registration."
    exit 0
fi

if [ ! -f "$WB_REGISTRATION" ]; then
    need_writable "$WB_REGISTRATION"
    need_writable "$WB_CONFIG" # -g writes the generated tokens back into the config
    if ! "$WB_BIN" -g -c "$WB_CONFIG" -r "$WB_REGISTRATION" >/dev/null; then
        say "generating the registration failed (the line above names the option): fix" >&2
        say "$WB_CONFIG or the environment, then start the container again." >&2
        exit 1
    fi
    say "wrote the appservice registration to $WB_REGISTRATION (and its tokens into $WB_CONFIG)."
    say "Install it on your homeserver (Synapse: list it under app_service_config_files) and"
    say "restart the homeserver, then start this container again: it will run the bridge."
    exit 0
fi

exec "$WB_BIN" -c "$WB_CONFIG"
