"""What the chain facade answers, as typed values: an account, a validator row, the chain's
status, where a tx is.

Callers in Python get attributes and types, not string keys; :mod:`ledger.chain.views` turns
each into the JSON that ``--json`` prints and the node's API returns, and the CLI's renderer
turns that into text. (A forged block and a verify report live with the code that makes them:
:class:`ledger.chain.facade.ForgeResult`, :class:`ledger.chain.verify.VerifyReport`.)
"""

from __future__ import annotations

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
    """One account with bonded stake, and how the lottery has treated it."""

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


__all__ = ["AccountInfo", "ChainStatus", "TxStatus", "ValidatorRow"]
