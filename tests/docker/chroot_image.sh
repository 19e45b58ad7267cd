#!/usr/bin/env bash
# tests/docker/chroot_image.sh - builds docker/Dockerfile without a Docker engine, as chroots, and
# runs the image's entry point in the result. Not a ctest test: it needs root, Debian's package
# mirror (mmdebstrap, apt-get) and 10-15 minutes. Run it after changing docker/Dockerfile:
#   sudo tests/docker/chroot_image.sh [WORK_DIR]        (default /tmp/wabridge-chroot-image)
#
# Each FROM debian:12-slim starts from a copy of one `mmdebstrap --variant=minbase bookworm` tree
# (what debian:12-slim is made of, give or take documentation files), and the Dockerfile's own
# lines are carried out in order: RUN through chroot (as USER when one is set), COPY from the
# build context (the repository root, less docker/Dockerfile.dockerignore) or from a stage,
# WORKDIR, USER; ARG defaults are substituted; VOLUME, EXPOSE and ENTRYPOINT are recorded. Any
# other instruction stops the script. Then, in the final stage, as its USER: every library loads
# (ldd, wabridge --libraries), the ENTRYPOINT's first run writes /data/config.yaml, the second
# /data/registration.yaml, the third runs the bridge up to the database (none here), and a /data
# it cannot write is reported.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "chroot_image.sh: run as root (chroot, mount)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "chroot_image.sh: apt-get install mmdebstrap" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../.." && pwd)
dockerfile=$root/docker/Dockerfile
ignore=$root/docker/Dockerfile.dockerignore
work=${1:-/tmp/wabridge-chroot-image}
mkdir -p "$work"
work=$(cd "$work" && pwd)
log=$work/log
mkdir -p "$log"

say() { printf '== %s\n' "$*"; }
die() { printf 'chroot_image.sh: %s\n' "$*" >&2; exit 1; }

