"""JSON-ready views of ledger objects: what ``--json`` prints and what the node's API returns.

One set of views for both, so a command prints the same whether it opened the database itself
or asked a running node.
"""

from __future__ import annotations

from typing import Any

from ledger.chain.results import AccountInfo, ChainStatus, HistoryEntry, MempoolInfo, TxStatus, ValidatorRow
from ledger.consensus.blocks import Block
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction


def tx_view(tx: Transaction) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": tx.id_hex,
        "kind": tx.kind,
        "sender": tx.sender,
        "nonce": tx.nonce,
        "chain_id": tx.chain_id,
        "public_key": tx.public_key.hex(),
        "signature": tx.signature.hex(),
    }
    for name in tx.FIELDS:
        value = getattr(tx, name)
        view[name] = value.hex() if isinstance(value, bytes) else value
    return view


def lottery_view(block: Block) -> dict[str, Any]:
    """The draw step by step: each validator drawn, r, its range among the stake not yet drawn,
    whether it had proposed; the first that had is the winner."""
    return {
        "seed": block.header.seed.hex(),
        "eligible_total": block.trace[0].remaining if block.trace else 0,
        "trace": [
            {
                "position": entry.position,
                "address": entry.address,
                "bonded": entry.bonded,
                "r": entry.r,
                "range": [entry.lo, entry.hi],
                "remaining": entry.remaining,
                "odds": entry.bonded / entry.remaining,
                "proposed": entry.proposed,
            }
            for entry in block.trace
        ],
        "winner": block.header.validator or None,
    }


def evidence_view(evidence: Evidence) -> dict[str, Any]:
    return {
        "id": evidence.id_hex,
        "validator": evidence.validator,
        "height": evidence.height,
        "first": tx_view(evidence.first),
        "second": tx_view(evidence.second),
    }


def block_view(block: Block) -> dict[str, Any]:
    header = block.header
    return {
        "height": header.height,
        "hash": header.hash.hex(),
        "prev_hash": header.prev_hash.hex(),
        "timestamp": header.timestamp,
        "validator": header.validator or None,
        "seed": header.seed.hex(),
        "vrf_output": header.vrf_output.hex(),
        "tx_root": header.tx_root.hex(),
        "evidence_root": header.evidence_root.hex(),
        "state_root": header.state_root.hex(),
        "txs": [tx_view(tx) for tx in block.txs],
        "evidence": [evidence_view(item) for item in block.evidence],
        "lottery": lottery_view(block),
    }


def account_view(info: AccountInfo) -> dict[str, Any]:
    return {
        "address": info.address,
        "balance": info.balance,
        "bonded": info.bonded,
        "unbonding": [{"amount": e.amount, "release_height": e.release_height} for e in info.unbonding],
        "nonce": info.nonce,
        "pending": info.pending,
        "next_nonce": info.next_nonce,
        "status": info.status,
        "missed": info.missed,
        "slashed": info.slashed,
    }


def validator_view(row: ValidatorRow) -> dict[str, Any]:
    return {
        "address": row.address,
        "bonded": row.bonded,
        "eligible": row.eligible,
        "status": row.status,
        "missed": row.missed,
        "slashed": row.slashed,
        "share": row.share,
        "expected_share": row.expected_share,
        "blocks_won": row.blocks_won,
        "actual_share": row.actual_share,
    }


def status_view(status: ChainStatus) -> dict[str, Any]:
    totals = status.totals
    return {
        "chain_id": status.chain_id,
        "height": status.height,
        "tip": status.tip.hex(),
        "timestamp": status.timestamp,
        "state_root": status.state_root.hex(),
        "mempool": status.mempool,
        "validators": status.validators,
        "eligible_validators": status.eligible_validators,
        "supply": totals.supply,
        "liquid": totals.liquid,
        "bonded": totals.bonded,
        "unbonding": totals.unbonding,
        "issued": totals.issued,
        "rewards": totals.rewards,
        "burned": totals.burned,
        "evidence_pending": status.evidence_pending,
        "next_seed": status.next_seed.hex(),
        "params": status.params.to_dict(),
    }


def tx_status_view(where: TxStatus) -> dict[str, Any]:
    """Pending: the tx; included: its height, index and block hash; evicted: the height and why."""
    if where.status == "included" and where.block_hash is not None:
        return {"status": "included", "height": where.height, "index": where.index,
                "block_hash": where.block_hash.hex(), "tx": tx_view(where.tx)}
    if where.status == "evicted":
        return {"status": "evicted", "reason": where.reason, "height": where.height, "tx": tx_view(where.tx)}
    return {"status": where.status, "tx": tx_view(where.tx)}


def history_view(entry: HistoryEntry) -> dict[str, Any]:
    """One line of ``chain history`` / ``GET /accounts/{address}/history``; the explorer reads
    exactly these keys."""
    return {
        "tx_id": entry.tx_id.hex() if entry.tx_id is not None else None,
        "height": entry.height,
        "index": entry.index,
        "kind": entry.kind,
        "direction": entry.direction,
        "counterparty": entry.counterparty,
        "amount": entry.amount,
        "status": entry.status,
    }


def mempool_view(info: MempoolInfo) -> dict[str, Any]:
    """``chain mempool`` / ``GET /mempool``: totals, and the txs listed in arrival order."""
    return {
        "count": info.count,
        "bytes": info.bytes,
        "txs": [
            {"id": tx.tx_id.hex(), "kind": tx.kind, "sender": tx.sender, "nonce": tx.nonce, "size": tx.size}
            for tx in info.txs
        ],
    }
