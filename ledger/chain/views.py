"""JSON-ready views of ledger objects: what ``--json`` prints and what the node's API returns.

One set of views for both, so a command prints the same whether it opened the database itself
or asked a running node.
"""

from __future__ import annotations

from typing import Any

from ledger.consensus.blocks import Block
from ledger.consensus.evidence import Evidence
from ledger.consensus.state import Account, get_validator_status
from ledger.params import Params
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


def account_view(address: str, account: Account, pending: int, params: Params) -> dict[str, Any]:
    return {
        "address": address,
        "balance": account.balance,
        "bonded": account.bonded,
        "unbonding": [
            {"amount": e.amount, "release_height": e.release_height} for e in account.unbonding
        ],
        "nonce": account.nonce,
        "pending": pending,
        "next_nonce": account.nonce + pending,
        "status": get_validator_status(account, params),
        "missed": account.missed,
        "slashed": account.slashed,
    }
