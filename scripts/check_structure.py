#!/usr/bin/env python3
"""Structural rules of the code base, checked by `make lint` (docs/design.md, "Layout"):

1. unsafe code stays confined in the extension (src/): at most MAX_SHARE percent of its lines
   of code inside `unsafe { }` blocks, and no block longer than MAX_BLOCK lines of code;
2. the extension's modules form the layers of LAYERS: each module of src/ (a file, or a folder
   such as codec/) is in exactly one layer, and uses (`crate::name`) only modules of its own
   layer or of the layers listed before it, never one of a later layer; docs/design.md's
   layout names every entry of src/ and no file that is not there;
3. no import cycle between the extension's modules, none in the Python package;
4. no file of the repository refers to a path outside it: every relative path that climbs
   (`..` components) must lead to a file or directory of the repository, and every document
   named by a relative path (a directory, a slash, a name ending in .md) must exist in it,
   next to the file or from the root.

Counting: lines of code are lines that are neither blank nor comment-only; a block's lines
run from the line that opens `unsafe {` to the line that closes it. `unsafe fn` bodies do not
count: with `unsafe_op_in_unsafe_fn` denied, their unsafe operations are in blocks too.

`--root DIR` checks another copy of the repository (the tests plant violations in one).
"""

from __future__ import annotations

import argparse
import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_SHARE = 10.0
MAX_BLOCK = 10
# The extension's layers, lowest first (docs/design.md, "Layout"). `lib` (the crate root, which
# declares every module) is the entry point above them all.
LAYERS: list[tuple[str, list[str]]] = [
    ("C API", ["debug", "fork_guard", "py"]),
    ("interpreter runtime", ["pin", "globals", "decoded", "state", "object", "args", "trampoline", "testing"]),
    ("values", ["handles", "codec"]),
    ("workers", ["protocol", "interrupt", "blas", "gilstate", "isolate", "interp", "threads", "worker"]),
    ("classes", ["pool", "queue", "buffer"]),
    ("module", ["module"]),
]
OPEN = re.compile(r"\bunsafe\s*\{")


def code_only(line: str) -> str:
    line = re.sub(r'c?"(?:\\.|[^"\\])*"', '""', line)
    return line.split("//", 1)[0]


