"""scripts/check_structure.py, the checker of the extension's layers (docs/design.md, "Layout"):
it passes on this repository and fails on a copy with a planted violation."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = "scripts/check_structure.py"


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the repository")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.split() if (ROOT / name).is_file()]


def check(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(root / SCRIPT), "--root", str(root)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def copy(tmp_path: pathlib.Path) -> pathlib.Path:
    """A copy of the repository's tracked files (as they are in the work tree), under git."""
    for name in tracked_files():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True, env=env)
    return tmp_path


def plant(path: pathlib.Path, line: str) -> None:
    """Add `line` after the module's doc comment (before its first `use`)."""
    text = path.read_text()
    first_use = text.index("\nuse ") + 1
    path.write_text(text[:first_use] + line + "\n" + text[first_use:])


def test_the_repository_passes() -> None:
    proc = check(ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "layers: ok" in proc.stdout


def test_the_copy_passes_before_anything_is_planted(copy: pathlib.Path) -> None:
    proc = check(copy)
    assert proc.returncode == 0, proc.stderr
    assert "layers: ok" in proc.stdout


@pytest.mark.parametrize(
    ("module", "planted", "error"),
    [
        # The C API layer reaching up to a class.
        ("src/py.rs", "use crate::pool::PoolObject;", "src/py.rs uses crate::pool, of the layer 'classes'"),
        # The codec reaching up to a class (as it did for buffers and queues before handles.rs).
        ("src/codec/encode.rs", "use crate::buffer;", "src/codec uses crate::buffer, of the layer 'classes'"),
        # A grouped use.
        ("src/state.rs", "use crate::{protocol, py as _py};", "src/state.rs uses crate::protocol"),
    ],
)
def test_an_upward_use_fails(copy: pathlib.Path, module: str, planted: str, error: str) -> None:
    plant(copy / module, planted)
    proc = check(copy)
    assert proc.returncode == 1
    assert error in proc.stderr
    assert "layers: ok" not in proc.stdout


def test_a_cycle_inside_a_layer_fails(copy: pathlib.Path) -> None:
    plant(copy / "src/state.rs", "use crate::object as _object;")  # object uses state
    proc = check(copy)
    assert proc.returncode == 1
    assert "import cycle in src/: object <-> state" in proc.stderr


def test_a_module_in_no_layer_and_missing_from_the_layout_fails(copy: pathlib.Path) -> None:
    (copy / "src/extra.rs").write_text("//! A module nobody placed.\nuse crate::py::Python;\n")
    proc = check(copy)
    assert proc.returncode == 1
    assert "src/ has module extra, which is in no layer" in proc.stderr
    assert "docs/design.md's layout does not name src/extra.rs" in proc.stderr


def test_a_layout_that_names_a_missing_file_fails(copy: pathlib.Path) -> None:
    design = copy / "docs/design.md"
    design.write_text(design.read_text().replace("  py.rs ", "  py.rs gone.rs ", 1))
    proc = check(copy)
    assert proc.returncode == 1
    assert "docs/design.md's layout names gone.rs, which is not in src/" in proc.stderr
