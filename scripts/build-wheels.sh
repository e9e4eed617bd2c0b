#!/usr/bin/env bash
# Build release artifacts: manylinux2014 (manylinux_2_17) x86_64 wheels and one sdist.
#
#   scripts/build-wheels.sh [--no-sdist] [--skip-missing] OUTDIR [TAG...]
#
# TAG: 3.12, 3.13, 3.14, 3.14t (free-threaded, tagged cp314t) or "any" (the dev Python, see
# scripts/python.sh); default: 3.12 3.13 3.14 3.14t. Each Python is found or built by
# scripts/python.sh. A tag whose Python cannot exist here (3.12 without pyenv) is an error,
# or, with --skip-missing (or when no TAG is given), skipped with a message.
#
# Wheels are linked against glibc 2.17 with zig (`maturin build --zig --compatibility
# manylinux2014`), so they need no manylinux container; the tools (maturin, ziglang from
# PyPI, auditwheel) are installed into a venv of their own in the build cache
# ($INTERPOOL_CACHE/wheel-tools, default ~/.cache/interpool) and reused. Needs a Rust
# toolchain (cargo) on PATH and PyPI the first time.
#
# Every wheel is checked before it lands in OUTDIR: `auditwheel show` must find it
# manylinux_2_17 (or older) compatible, its tags must match its Python (cp314t for 3.14t),
# it must hold exactly one extension module and not link libpython. The sdist is checked
# for the files a `pip install interpool-*.tar.gz` build needs, and against build outputs.
# Prints the artifacts' paths on stdout, everything else on stderr. Cargo builds go to
# $CARGO_TARGET_DIR, default target/wheels (apart from `maturin develop`'s target/release,
# so neither rebuilds the other's work).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${INTERPOOL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/interpool}"
# The tools, pinned to a combination known to work together (cargo-zigbuild inside maturin
# and zig releases have broken each other before). maturin satisfies pyproject's
# build-system requirement (maturin>=1.9,<2). Override with WHEEL_TOOLS="maturin==... ...".
WHEEL_TOOLS="${WHEEL_TOOLS:-maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2}"
MANYLINUX=manylinux2014  # = manylinux_2_17: glibc 2.17 (CentOS 7, Debian 8+, Ubuntu 14.04+)
MAX_GLIBC_MINOR=17

log() { echo "[build-wheels] $*" >&2; }
die() { echo "[build-wheels] error: $*" >&2; exit 1; }
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

sdist=1 skip_missing=0
while [ $# -gt 0 ]; do
    case "$1" in
        --no-sdist) sdist=0; shift ;;
        --skip-missing) skip_missing=1; shift ;;
        -h|--help) usage ;;
        --) shift; break ;;
        -*) log "unknown option $1"; usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || usage
outdir="$1"; shift
if [ $# -eq 0 ]; then set -- 3.12 3.13 3.14 3.14t; skip_missing=1; fi

start=$SECONDS
step_start=$SECONDS
step() { log "$1 done in $((SECONDS - step_start))s"; step_start=$SECONDS; }

# --- what has to be there ----------------------------------------------------------------
[ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] \
    || die "only x86_64 Linux wheels are built here (this is $(uname -s)/$(uname -m))"
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null && command -v rustc >/dev/null \
    || die "no Rust toolchain: cargo and rustc must be on PATH (install Rust with rustup, https://rustup.rs)"
host=$(rustc -vV | awk '/^host:/ {print $2}')
[ "$host" = x86_64-unknown-linux-gnu ] \
    || die "rustc's host is '$host'; the x86_64-unknown-linux-gnu toolchain is needed"

# --- the Pythons ---------------------------------------------------------------------------
pythons=() tags=() skipped=()
for tag in "$@"; do
    case "$tag" in
        3.12|3.13|3.14|3.14t|any) ;;
        *) die "unknown tag '$tag' (expected 3.12, 3.13, 3.14, 3.14t or any)" ;;
    esac
    rc=0; py=$("$root/scripts/python.sh" "$tag") || rc=$?
    if [ $rc = 3 ] && [ $skip_missing = 1 ]; then
        log "skipping $tag: no CPython $tag on this machine (and none can be built here)"
        skipped+=("$tag"); continue
    fi
    [ $rc = 0 ] || die "no Python for $tag (scripts/python.sh $tag exited $rc)"
    dup=0
    for p in "${pythons[@]}"; do [ "$p" = "$py" ] && dup=1; done
    [ $dup = 1 ] && continue
    pythons+=("$py"); tags+=("$tag")