def unsafe_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, last) line index of each outermost `unsafe { }` block."""
    found, i = [], 0
    while i < len(lines):
        m = OPEN.search(code_only(lines[i]))
        if not m:
            i += 1
            continue
        depth, j, col = 0, i, m.end() - 1
        while j < len(lines):
            text = code_only(lines[j])
            for ch in text[col:] if j == i else text:
                depth += {"{": 1, "}": -1}.get(ch, 0)
                if depth == 0:
                    break
            if depth == 0:
                break
            j += 1
        found.append((i, j))
        i = j + 1
    return found


def check_unsafe(src: pathlib.Path) -> list[str]:
    root = src.parent
    total = inside = 0
    blocks: list[tuple[int, str]] = []
    for path in sorted(src.rglob("*.rs")):
        lines = path.read_text().splitlines()
        is_code = [bool(s.strip()) and not s.strip().startswith("//") for s in lines]
        total += sum(is_code)
        for first, last in unsafe_blocks(lines):
            n = sum(is_code[first : last + 1])
            inside += n
            blocks.append((n, f"{path.relative_to(root)}:{first + 1}"))
    blocks.sort(reverse=True)
    share = 100 * inside / max(total, 1)
    longest = ", ".join(f"{n} lines at {where}" for n, where in blocks[:3])
    print(f"unsafe: {inside} of {total} lines of code in src/ ({share:.1f}%), {len(blocks)} blocks; longest: {longest}")
    errors = []
    if share > MAX_SHARE:
        errors.append(f"{share:.1f}% of src/ is inside unsafe blocks (limit {MAX_SHARE}%)")
    errors += [f"an unsafe block spans {n} lines of code (limit {MAX_BLOCK}): {w}" for n, w in blocks if n > MAX_BLOCK]
    return errors


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    found: set[frozenset[str]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt == start:
                found.add(frozenset(path))
            elif nxt not in path:
                walk(start, nxt, [*path, nxt])

    for node in graph:
        walk(node, node, [node])
    return found


def rust_graph(src: pathlib.Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in src.rglob("*.rs"):
        name = path.stem if path.parent == src else path.relative_to(src).parts[0]
        text = "\n".join(code_only(line) for line in path.read_text().splitlines())
        deps = set(re.findall(r"crate::(\w+)", text))
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            deps |= set(re.findall(r"\b([a-z_]+)\b", group))
        graph.setdefault(name, set()).update(deps - {name})
    modules = set(graph) - {"lib"}
    return {k: v & modules for k, v in graph.items() if k != "lib"}


def check_layers(src: pathlib.Path, design: pathlib.Path) -> list[str]:
    graph = rust_graph(src)
    layer_of: dict[str, int] = {}
    errors = []
    for index, (_, modules) in enumerate(LAYERS):
        for module in modules:
            if module in layer_of:
                errors.append(f"LAYERS lists {module} twice")
            layer_of[module] = index
    errors += [
        f"src/ has module {m}, which is in no layer of LAYERS (scripts/check_structure.py)"
        for m in sorted(set(graph) - set(layer_of))
    ]
    errors += [f"LAYERS lists {m}, which is not a module of src/" for m in sorted(set(layer_of) - set(graph))]
    for module, deps in sorted(graph.items()):
        for dep in sorted(deps):
            if module in layer_of and dep in layer_of and layer_of[dep] > layer_of[module]:
                errors.append(
                    f"{module_path(src, module)} uses crate::{dep}, of the layer '{LAYERS[layer_of[dep]][0]}', "
                    f"above its own layer '{LAYERS[layer_of[module]][0]}': a module uses only its own layer "
                    "and those listed before it (LAYERS)"
                )
    errors += check_layout_doc(src, design)
    if not errors:
        print(
            f"layers: ok ({len(layer_of)} modules of src/ in {len(LAYERS)} layers; "
            "docs/design.md lists every entry of src/)"
        )
    return errors


def module_path(src: pathlib.Path, module: str) -> str:
    path = src / f"{module}.rs" if (src / f"{module}.rs").exists() else src / module
    return str(path.relative_to(src.parent))


def check_layout_doc(src: pathlib.Path, design: pathlib.Path) -> list[str]:
    """docs/design.md's layout block names each entry of src/ (`name.rs`, `folder/`), and each
    Rust file it names exists in src/ (at the top or in a folder)."""
    text = design.read_text()
    section = text.split("## Layout", 1)[-1]
    block = section.split("```", 2)[1] if section.count("```") >= 2 else ""
    named_files = set(re.findall(r"\b([\w/]+\.rs)\b", block))
    named_dirs = set(re.findall(r"(?<![\w/-])(\w+)/(?=\s)", block))
    errors = []
    for entry in sorted(src.iterdir()):
        if entry.is_dir() and entry.name not in named_dirs:
            errors.append(f"docs/design.md's layout does not name src/{entry.name}/")
        if entry.suffix == ".rs" and entry.name not in named_files:
            errors.append(f"docs/design.md's layout does not name src/{entry.name}")
    rust_files = {p.name for p in src.rglob("*.rs")} | {str(p.relative_to(src)) for p in src.rglob("*.rs")}
    errors += [f"docs/design.md's layout names {f}, which is not in src/" for f in sorted(named_files - rust_files)]
    return errors


def python_graph(package: pathlib.Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = {d.split(".")[0] for d in deps} - {path.stem}
    modules = set(graph)
    return {k: v & modules for k, v in graph.items()}


def check_cycles(root: pathlib.Path) -> list[str]:
    errors = []
    for what, graph in [
        ("src/", rust_graph(root / "src")),
        ("python/interpool/", python_graph(root / "python/interpool")),
    ]:
        found = cycles(graph)
        print(f"imports: {len(graph)} modules in {what}, cycles: {sorted(map(sorted, found)) or 'none'}")
        errors += [f"import cycle in {what}: {' <-> '.join(sorted(c))}" for c in found]
    return errors


def check_outside_references(root: pathlib.Path) -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    # A path that starts with `..` components (not one inside a longer path such as
    # `$ORIGIN/../lib`, nor an ellipsis such as `.../worker`).
    climbing = re.compile(r"(?<![\w.$/])((?:\.\./)+[\w.-]+)")
    # A document named by a relative path, such as the design notes in docs (not in a URL).
    document = re.compile(r"(?<![\w.$/:-])((?:[\w-]+/)+[\w-]+\.md)\b")
    root = root.resolve()
    errors = []
    for name in files:
        path = root / name
        if path.suffix in {".png", ".lock"} or not path.is_file():
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            outside = [
                relative
                for relative in climbing.findall(line)
                if not ((target := (path.parent / relative).resolve()).is_relative_to(root) and target.exists())
            ]
            outside += [
                relative
                for relative in document.findall(line)
                if not ((path.parent / relative).exists() or (root / relative).exists())
            ]
            if outside:
                errors.append(f"{name}:{n} refers to a path outside the repository: {line.strip()}")
    print(f"references outside the repository: {len(errors)}")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=pathlib.Path, default=ROOT, help="the repository to check (default: this one)")
    root = parser.parse_args().root.resolve()
    errors = (
        check_unsafe(root / "src")
        + check_layers(root / "src", root / "docs/design.md")
        + check_cycles(root)
        + check_outside_references(root)
    )
    for error in errors:
        print("error:", error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
