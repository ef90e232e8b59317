"""The layering rules of DESIGN.md, read from the source with ``ast`` so a wrong import fails here.

Imports go ``cli -> wallet -> ledger``; inside ``ledger/`` they go down
``errors/params/encoding -> crypto -> consensus -> storage -> chain -> node`` and never up; the
rules (``consensus/``) touch no database, clock, thread, socket or randomness; and no module of the
project imports itself back through any chain of imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "wallet", "cli")

WALLET_MAY_IMPORT = ("ledger.crypto", "ledger.consensus", "ledger.encoding", "ledger.errors", "ledger.params")
CONSENSUS_MUST_NOT = ("ledger.storage", "ledger.chain", "ledger.node", "plyvel", "plyvel_next", "socket",
                      "threading", "time", "random", "os", "subprocess", "multiprocessing", "http", "asyncio")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Every module an import statement names, at any depth (lazy imports inside functions count)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def within(name: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


MODULES = project_modules()
IMPORTS = {name: imports_of(path) for name, path in MODULES.items()}


def violations(source: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name, targets in IMPORTS.items() if within(name, source)
        for target in targets if within(target, forbidden)
    )


def test_the_tree_is_read() -> None:
    """Guard against a test that passes because it read nothing."""
    assert "ledger.consensus.fork" in MODULES and "cli.main" in MODULES and "wallet.signing" in MODULES
    assert "ledger.consensus.state" in IMPORTS["ledger.consensus.fork"]


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("ledger.consensus", CONSENSUS_MUST_NOT),
        ("ledger.crypto", ("ledger.consensus", "ledger.storage", "ledger.chain", "ledger.node", "plyvel")),
        ("ledger.storage", ("ledger.chain", "ledger.node")),
        ("ledger.chain", ("ledger.node",)),
        ("ledger", ("wallet", "cli")),
        ("wallet", ("cli",)),
    ],
)
def test_imports_go_down_only(source: str, forbidden: tuple[str, ...]) -> None:
    assert violations(source, forbidden) == []


def test_only_storage_imports_plyvel() -> None:
    offenders = sorted(
        name for name, targets in IMPORTS.items()
        if not within(name, "ledger.storage") and any(within(t, ("plyvel", "plyvel_next")) for t in targets)
    )
    assert offenders == []


def test_wallet_needs_only_the_rules_and_primitives() -> None:
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in IMPORTS.items() if within(name, "wallet")
        for target in targets if within(target, "ledger") and target != "ledger" and not within(target, WALLET_MAY_IMPORT)
    )
    assert offenders == []


def _project_edges() -> dict[str, set[str]]:
    """Module -> project modules it imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    edges: dict[str, set[str]] = {}
    for name, targets in IMPORTS.items():
        edges[name] = {t for t in targets if t in MODULES and t != name and not MODULES[t].name == "__init__.py"}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A depth-first search that returns one import cycle, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(edges, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if colour.get(nxt, BLACK) == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour.get(nxt) == WHITE:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        colour[node] = BLACK
        return None

    for start in sorted(edges):
        if colour[start] == WHITE:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_no_import_cycles() -> None:
    assert find_cycle(_project_edges()) is None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
