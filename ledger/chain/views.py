"""JSON-ready views of ledger objects: what ``--json`` prints and what the node's API returns.

One set of views for both, so a command prints the same whether it opened the database itself
or asked a running node.
"""

from __future__ import annotations

from typing import Any

from ledger.consensus.blocks import Block
from ledger.consensus.state import Account
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
    total = sum(stake for _, stake in block.participants)
    return {
        "seed": block.header.seed.hex(),
        "participants": [
            {"address": address, "bonded": stake, "odds": stake / total if total else 0.0}
            for address, stake in block.participants
        ],
        "total_bonded": total,
        "winner": block.header.validator or None,
    }


def block_view(block: Block) -> dict[str, Any]:
    header = block.header
    return {
        "height": header.height,
        "hash": header.hash.hex(),
        "prev_hash": header.prev_hash.hex(),
        "timestamp": header.timestamp,
        "validator": header.validator or None,
        "tx_root": header.tx_root.hex(),
        "state_root": header.state_root.hex(),
        "txs": [tx_view(tx) for tx in block.txs],
        "lottery": lottery_view(block),
    }


def account_view(address: str, account: Account, pending: int) -> dict[str, Any]:
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
    }
