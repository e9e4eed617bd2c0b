#!/usr/bin/env bash
# Make a ready-to-use virtualenv for one Python of the matrix and install interpool into it.
#
#   scripts/setup.sh TAG     TAG: 3.14, 3.13, 3.14t, or "any" (PYTHON=, else python3.1x on
#                            PATH, else the pinned 3.14 build). Prints the venv's path.
#
# The venv lives in .venvs/TAG (ignored by git) and is reused; it is rebuilt when its base
# interpreter or a requirements file changes. interpool itself is rebuilt with
# `maturin develop --release` every time (cargo makes that a no-op when nothing changed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag="${1:?usage: scripts/setup.sh 3.14|3.13|3.14t|3.12|any}"
log() { echo "[setup.sh] $*" >&2; }

py=$("$root/scripts/python.sh" "$tag") || exit $?  # 3: no such Python here
reqs=("$root/requirements-dev.txt" "$root/requirements-integrations.txt" "$root/requirements-isolation.txt")
# Exact versions from constraints.txt; INTERPOOL_LATEST=1 (make test-latest) takes the newest
# releases instead, in venvs of their own.
if [ -n "${INTERPOOL_LATEST:-}" ]; then
    venv="$root/.venvs/latest-$tag"
    pin=()
else
    venv="$root/.venvs/$tag"
    pin=(-c "$root/constraints.txt")
    reqs+=("$root/constraints.txt")
fi
want="$py $(cat "${reqs[@]}" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.interpool-stamp" 2>/dev/null)" != "$want" ]; then
    log "creating $venv from $py"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pin[@]}" -r "$root/requirements-dev.txt" >&2
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pin[@]}" -r "$root/requirements-integrations.txt" >&2 \
        || log "optional integrations did not install for $tag; their tests will be skipped"
    # One at a time: a package without a wheel for this Python must not keep the others out.
    grep -Ev '^\s*(#|$)' "$root/requirements-isolation.txt" | while read -r req; do
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pin[@]}" --only-binary=:all: "$req" >&2 \
            || log "$req has no wheel for $tag; its isolation tests will be skipped"
    done
    echo "$want" >"$venv/.interpool-stamp"
fi
log "building interpool for $("$venv/bin/python" -c 'import sys; print(sys.version.split()[0], "free-threaded" if not sys._is_gil_enabled() else "")' 2>/dev/null || echo "$tag")"
(
    cd "$root"
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
    unset CONDA_PREFIX
    maturin develop --release --quiet >&2
    # An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE (set on some
    # machines) keeps Python from caching it: every worker interpreter would recompile
    # interpool's modules at start-up. pip compiles wheels at install time; do the same.
    python -m compileall -q python/interpool >&2
    # The same for the modules that workers import by name (the tests' task modules, the
    # benchmarks' workloads): a worker that compiles a module's source keeps ~1 MiB of the
    # compiler's memory, which every executor's workers would otherwise pay in the benchmarks.
    python -m compileall -q tests benchmarks examples >&2
)
echo "$venv"
