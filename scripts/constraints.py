"""Print constraints.txt from the packages installed in the given venvs (`make constraints`).

Each venv's `pip freeze` is merged (the first venv wins where two differ); interpool itself is
left out. Run after `make test-latest` passed, so the pins move to releases the suite passed on.
"""

from __future__ import annotations

import datetime
import subprocess
import sys

HEADER = """\
# Exact versions of every package the project's venvs install (scripts/setup.sh passes this file
# to pip with -c), so that a new release of a dependency cannot turn CI red, or hide a crash, by
# chance. Updated on purpose: `make test-latest` runs the suite against the newest releases
# (ignoring this file); when it passes, `make constraints` rewrites this file from its venvs,
# and the commit says what changed.
# Generated {date} from: {venvs}."""


def main(venvs: list[str]) -> None:
    pins: dict[str, str] = {}
    for venv in venvs:
        frozen = subprocess.run(
            [f"{venv}/bin/python", "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for line in frozen.splitlines():
            name, sep, version = line.partition("==")
            if sep and name.lower() != "interpool":
                pins.setdefault(name, version)
    print(HEADER.format(date=datetime.date.today().isoformat(), venvs=", ".join(venvs)))
    for name in sorted(pins, key=str.lower):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main(sys.argv[1:])
