#!/usr/bin/env bash
# Install a built interpool wheel into a brand-new venv (nothing else installed) and run a
# smoke test from outside the source tree, as a `pip install interpool` user would.
#   scripts/test-wheel.sh PYTHON WHEEL     WHEEL: a manylinux wheel from scripts/build-wheels.sh
#   scripts/test-wheel.sh PYTHON SDIST     interpool-*.tar.gz: pip builds it (needs PyPI for
#                                          maturin, and cargo on PATH), then the same test
# A wheel must be a manylinux one (what is published); INTERPOOL_ANY_WHEEL=1 accepts others
# (a plain `maturin build`'s linux_x86_64 wheel). On CPython 3.12.0-3.12.3 pools are refused
# unless INTERPOOL_UNSAFE_PY312=1 is set in the environment.
set -euo pipefail
py="${1:?usage: scripts/test-wheel.sh PYTHON WHEEL|SDIST}"; dist="${2:?usage: scripts/test-wheel.sh PYTHON WHEEL|SDIST}"
[ $# -eq 2 ] || { echo "test-wheel.sh: one wheel or sdist at a time (got: ${*:2})" >&2; exit 2; }
[ -f "$dist" ] || { echo "test-wheel.sh: no such file: $dist" >&2; exit 2; }
dist=$(cd "$(dirname "$dist")" && pwd)/$(basename "$dist")
case "$(basename "$dist")" in
    *manylinux*.whl) index=(--no-index) ;;
    *.whl)
        if [ "${INTERPOOL_ANY_WHEEL:-}" != 1 ]; then
            echo "test-wheel.sh: $(basename "$dist") is not a manylinux wheel (build one with" \
                "scripts/build-wheels.sh, or set INTERPOOL_ANY_WHEEL=1)" >&2
            exit 2
        fi
        index=(--no-index) ;;
    *.tar.gz) index=() ;;  # build requirements (maturin) come from PyPI
    *) echo "test-wheel.sh: expected a .whl or a .tar.gz: $dist" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m venv "$work/venv"
echo "installing $(basename "$dist") into a new venv of $("$work/venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check "${index[@]}" "$dist"
cd "$work"
cat > smoke.py <<'PY'
import interpool, sys
from interpool import InterpreterPoolExecutor, Queue, SharedBuffer

def square(x):
    return x * x

if __name__ == "__main__":
    assert interpool.__file__.startswith(sys.prefix), interpool.__file__  # the installed copy
    q = Queue()
    with InterpreterPoolExecutor(2) as pool:
        assert list(pool.map(square, range(10))) == [i * i for i in range(10)]
        assert list(pool.map(abs, [-1, -2])) == [1, 2]
        assert pool.submit(len, SharedBuffer(bytearray(100))).result() == 100
        pool.submit(q.put, "from a worker").result()
    assert q.get(timeout=5) == "from a worker"
    print("wheel smoke test ok:", interpool.__version__, sys.version.split()[0])
PY
env -u PYTHONPATH "$work/venv/bin/python" smoke.py
# sed, not head: head exits after two lines and the CLI can die of a broken pipe (pipefail).
env -u PYTHONPATH "$work/venv/bin/python" -m interpool info | sed -n 1,2p