done
[ ${#pythons[@]} -gt 0 ] || die "no Python to build wheels for (asked for: $*)"
step "finding Pythons (${tags[*]})"

# --- the tools: a venv of their own in the cache ------------------------------------------
# Made with the first GIL-enabled Python of those found (they have ensurepip, unlike a bare
# Debian python3), else the first one; reused while it runs, whatever the tags.
tools_py="${pythons[0]}"
for p in "${pythons[@]}"; do
    if "$p" -c 'import sys, sysconfig; sys.exit(1 if sysconfig.get_config_var("Py_GIL_DISABLED") else 0)'; then
        tools_py="$p"; break
    fi
done
tools="$CACHE/wheel-tools/$(echo "$WHEEL_TOOLS" | sha256sum | cut -c1-16)"
mkdir -p "$CACHE/wheel-tools"
(
    flock 9  # one install at a time per cache
    if [ ! -f "$tools/.complete" ] || ! "$tools/bin/python" -c '' 2>/dev/null; then
        log "installing $WHEEL_TOOLS into $tools"
        rm -rf "$tools"
        "$tools_py" -m venv "$tools" || die "cannot make a venv with $tools_py"
        # shellcheck disable=SC2086
        "$tools/bin/python" -m pip install -q --disable-pip-version-check $WHEEL_TOOLS >&2 \
            || die "cannot install $WHEEL_TOOLS from PyPI"
        touch "$tools/.complete"
    fi
) 9>"$CACHE/wheel-tools/.lock"
for tool in maturin auditwheel; do
    [ -x "$tools/bin/$tool" ] || die "$tool is missing from $tools (remove that folder to reinstall)"
done
zig_version=$("$tools/bin/python" -m ziglang version 2>/dev/null) \
    || die "zig (PyPI's ziglang) does not run from $tools (remove that folder to reinstall)"
# maturin's cargo-zigbuild runs `python -m ziglang` with this Python.
export CARGO_ZIGBUILD_PYTHON_PATH="$tools/bin/python"
export PATH="$tools/bin:$PATH"
log "tools: $("$tools/bin/maturin" --version), zig $zig_version, auditwheel $("$tools/bin/python" -c 'import importlib.metadata as m; print(m.version("auditwheel"))')"
step "tools"

# --- build into a staging folder; only checked artifacts reach OUTDIR ---------------------
if git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
    dirty=$(git -C "$root" status --porcelain --untracked-files=normal | head -5)
    [ -z "$dirty" ] || log "warning: the work tree has uncommitted changes; they go into the artifacts:"$'\n'"$dirty"
fi
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
staging=$(mktemp -d "$outdir/.staging.XXXXXX")
trap 'rm -rf "$staging"' EXIT
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/wheels}"
# Settings for other builds that must not leak into these (see the Makefile's check-py312).
unset PYO3_CONFIG_FILE PYO3_PYTHON CONDA_PREFIX VIRTUAL_ENV

interp_args=()
for p in "${pythons[@]}"; do interp_args+=(--interpreter "$p"); done
log "building $MANYLINUX wheels for ${tags[*]} (cargo target dir $CARGO_TARGET_DIR)"
(cd "$root" && maturin build --release --locked --zig --compatibility "$MANYLINUX" \
    "${interp_args[@]}" --out "$staging" >&2) \
    || die "maturin build failed (see above)"
step "building wheels"

# --- check the wheels ------------------------------------------------------------------------
for i in "${!pythons[@]}"; do
    py="${pythons[$i]}" tag="${tags[$i]}"
    read -r pytag abitag suffix <<<"$("$py" -c '
import sys, sysconfig
v = "cp%d%d" % sys.version_info[:2]
print(v, v + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""), sysconfig.get_config_var("EXT_SUFFIX"))')"
    shopt -s nullglob
    found=("$staging"/interpool-*-"$pytag-$abitag"-*.whl)
    shopt -u nullglob
    [ ${#found[@]} = 1 ] || die "expected one $pytag-$abitag wheel for $tag, found ${#found[@]}: ${found[*]:-none}"
    whl="${found[0]}"
    name=$(basename "$whl")
    case "$name" in
        *manylinux_2_17_x86_64*|*manylinux2014_x86_64*) ;;
        *) die "$name is not tagged manylinux_2_17/manylinux2014 x86_64" ;;
    esac
    # auditwheel show: the most compatible platform tag the wheel is consistent with.
    report=$(auditwheel show "$whl" 2>&1) || die "auditwheel show failed on $name:"$'\n'"$report"
    policy=$(echo "$report" | tr '\n' ' ' | tr -s ' ' \
        | sed -n 's/.*consistent with the following platform tag: "\([^"]*\)".*/\1/p')
    minor=$(echo "$policy" | sed -n 's/^manylinux_2_\([0-9][0-9]*\)_x86_64$/\1/p')
    if [ -z "$minor" ] || [ "$minor" -gt $MAX_GLIBC_MINOR ]; then
        die "auditwheel: $name is consistent with '${policy:-?}', not manylinux_2_17 or older:"$'\n'"$report"
    fi
    # What is inside: one extension module, for this Python; no libpython, no stale build.
    "$tools/bin/python" - "$whl" "$suffix" <<'PY' || die "$name failed the content check"
