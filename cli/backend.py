"""Where a command's chain calls go: the database directly, or a running node's API.

LevelDB admits one process. While ``posctl node run`` holds the database, every other command
must go through its HTTP API; otherwise commands open the database themselves. Both backends
return the same JSON-ready views (``ledger.chain.views``), so output is identical either way.
This module holds the interface both implement and the choice between them; the two live side
by side in :mod:`cli.direct_backend` and :mod:`cli.node_backend` and import neither this module
nor each other's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from cli.direct_backend import DirectBackend, parse_tx_id
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction


class Backend(Protocol):
    """The chain operations the CLI needs; every result is a JSON-ready view."""

    def status(self) -> dict[str, Any]: ...
    def block(self, ref: str | None) -> dict[str, Any]: ...
    def blocks_last(self, count: int) -> list[dict[str, Any]]: ...
    def tx(self, tx_id: str) -> dict[str, Any]: ...
    def account(self, address: str) -> dict[str, Any]: ...
    def history(self, address: str, limit: int) -> list[dict[str, Any]]: ...
    def mempool(self, limit: int) -> dict[str, Any]: ...
    def validators(self) -> list[dict[str, Any]]: ...
    def submit(self, tx: Transaction) -> dict[str, Any]: ...
    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]: ...
    def forge(self) -> dict[str, Any]: ...
    def backup(self, directory: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def open_backend(home: Path) -> Backend:
    """A running node's API if one holds this home, else the database directly.

    A node is running when ``$home/node.json`` names a live pid that answers ``GET /node``.
    A record left by a killed node is ignored (and removed when its pid is dead).
    """
    from ledger.node.record import find_running_node

    record = find_running_node(home)
    if record is not None:
        from cli.node_backend import NodeBackend  # only when a node runs: it loads the HTTP stack

        return NodeBackend(record.url, home=home)
    return DirectBackend(home)


def require_no_node(home: Path, purpose: str = "use the chain database directly") -> None:
    """Refuse (one line, exit 1) while a node holds this home: for ``chain init``/``chain verify``.

    ``purpose`` completes "stop it first (Ctrl-C) to …", e.g. "verify the chain".
    """
    from ledger.errors import NodeRunning
    from ledger.node.record import find_running_node

    record = find_running_node(home)
    if record is not None:
        raise NodeRunning(
            f"a node is running (pid {record.pid}, address {record.address}): "
            f"stop it first (Ctrl-C) to {purpose}"
        )


__all__ = ["Backend", "DirectBackend", "open_backend", "parse_tx_id", "require_no_node"]
