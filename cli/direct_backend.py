"""The chain backend that opens the database in this process (no node running)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.chain import views
from ledger.chain.facade import Chain
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction
from ledger.errors import NotFound


def parse_tx_id(text: str) -> bytes:
    """A tx id given on the command line: exactly 64 hex digits."""
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

    def history(self, address: str, limit: int, before: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        return [views.history_view(entry) for entry in self.chain.history(address, limit, before)]

    def mempool(self, limit: int) -> dict[str, Any]:
        return views.mempool_view(self.chain.pending_txs(limit))

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
