"""Where a command's chain calls go: the database directly, or a running node's API.

LevelDB admits one process. While ``posctl node run`` holds the database, every other command
must go through its HTTP API; otherwise commands open the database themselves. Both backends
return the same JSON-ready views (``ledger.chain.views``), so output is identical either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ledger.chain import views
from ledger.chain.facade import Chain
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction


class Backend(Protocol):
    """The chain operations the CLI needs; every result is a JSON-ready view."""

    def status(self) -> dict[str, Any]: ...
    def block(self, ref: str | None) -> dict[str, Any]: ...
    def blocks_last(self, count: int) -> list[dict[str, Any]]: ...
    def tx(self, tx_id: str) -> dict[str, Any]: ...
    def account(self, address: str) -> dict[str, Any]: ...
    def validators(self) -> list[dict[str, Any]]: ...
    def submit(self, tx: Transaction) -> dict[str, Any]: ...
    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]: ...
    def forge(self) -> dict[str, Any]: ...
    def backup(self, directory: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def parse_tx_id(text: str) -> bytes:
    from ledger.errors import NotFound

    value = text.strip().lower()
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise NotFound(f"{text!r} is not a transaction id: give all 64 hex digits (as --json prints them)")
    return raw


class DirectBackend:
    """Opens the chain database in this process (no node running)."""

    def __init__(self, home: Path) -> None:
        self.chain = Chain.open(home)

    def status(self) -> dict[str, Any]:
        return views.status_view(self.chain.status())

    def block(self, ref: str | None) -> dict[str, Any]:
        block = self.chain.block(self.chain.height) if ref is None else self.chain.block_by_ref(ref)
        return views.block_view(block)

    def blocks_last(self, count: int) -> list[dict[str, Any]]:
        return [views.block_view(block) for block in self.chain.last_blocks(count)]

    def tx(self, tx_id: str) -> dict[str, Any]:
        return views.tx_status_view(self.chain.tx(parse_tx_id(tx_id)))

    def account(self, address: str) -> dict[str, Any]:
        return views.account_view(self.chain.account(address))

    def validators(self) -> list[dict[str, Any]]:
        return [views.validator_view(row) for row in self.chain.validators()]

    def submit(self, tx: Transaction) -> dict[str, Any]:
        tx_id = self.chain.submit(tx)
        return {"tx_id": tx_id.hex(), "tx": views.tx_view(tx)}

    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]:
        evidence_id = self.chain.submit_evidence(evidence)
        return {"evidence_id": evidence_id.hex(), "evidence": views.evidence_view(evidence)}

    def forge(self) -> dict[str, Any]:
        return self.chain.forge().to_view()

    def backup(self, directory: str) -> dict[str, Any]:
        from ledger.chain.archive import backup_chain

        return backup_chain(self.chain, Path(directory))

    def close(self) -> None:
        self.chain.close()


def open_backend(home: Path) -> Backend:
    """A running node's API if one holds this home, else the database directly.

    A node is running when ``$home/node.json`` names a live pid that answers ``GET /node``.
    A record left by a killed node is ignored (and removed when its pid is dead).
    """
    from ledger.node.record import find_running_node

    record = find_running_node(home)
    if record is not None:
        from cli.node_client import NodeBackend

        return NodeBackend(record.url)
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
