#!/usr/bin/env bash
# Find or build a CPython for interpool.
#
#   scripts/python.sh TAG      prints the path of a python executable for TAG
#
# TAG is one of 3.14, 3.13, 3.14t (free-threaded), 3.12 or "any" (>= 3.12, for the demo).
# Lookup order: $PYTHON (for "any" only), pythonX.Y on PATH, the build cache, a pyenv install
# (3.12 only: no 3.12 source is on the mirror), and finally a source build of the pinned
# release (see docs/toolchain.md):
# the tarball comes from the Debian mirror apt is configured with, is checked against a
# pinned sha256, and is built into $INTERPOOL_CACHE/cpython/<version> (default
# ~/.cache/interpool), outside the repository, and reused on later runs.
set -euo pipefail

CACHE="${INTERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interpool}"
tag="${1:?usage: scripts/python.sh 3.14|3.13|3.14t|3.12|any}"
# Exit status 3: no such Python on this machine and none can be built (3.12 without pyenv).

log() { echo "[python.sh] $*" >&2; }

pinned() { # tag -> "version sha256 configure-flags"
    case "$1" in
        3.14)  echo "3.14.7 3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81" ;;
        3.14t) echo "3.14.7 3b48dac8fb59f62eaa67ac83c1eb12bda1b7a08406dd286e252c11a66be27f81 --disable-gil" ;;
        3.13)  echo "3.13.15 1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76" ;;
        3.12)  echo "" ;;  # not buildable here: found on PATH or in pyenv, or skipped
        *) log "unknown tag '$1' (expected 3.14, 3.13, 3.14t or 3.12)"; exit 2 ;;
    esac
}

# Does $1 run and match the tag (version and GIL mode)?
matches() {
    local exe="$1" want="$2"
    "$exe" - "$want" <<'PY' 2>/dev/null
import sys, sysconfig
want = sys.argv[1]
ft = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
ver = "%d.%d" % sys.version_info[:2]
if want == "any":
    ok = sys.version_info >= (3, 12) and not ft
else:
    ok = ver == want.rstrip("t") and ft == want.endswith("t")
sys.exit(0 if ok else 1)
PY
}

find_existing() {
    local t="$1" cand
    if [ "$t" = any ]; then
        if [ -n "${PYTHON:-}" ]; then
            if matches "$PYTHON" any; then echo "$PYTHON"; return 0; fi
            log "PYTHON=$PYTHON is not a CPython >= 3.12 with the GIL"; exit 2
        fi
        for cand in python3.14 python3.13 python3.12; do
            if command -v "$cand" >/dev/null && matches "$(command -v "$cand")" any; then
                command -v "$cand"; return 0
            fi
        done
        t=3.14
    fi
    local exe="python${t}"
    if command -v "$exe" >/dev/null && matches "$(command -v "$exe")" "$t"; then
        command -v "$exe"; return 0
    fi
    read -r version _ flags <<<"$(pinned "$t")"
    if [ -z "$version" ]; then  # no pinned build: a pyenv install of that minor version
        local root
        root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
        for cand in $(ls -d "$root"/versions/"${t}".* 2>/dev/null | sort -V -r); do
            if matches "$cand/bin/python${t}" "$t"; then echo "$cand/bin/python${t}"; return 0; fi
        done
        return 1
    fi
    local prefix="$CACHE/cpython/${version}${flags:+t}"
    exe="$prefix/bin/python${t}"
    if [ -f "$prefix/.interpool-complete" ] && matches "$exe" "$t"; then echo "$exe"; return 0; fi
    return 1
}

mirror() {
    local src=/etc/apt/sources.list.d/debian.sources uri=""
    if [ -f "$src" ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' "$src")
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)
    fi
    [ -n "$uri" ] || { log "cannot find the Debian mirror in /etc/apt; set PYTHON= to a CPython >= 3.12"; exit 2; }
    echo "${uri%/}"
}

build() {
    local t="$1"
    read -r version sha flags <<<"$(pinned "$t")"
    local minor="${version%.*}"
    local prefix="$CACHE/cpython/${version}${flags:+t}"
    local tarball="$CACHE/downloads/python${minor}_${version}.orig.tar.xz"
    mkdir -p "$CACHE/downloads" "$CACHE/cpython"
    if [ ! -f "$tarball" ] || ! echo "$sha  $tarball" | sha256sum -c --status; then
        local url
        url="$(mirror)/pool/main/p/python${minor}/python${minor}_${version}.orig.tar.xz"
        log "downloading $url"
        curl -fsSL --retry 3 -o "$tarball.part" "$url"
        if ! echo "$sha  $tarball.part" | sha256sum -c --status; then
            rm -f "$tarball.part"; log "sha256 mismatch for $url"; exit 1
        fi
        mv "$tarball.part" "$tarball"
    fi
    local work
    work=$(mktemp -d "$CACHE/build.XXXXXX")
    trap 'rm -rf "$work"' RETURN
    log "building CPython $version ${flags} into $prefix (about 3 minutes; cached afterwards)"
    rm -rf "$prefix"
    tar -xJf "$tarball" -C "$work"
    (
        cd "$work/Python-$version"
        # shellcheck disable=SC2086
        ./configure --prefix="$prefix" $flags >"$work/configure.log" 2>&1 \
            || { tail -30 "$work/configure.log" >&2; exit 1; }
        make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -40 "$work/make.log" >&2; exit 1; }
        make install >"$work/install.log" 2>&1 || { tail -40 "$work/install.log" >&2; exit 1; }
    )
    # Only a finished install counts: an interrupted build is redone next time.
    touch "$prefix/.interpool-complete"
}

if exe=$(find_existing "$tag"); then echo "$exe"; exit 0; fi
t="$tag"; [ "$t" = any ] && t=3.14
if [ -z "$(pinned "$t" | cut -d' ' -f1)" ]; then
    log "no CPython $t on this machine (not on PATH, not in pyenv), and none can be built here"
    exit 3
fi
# One build at a time per cache (parallel `make` invocations share it).
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if exe=$(find_existing "$tag"); then echo "$exe"; exit 0; fi
build "$t"
find_existing "$tag" || { log "built CPython for $tag but cannot run it"; exit 1; }
