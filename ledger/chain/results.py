"""What the chain facade answers, as typed values: an account, a validator row, the chain's
status, where a tx is.

Callers in Python get attributes and types, not string keys; :mod:`ledger.chain.views` turns
each into the JSON that ``--json`` prints and the node's API returns, and the CLI's renderer
turns that into text. (A forged block and a verify report live with the code that makes them:
:class:`ledger.chain.facade.ForgeResult`, :class:`ledger.chain.verify.VerifyReport`.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ledger.consensus.state import Totals, Unbonding
from ledger.consensus.transactions import Transaction
from ledger.params import Params

@dataclass(frozen=True)
class AccountInfo:
    """One account as of the tip, with what the mempool holds for it."""

    address: str
    balance: int
    bonded: int
    unbonding: tuple[Unbonding, ...]
    nonce: int
    """Txs the chain has applied from this account."""
    pending: int
    """Its txs waiting in the mempool."""
    status: str
    missed: int
    slashed: int

    @property
    def next_nonce(self) -> int:
        """The nonce its next tx must carry: after the applied and the pending ones."""
        return self.nonce + self.pending


@dataclass(frozen=True)
class ValidatorRow:
    """One validator (bonded, or with a validator history), and how the lottery has treated it."""

    address: str
    bonded: int
    eligible: bool
    status: str
    missed: int
    slashed: int
    share: float
    """Of all bonded stake."""
    expected_share: float
    """Of the eligible stake: its chance of being drawn first."""
    blocks_won: int
    actual_share: float
    """Of all blocks forged since genesis."""


@dataclass(frozen=True)
class ChainStatus:
    """The tip, the supply by kind, and the next block's seed."""

    chain_id: str
    height: int
    tip: bytes
    timestamp: int
    state_root: bytes
    mempool: int
    validators: int
    eligible_validators: int
    totals: Totals
    evidence_pending: int
    next_seed: bytes
    params: Params


@dataclass(frozen=True)
class TxStatus:
    """Where a tx is: pending, included (height, index, block hash) or evicted (height, reason)."""

    status: Literal["pending", "included", "evicted"]
    tx: Transaction
    height: int | None = None
    index: int | None = None
    block_hash: bytes | None = None
    reason: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One tx an address sent or received (or its genesis funding), as ``chain history`` lists it."""

    tx_id: bytes | None
    """None only for the genesis entry (height 0), which no tx made."""
    height: int | None
    """None while pending."""
    index: int | None
    """Position among the block's txs; None while pending."""
    kind: str
    """A tx kind, or ``genesis``."""
    direction: Literal["sent", "received"]
    counterparty: str | None
    """The other side of a transfer; None for every other kind."""
    amount: int | None
    """Tokens moved (transfer, stake, unstake, genesis); None for bpm and unjail."""
    status: Literal["pending", "included"]


_CURSOR = re.compile(r"([0-9]+)(?::([0-9]+))?")


def parse_history_cursor(text: str) -> tuple[int, int]:
    """``HEIGHT`` or ``HEIGHT:INDEX`` → the (height, index) a history page starts below: the
    next page is every included entry before that position. ``HEIGHT`` alone means (HEIGHT, 0),
    everything below that height. Raises ValueError saying what a cursor looks like."""
    found = _CURSOR.fullmatch(text) if len(text) <= 30 else None
    height, index = (int(found[1]), int(found[2] or 0)) if found else (-1, -1)
    if not (0 <= height < 2**63 and 0 <= index < 2**32):
        raise ValueError(f"{text[:40]!r} is not a history position: give HEIGHT or HEIGHT:INDEX, as the last page's hint says")
    return height, index


@dataclass(frozen=True)
class PendingTx:
    """One tx waiting in the mempool, in arrival order."""

    tx_id: bytes
    kind: str
    sender: str
    nonce: int
    size: int
    """Bytes of its canonical encoding."""


@dataclass(frozen=True)
class MempoolInfo:
    """The pool's totals, and the first ``len(txs)`` of its txs in arrival order."""

    count: int
    bytes: int
    txs: tuple[PendingTx, ...]


__all__ = ["AccountInfo", "ChainStatus", "HistoryEntry", "MempoolInfo", "PendingTx", "TxStatus", "ValidatorRow",
           "parse_history_cursor"]
