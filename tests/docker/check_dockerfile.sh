#!/usr/bin/env bash
# tests/docker/check_dockerfile.sh - what can be checked of docker/ without a Docker engine.
#
# usage: check_dockerfile.sh [WABRIDGE]    the checks below (WABRIDGE: a built binary)
#        check_dockerfile.sh compose       `docker compose config` (or docker-compose v1) on
#                                          docker/docker-compose.yml; exit 77 (skipped) without one
#
#  - the build stage's packages are scripts/bootstrap's, less those that only the tests, fuzzers
#    and style need (NOT_FOR_BUILD below), and nothing else;
#  - every package named in the Dockerfile exists in Debian 12 (apt-cache, on a Debian 12 host);
#  - with WABRIDGE: the runtime stage installs exactly the packages of the libraries the binary
#    is linked with (readelf -d NEEDED -> dpkg -S), plus ca-certificates;
#  - every WABRIDGE_* variable in docker-compose.yml is an option of config.sample.yaml;
#  - the files the Dockerfile and docker-compose.yml use exist; the shell scripts parse (sh -n,
#    and shellcheck where installed).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
dockerfile=$root/docker/Dockerfile
compose=$root/docker/docker-compose.yml
bootstrap=$root/scripts/bootstrap

# scripts/bootstrap packages that building the daemon does not need, with the reason.
NOT_FOR_BUILD="git ca-certificates clang libclang-rt-14-dev clang-format postgresql nodejs"
# Runtime packages that no NEEDED entry names.
RUNTIME_EXTRA="ca-certificates" # TLS: wss://web.whatsapp.com, https:// homeservers
# In every Debian image already (Priority: required); wabridge links libc.so.6.
RUNTIME_BASE="libc6"

if [ "${1:-}" = compose ]; then
    export MATRIX_DOMAIN=example.org SYNAPSE_DB_PASSWORD=check BRIDGE_DB_PASSWORD=check
    if docker compose version >/dev/null 2>&1; then
        run=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        run=(docker-compose)
    else
        echo "skipped: neither the docker compose plugin nor docker-compose is installed"
        exit 77
    fi
    echo "${run[*]} -f docker/docker-compose.yml config"
    if ! out=$("${run[@]}" -f "$compose" config 2>&1); then
        echo "$out"
        echo "0 passed, 1 failed"
        exit 1
    fi
    # compose refuses to interpolate an empty required variable
    if MATRIX_DOMAIN='' "${run[@]}" -f "$compose" config >/dev/null 2>&1; then
        echo "an empty MATRIX_DOMAIN was accepted"
        echo "1 passed, 1 failed"
        exit 1
    fi
    echo "2 passed, 0 failed"
    exit 0
fi

wabridge=${1:-}
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
# words of $1 not in $2 (both space-separated lists)
minus() {
    local w out=""
    for w in $1; do
        case " $2 " in *" $w "*) ;; *) out="$out $w" ;; esac
    done
    echo "${out# }"
}
same_set() { [ -z "$(minus "$1" "$2")" ] && [ -z "$(minus "$2" "$1")" ]; }

# The packages of each stage's `apt-get install` (continuation lines joined; options dropped).
stage_packages() { # stage_packages build|runtime
    sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' "$dockerfile" | awk -v want="$1" '
        /^FROM / { stage = ($0 ~ / AS build *$/) ? "build" : "runtime" }
        stage == want && /apt-get install/ {
            split($0, a, "apt-get install"); split(a[2], b, "&&"); n = split(b[1], w, /[ \t]+/)
            for (i = 1; i <= n; i++) if (w[i] != "" && w[i] !~ /^-/) printf "%s ", w[i]
        }' | sed 's/ $//'
}
build_pkgs=$(stage_packages build)
runtime_pkgs=$(stage_packages runtime)
echo "build stage:   $build_pkgs"
echo "runtime stage: $runtime_pkgs"
if [ -n "$build_pkgs" ] && [ -n "$runtime_pkgs" ]; then
    ok "both stages install packages"
else
    bad "could not read the package lists of $dockerfile"
fi

# scripts/bootstrap's PACKAGES=( ... ), comments dropped.
boot_pkgs=$(sed -n '/^PACKAGES=(/,/^)/p' "$bootstrap" | sed -e '1d' -e '$d' -e 's/#.*//' | tr -s ' \n' '  ' |
    sed 's/^ //; s/ $//')
want_build=$(minus "$boot_pkgs" "$NOT_FOR_BUILD")
if same_set "$want_build" "$build_pkgs"; then
    ok "build stage = scripts/bootstrap less: $NOT_FOR_BUILD"
else
    bad "build stage vs scripts/bootstrap: missing [$(minus "$want_build" "$build_pkgs")]," \
        "not in bootstrap [$(minus "$build_pkgs" "$want_build")] (or update NOT_FOR_BUILD here)"
fi

# Debian 12 has every package (apt-cache reads this host's lists: it must be Debian 12). One call:
# without a saved package cache each apt-cache run takes seconds.
# shellcheck disable=SC1091
. /etc/os-release 2>/dev/null || true
if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
    echo "skipped: package existence (this host is not Debian 12)"
else
    # shellcheck disable=SC2086
    known=$(apt-cache show --no-all-versions libc6 $build_pkgs $runtime_pkgs 2>/dev/null |
        sed -n 's/^Package: //p' | sort -u | tr '\n' ' ')
    if [ -z "$(minus libc6 "$known")" ]; then
        missing=$(minus "$build_pkgs $runtime_pkgs" "$known")
        if [ -z "$missing" ]; then
            ok "Debian 12 has all $(echo "$build_pkgs $runtime_pkgs" | wc -w) packages"
        else
            bad "not in Debian 12: $missing"
        fi
    else
        echo "skipped: package existence (no apt lists here: apt-get update)"
    fi
