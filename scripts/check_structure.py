#!/usr/bin/env python3
"""Structural rules of the code base, checked by `make lint` (docs/design.md, "Layout"):

1. unsafe code stays confined in the extension (src/): at most MAX_SHARE percent of its lines
   of code inside `unsafe { }` blocks, and no block longer than MAX_BLOCK lines of code;
2. no import cycle between the extension's modules, except codec <-> queue (queue items are
   values, and values carry queues); none in the Python package;
3. no file of the repository refers to a path outside it: every relative path that climbs
   (`..` components) must lead to a file or directory of the repository, and every document
   named by a relative path (a directory, a slash, a name ending in .md) must exist in it,
   next to the file or from the root.

Counting: lines of code are lines that are neither blank nor comment-only; a block's lines
run from the line that opens `unsafe {` to the line that closes it. `unsafe fn` bodies do not
count: with `unsafe_op_in_unsafe_fn` denied, their unsafe operations are in blocks too.
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_SHARE = 10.0
MAX_BLOCK = 10
ALLOWED_CYCLES = {frozenset({"codec", "queue"})}
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
    total = inside = 0
    blocks: list[tuple[int, str]] = []
    for path in sorted(src.rglob("*.rs")):
        lines = path.read_text().splitlines()
        is_code = [bool(s.strip()) and not s.strip().startswith("//") for s in lines]
        total += sum(is_code)
        for first, last in unsafe_blocks(lines):
            n = sum(is_code[first : last + 1])
            inside += n
            blocks.append((n, f"{path.relative_to(ROOT)}:{first + 1}"))
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


def check_cycles() -> list[str]:
    errors = []
    for what, graph in [
        ("src/", rust_graph(ROOT / "src")),
        ("python/interpool/", python_graph(ROOT / "python/interpool")),
    ]:
        bad = cycles(graph) - ALLOWED_CYCLES
        print(f"imports: {len(graph)} modules in {what}, cycles: {sorted(map(sorted, cycles(graph))) or 'none'}")
        errors += [f"import cycle in {what}: {' <-> '.join(sorted(c))}" for c in bad]
    return errors


def check_outside_references() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    # A path that starts with `..` components (not one inside a longer path such as
    # `$ORIGIN/../lib`, nor an ellipsis such as `.../worker`).
    climbing = re.compile(r"(?<![\w.$/])((?:\.\./)+[\w.-]+)")
    # A document named by a relative path, such as the design notes in docs (not in a URL).
    document = re.compile(r"(?<![\w.$/:-])((?:[\w-]+/)+[\w-]+\.md)\b")
    root = ROOT.resolve()
    errors = []
    for name in files:
        path = ROOT / name
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
                if not ((path.parent / relative).exists() or (ROOT / relative).exists())
            ]
            if outside:
                errors.append(f"{name}:{n} refers to a path outside the repository: {line.strip()}")
    print(f"references outside the repository: {len(errors)}")
    return errors


def main() -> int:
    errors = check_unsafe(ROOT / "src") + check_cycles() + check_outside_references()
    for error in errors:
        print("error:", error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
