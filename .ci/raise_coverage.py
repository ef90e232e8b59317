"""Fail CI when a consensus refusal is never reached by the test suite.

Reads the data ``python -m coverage run -m pytest`` wrote (``.coverage``) and lists every line in
``ledger/consensus/`` that raises a validity error — a class named ``Invalid…`` or any subclass of
``InvalidBlock``, ``InvalidTransaction`` or ``InvalidEvidence`` — that no test executed, as
``file:line``. Exit 1 if there is one, 0 otherwise. A rule nobody tests is a rule nobody knows
works: this keeps "one test per refusal" (tests/test_consensus_spec.py) true as rules are added.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
CONSENSUS = ROOT / "ledger" / "consensus"


def refusal_classes() -> set[str]:
    """Names of the error classes whose raises must each be reached."""
    sys.path.insert(0, str(ROOT))
    from ledger import errors

    roots = (errors.InvalidBlock, errors.InvalidTransaction, errors.InvalidEvidence)
    return {
        name for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Exception) and (name.startswith("Invalid") or issubclass(cls, roots))
    }


def raised_name(node: ast.Raise) -> str | None:
    """The class name in ``raise Name(...)`` or ``raise Name``."""
    exc = node.exc
    if isinstance(exc, ast.Call):
        exc = exc.func
    if isinstance(exc, ast.Name):
        return exc.id
    if isinstance(exc, ast.Attribute):
        return exc.attr
    return None


def refusal_lines(path: Path, names: set[str]) -> list[int]:
    """Lines of ``path`` that raise one of ``names`` (not marked ``pragma: no cover``)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Raise) and raised_name(node) in names:
            if "pragma: no cover" not in lines[node.lineno - 1]:
                found.append(node.lineno)
    return sorted(found)


def main() -> int:
    data_file = ROOT / ".coverage"
    if not data_file.exists():
        print(f"raise_coverage: no coverage data ({data_file.name}): run `python -m coverage run -m pytest` first",
              file=sys.stderr)
        return 1
    data = coverage.Coverage(data_file=str(data_file)).get_data()
    data.read()
    names = refusal_classes()
    missing: list[str] = []
    total = 0
    for path in sorted(CONSENSUS.glob("*.py")):
        wanted = refusal_lines(path, names)
        if not wanted:
            continue
        total += len(wanted)
        executed = set(data.lines(str(path)) or ())
        relative = path.relative_to(ROOT)
        missing += [f"{relative}:{line}" for line in wanted if line not in executed]
    if missing:
        print(f"raise_coverage: {len(missing)} of {total} refusals in ledger/consensus/ are never reached by a test "
              "(add one to tests/test_consensus_spec.py):", file=sys.stderr)
        for item in missing:
            print(f"  {item}", file=sys.stderr)
        return 1
    print(f"raise_coverage: all {total} refusals in ledger/consensus/ are reached by the tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