fi

# The runtime stage = the packages of the binary's NEEDED libraries (+ RUNTIME_EXTRA).
if [ -z "$wabridge" ]; then
    echo "skipped: runtime libraries (no WABRIDGE binary given)"
elif ! command -v readelf >/dev/null || ! command -v dpkg >/dev/null; then
    echo "skipped: runtime libraries (needs readelf and dpkg)"
elif readelf -d "$wabridge" | grep -q 'NEEDED.*\[lib[a-z]*san\.so'; then
    # -fsanitize builds link without --as-needed's effect (libmbedtls, libmbedx509, libcap...)
    echo "skipped: runtime libraries ($wabridge is a sanitizer build; the plain build is checked)"
else
    # NEEDED soname -> its path (ldd) -> the package owning that path, its target (readlink -f)
    # or either one's /lib <-> /usr/lib twin (merged /usr: dpkg knows each file under one of
    # them). One dpkg -S for all: each call takes most of a second.
    resolved=$(ldd "$wabridge")
    needed=""
    paths=""
    for so in $(readelf -d "$wabridge" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        needed="$needed $so"
        path=$(echo "$resolved" | awk -v s="$so" '$1 == s && $2 == "=>" { print $3; exit }')
        [ -n "$path" ] || continue
        for p in "$path" "$(readlink -f "$path")"; do
            paths="$paths $p"
            case $p in /usr/lib/*) paths="$paths ${p#/usr}" ;; /lib/*) paths="$paths /usr$p" ;; esac
        done
    done
    # shellcheck disable=SC2086
    owners=$(dpkg -S $paths 2>/dev/null)
    needed_pkgs=""
    unknown=""
    for so in $needed; do
        pkg=$(echo "$owners" | awk -v s="$so" '{ n = split($NF, a, "/") } a[n] == s || index(a[n], s ".") == 1 {
            sub(/:.*/, "", $1); print $1; exit }')
        if [ -z "$pkg" ]; then unknown="$unknown $so"; else needed_pkgs="$needed_pkgs $pkg"; fi
        echo "  $so -> ${pkg:-?}"
    done
    needed_pkgs=$(minus "$(echo "$needed_pkgs" | tr ' ' '\n' | sort -u | tr '\n' ' ')" "$RUNTIME_BASE")
    if [ -z "$needed_pkgs" ]; then
        bad "no NEEDED libraries found in $wabridge (not a dynamically linked binary?)"
    elif [ -n "$unknown" ]; then
        bad "no Debian package found for:$unknown"
    elif same_set "$needed_pkgs $RUNTIME_EXTRA" "$runtime_pkgs"; then
        ok "runtime stage = the packages of wabridge's NEEDED libraries + $RUNTIME_EXTRA"
    else
        bad "runtime stage vs NEEDED: missing [$(minus "$needed_pkgs $RUNTIME_EXTRA" "$runtime_pkgs")]," \
            "not needed [$(minus "$runtime_pkgs" "$needed_pkgs $RUNTIME_EXTRA")]"
    fi
fi

# WABRIDGE_* in docker-compose.yml: each an option of config.sample.yaml (WABRIDGE_ + the dotted
# path in capitals, '.' -> '_'). The bridge ignores an unknown section's variables: a typo there
# would be silent.
options=$(awk '
    /^[ \t]*#/ || !/^ *[a-z_]+:/ { next }
    {
        match($0, /^ */); depth = RLENGTH / 2
        key = $0; sub(/^ */, "", key); sub(/:.*/, "", key)
        path[depth] = key; name = path[0]
        for (i = 1; i <= depth; i++) name = name "_" path[i]
        print "WABRIDGE_" toupper(name)
    }' "$root/config.sample.yaml" | tr '\n' ' ')
used=$(grep -o '^ *WABRIDGE_[A-Z0-9_]*:' "$compose" | sed 's/[ :]//g' | sort -u | tr '\n' ' ')
wrong=$(minus "$used" "$options")
if [ -n "$used" ] && [ -z "$wrong" ]; then
    ok "docker-compose.yml's $(echo "$used" | wc -w) WABRIDGE_* variables are options"
else
    bad "docker-compose.yml: not options of config.sample.yaml: ${wrong:-(none found)}"
fi

# Files used by the Dockerfile and docker-compose.yml; scripts executable and parsing.
for f in docker/entrypoint.sh docker/postgres-init.sh; do
    if [ -x "$root/$f" ] && sh -n "$root/$f"; then ok "$f: executable, sh -n"; else bad "$f: not executable or sh -n fails"; fi
done
# COPY from the context (not --from=build), the context being the repository root
grep '^COPY ' "$dockerfile" | grep -v -e '--from=' | awk '$2 != "." { print $2 }' >"${TMPDIR:-/tmp}/wb-copy.$$"
sed -n 's/^ *- \.\/\([^:]*\):.*/docker\/\1/p' "$compose" | grep -v '^docker/data/' >>"${TMPDIR:-/tmp}/wb-copy.$$"
while IFS= read -r f; do
    if [ -e "$root/$f" ]; then ok "$f (used by docker/) exists"; else bad "$f (used by docker/): no such file"; fi
done <"${TMPDIR:-/tmp}/wb-copy.$$"
rm -f "${TMPDIR:-/tmp}/wb-copy.$$"
if command -v shellcheck >/dev/null; then
    if shellcheck "$root/docker/entrypoint.sh" "$root/docker/postgres-init.sh"; then
        ok "shellcheck docker/*.sh"
    else
        bad "shellcheck docker/*.sh"
    fi
else
    echo "skipped: shellcheck (not installed)"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