import io, sys, zipfile
from elftools.elf.elffile import ELFFile
from elftools.elf.dynamic import DynamicSection
whl, suffix = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(whl)
exts = [n for n in z.namelist() if n.endswith((".so", ".pyd", ".dylib"))]
if exts != ["interpool/_interpool" + suffix]:
    sys.exit(f"expected only interpool/_interpool{suffix}, found {exts}")
elf = ELFFile(io.BytesIO(z.read(exts[0])))
needed = [t.needed for s in elf.iter_sections() if isinstance(s, DynamicSection)
          for t in s.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
if any(n.startswith("libpython") for n in needed):
    sys.exit(f"{exts[0]} links libpython: {needed}")
bad = [n for n in z.namelist() if "__pycache__" in n or n.endswith(".pyc")]
if bad:
    sys.exit(f"stale files: {bad}")
print(f"  {exts[0]}: needs {', '.join(needed)}", file=sys.stderr)
PY
    glibc=$(echo "$report" | tr '\n' ' ' | tr -s ' ' | sed -n 's/.*libc.so.6 with versions {\([^}]*\)}.*/\1/p' \
        | tr -d "' " | tr ',' '\n' | sort -t. -k2,2n -k3,3n | tail -1)
    log "ok $name: auditwheel: $policy (newest glibc symbol: ${glibc:-?})"
done
step "checking wheels"

# --- the sdist -------------------------------------------------------------------------------
if [ $sdist = 1 ]; then
    (cd "$root" && maturin sdist --out "$staging" 2>&1 | grep -v -e 'manifest has no documentation' \
        -e '^  |$' -e 'package-metadata for more info' -e '^From `cargo package' >&2) \
        || die "maturin sdist failed"
    shopt -s nullglob
    sd=("$staging"/interpool-*.tar.gz)
    shopt -u nullglob
    [ ${#sd[@]} = 1 ] || die "expected one sdist, found ${#sd[@]}"
    "$tools/bin/python" - "${sd[0]}" <<'PY' || die "$(basename "${sd[0]}") failed the content check"
import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    names = t.getnames()
top = names[0].split("/")[0]
rel = {n[len(top) + 1:] for n in names if n.startswith(top + "/")}
need = ["PKG-INFO", "pyproject.toml", "Cargo.toml", "Cargo.lock", "README.md", "build.rs",
        "src/lib.rs", "crates/interpool-core/Cargo.toml", "crates/interpool-core/src/lib.rs",
        "python/interpool/__init__.py", "python/interpool/py.typed", "python/interpool/_interpool.pyi"]
missing = [n for n in need if n not in rel]
banned = ("target/", ".venvs/", "dist/", "wheels/", ".git/")
bad = sorted(n for n in rel if n.startswith(banned) or "/__pycache__/" in "/" + n
             or n.endswith((".so", ".pyc", ".whl")))
if missing or bad:
    sys.exit(f"missing: {missing}; should not be there: {bad[:20]}")
print(f"  {len(rel)} files, {sum(1 for n in rel if n.startswith('python/'))} under python/, "
      f"{sum(1 for n in rel if n.startswith('crates/'))} under crates/", file=sys.stderr)
PY
    log "ok $(basename "${sd[0]}")"
    step "sdist"
fi

shopt -s nullglob
built=("$staging"/*.whl "$staging"/*.tar.gz)
shopt -u nullglob
mv -f "${built[@]}" "$outdir"/
log "built in $((SECONDS - start))s into $outdir:"
for f in "${built[@]}"; do echo "$outdir/$(basename "$f")"; done  # on stdout, for callers
[ ${#skipped[@]} = 0 ] || log "skipped (no Python here): ${skipped[*]}"