mounted=()
cleanup() {
    for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
with_proc() { # with_proc DIR COMMAND...: /proc mounted in DIR while COMMAND runs
    local dir=$1
    shift
    mount -t proc proc "$dir/proc"
    mounted+=("$dir/proc")
    local rc=0
    "$@" || rc=$?
    umount "$dir/proc"
    return $rc
}
# Removes a tree only if nothing is mounted under it.
remove_tree() {
    [ -e "$1" ] || return 0
    if grep -q " $1/" /proc/mounts; then die "something is still mounted under $1"; fi
    rm -rf --one-file-system "$1"
}

base=$work/base
if [ ! -f "$base/.done" ]; then
    say "mmdebstrap --variant=minbase bookworm (debian:12-slim's content)"
    remove_tree "$base"
    mmdebstrap --mode=root --variant=minbase \
        bookworm "$base" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" >"$log/mmdebstrap.log" 2>&1 ||
        { tail -20 "$log/mmdebstrap.log"; die "mmdebstrap failed"; }
    touch "$base/.done"
fi

# The Dockerfile's instructions: continuation lines joined, comments and blank lines dropped.
mapfile -t lines < <(sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$dockerfile" | grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$')

declare -A args stage_dir
stage=""
n=0
workdir=/
user=""
entrypoint=""
subst() { # ${NAME} from ARG defaults
    local s=$1 k
    for k in "${!args[@]}"; do s=${s//\$\{$k\}/${args[$k]}}; done
    echo "$s"
}

# The build context (repository root) less the .dockerignore patterns, as a tar stream.
context_tar() {
    local ex=()
    while IFS= read -r p; do
        p=${p%%#*}
        p=${p%"${p##*[![:space:]]}"}
        [ -n "$p" ] || continue
        case $p in
        '**/'*) ex+=(--no-anchored "--exclude=${p#\*\*/}") ;;
        *) ex+=(--anchored "--exclude=./$p") ;;
        esac
    done <"$ignore"
    tar -C "$root" "${ex[@]}" -cf - .
}

for line in "${lines[@]}"; do
    instr=${line%% *}
    rest=${line#* }
    case ${instr^^} in
    ARG)
        k=${rest%%=*}
        args[$k]=${rest#*=}
        ;;
    FROM)
        read -r image _ name <<<"$(subst "$rest")"
        [ "$image" = "debian:12-slim" ] || die "FROM $image: only debian:12-slim is emulated"
        n=$((n + 1))
        stage=$work/stage$n
        say "FROM $image${name:+ AS $name} -> $stage"
        remove_tree "$stage"
        cp -a "$base" "$stage"
        cp /etc/resolv.conf "$stage/etc/resolv.conf"
        [ -n "${name:-}" ] && stage_dir[$name]=$stage
        workdir=/
        user=""
        ;;
    RUN)
        say "RUN ${rest:0:100}..."
        spec=()
        [ -n "$user" ] && spec=(--userspec="$user")
        with_proc "$stage" chroot "${spec[@]}" "$stage" /usr/bin/env -i \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            /bin/sh -c "cd '$workdir' && $rest" >"$log/stage$n-run.log" 2>&1 ||
            { tail -30 "$log/stage$n-run.log"; die "RUN failed (log: $log/stage$n-run.log)"; }
        ;;
    COPY)
        from=""
        if [[ $rest == --from=* ]]; then
            from=${rest%% *}
            from=${from#--from=}
            rest=${rest#* }
        fi
        read -r src dest <<<"$rest"
        case $dest in /*) ;; *) dest=$workdir/$dest ;; esac
        say "COPY ${from:+--from=$from }$src $dest"
        if [ -n "$from" ]; then
            [ -n "${stage_dir[$from]:-}" ] || die "COPY --from=$from: no such stage"
            mkdir -p "$(dirname "$stage$dest")"
            cp -a "${stage_dir[$from]}$src" "$stage$dest"
        elif [ "$src" = . ]; then
            mkdir -p "$stage$dest"
            context_tar | tar -C "$stage$dest" -xf -
        else
            mkdir -p "$(dirname "$stage$dest")"
            cp -a "$root/$src" "$stage$dest"
        fi
        ;;
    WORKDIR)
        workdir=$rest
        mkdir -p "$stage$workdir"
        ;;
    USER) user=$rest ;;
    VOLUME | EXPOSE) say "$instr $rest (recorded)" ;;
    ENTRYPOINT) # the exec form with one element: ["/path"]
        entrypoint=$(echo "$rest" | sed -n 's/^\["\([^",]*\)"\]$/\1/p')
        [ -n "$entrypoint" ] || die "ENTRYPOINT $rest: only [\"/one/path\"] is emulated"
        ;;
    *) die "instruction not emulated: $instr" ;;
    esac
done

final=$stage
say "the image: $final ($(du -sh --exclude=proc "$final" | cut -f1)), USER ${user:-root}, ENTRYPOINT $entrypoint"
if [ -z "$user" ] || [ -z "$entrypoint" ]; then die "the final stage has no USER or no ENTRYPOINT"; fi

# run [ENV=VALUE...] -- COMMAND...: in the final stage as USER, cwd WORKDIR, a container's env.
run() {
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    with_proc "$final" chroot --userspec="$user" "$final" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="$workdir" \
        "${envs[@]}" /bin/sh -c "cd '$workdir' && exec \"\$@\"" sh "$@"
}

passed=0
failed=0
check() {
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1)); echo "ok: $what"
    else
        failed=$((failed + 1)); echo "FAIL: $what"
    fi
}
grep_out() { grep -q -- "$1" "$log/out"; }

run -- ldd /usr/bin/wabridge >"$log/out" 2>&1 || true
check "ldd: every library found" sh -c "! grep -q 'not found' '$log/out'"
run -- "$entrypoint" --libraries >"$log/out" 2>&1
check "wabridge --libraries through the entrypoint" grep_out "libwebsockets"
check "CA certificates present" test -s "$final/etc/ssl/certs/ca-certificates.crt"
check "no compiler in the runtime image" test ! -e "$final/usr/bin/gcc"

rm -f "$final/data/config.yaml" "$final/data/registration.yaml"
run -- "$entrypoint" >"$log/out" 2>&1 && rc=0 || rc=$?
cat "$log/out"
check "1st run: exit 0, /data/config.yaml written" test "$rc" = 0 -a -f "$final/data/config.yaml"
check "... owned by the image's user" test "$(chroot "$final" stat -c %U:%G /data/config.yaml)" = "$user"
run WABRIDGE_APPSERVICE_HOSTNAME=0.0.0.0 WABRIDGE_APPSERVICE_ADDRESS=http://wabridge:29318 -- \
    "$entrypoint" >"$log/out" 2>&1 && rc=0 || rc=$?
cat "$log/out"
check "2nd run: exit 0, /data/registration.yaml written" test "$rc" = 0 -a -f "$final/data/registration.yaml"
run "WABRIDGE_DATABASE_URI=host=127.0.0.1 port=1 user=x dbname=x" -- "$entrypoint" >"$log/out" 2>&1 && rc=0 || rc=$?
cat "$log/out"
check "3rd run: the bridge runs, stops at the database (exit 1)" test "$rc" = 1
check "... with one clear line" grep_out "database: cannot connect"

chown root:root "$final/data"
chmod 0755 "$final/data"
rm -f "$final/data/config.yaml" "$final/data/registration.yaml"
run -- "$entrypoint" >"$log/out" 2>&1 && rc=0 || rc=$?
cat "$log/out"
check "a /data the user cannot write: exit 1 with the chown to do" test "$rc" = 1
check "... naming uid 1337" grep_out "chown -R 1337:1337"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
