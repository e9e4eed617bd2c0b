#!/usr/bin/env bash
# Install a built interpool wheel into a brand-new venv (nothing else installed) and run a
# smoke test from outside the source tree, as a `pip install interpool` user would.
#   scripts/test-wheel.sh PYTHON WHEEL
set -euo pipefail
py="${1:?python}"; wheel="${2:?wheel}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index "$wheel"
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
        assert pool.submit(len, SharedBuffer(bytearray(100))).result() == 100
        pool.submit(q.put, "from a worker").result()
    assert q.get(timeout=5) == "from a worker"
    print("wheel smoke test ok:", interpool.__version__, sys.version.split()[0])
PY
"$work/venv/bin/python" smoke.py
"$work/venv/bin/python" -m interpool info | head -2
