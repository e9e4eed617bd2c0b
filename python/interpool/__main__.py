"""``python -m interpool``: see :mod:`interpool._cli`."""

from interpool._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
