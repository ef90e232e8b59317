"""The forger: pending transactions in, the next block (or the reason there is none) out.

It uses the state transition's own steps (``release_matured_unbonding``, ``apply_tx``,
``compute_participants``, ``pay_block_reward``) so a forged block is valid by construction, and
``verify`` re-checks it with ``apply_block``. It does no I/O: reads go through ``base_get``
and the caller commits what it returns in one atomic batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ledger.consensus import lottery
from ledger.consensus import statehash
from ledger.consensus.blocks import Block, BlockHeader, compute_tx_root
from ledger.errors import LedgerError
from ledger.crypto.muhash import MuHash3072
from ledger.params import Params
from ledger.consensus.state import WorkingState, is_eligible_validator
from ledger.consensus.transactions import Bpm, Transaction, TxId, validate_transaction
from ledger.consensus.fork import NO_PARTICIPANTS_REASON, apply_tx, release_matured_unbonding, compute_participants, pay_block_reward

Pending = tuple[int, Transaction]
"""A mempool entry: arrival sequence number and tx."""


@dataclass
class Candidate:
    """What forging produced: a block to commit (or ``None`` and why), and txs to evict."""

    block: Block | None
    reason: str | None = None
    writes: dict[bytes, bytes | None] | None = None
    muhash: MuHash3072 | None = None
    included: list[Pending] = field(default_factory=list)
    evicted: list[tuple[int, Transaction, str]] = field(default_factory=list)


def _first_proposal(
    pending: Iterator[Pending], scanned: list[Pending], parent_state: WorkingState, params: Params
) -> tuple[str | None, int]:
    """The first eligible validator whose ``bpm`` fits in a block with its earlier pending txs,
    and how many of its txs (the ``bpm`` included) that takes. Reads ``pending`` only as far as
    that proposal, keeping what it read in ``scanned`` for the main pass."""
    seen: dict[str, int] = {}
    for item in pending:
        scanned.append(item)
        tx = item[1]
        try:
            sender = tx.sender
        except LedgerError:
            continue  # undecodable key: the main pass evicts it
        seen[sender] = seen.get(sender, 0) + 1
        if not isinstance(tx, Bpm) or seen[sender] > params.max_block_txs:
            continue
        if is_eligible_validator(parent_state.account(sender), params):
            return sender, seen[sender]
    return None, 0


def build_block(
    base_get: Callable[[bytes], bytes | None],
    parent: BlockHeader,
    muhash: MuHash3072,
    params: Params,
    pending: Iterable[Pending],
    timestamp: int,
    verified: set[TxId] | frozenset[TxId] = frozenset(),
) -> Candidate:
    """Build the block after ``parent`` from pending txs in arrival order.

    Each tx is applied in turn; one that no longer applies is evicted with its reason (never
    silently dropped). Txs this process already validated at admission (``verified``: stateless
    rules and signature, under the same parameters) are not validated again. With no eligible
    BPM proposal there is no block, and the reason says so.

    Room is kept for one proposal: the first eligible validator's ``bpm`` in arrival order,
    with that validator's earlier pending txs (its nonces must follow), is reserved before the
    block fills. Otherwise ``max_block_txs`` txs that arrived before every proposal — anyone's,
    even free ``bpm`` txs from unfunded keys — would fill every block and forging would stop
    for good. A sender held back for room waits whole (its later txs too, so nonces still
    follow), and nothing held back is evicted.
    """
    height = parent.height + 1
    parent_state = WorkingState(base_get)
    working = WorkingState(base_get)
    release_matured_unbonding(working, height)
    remaining = iter(pending)
    scanned: list[Pending] = []
    proposer, reserved = _first_proposal(remaining, scanned, parent_state, params)
    included: list[Pending] = []
    evicted: list[tuple[int, Transaction, str]] = []
    waiting: set[str] = set()
    for seq, tx in itertools.chain(scanned, remaining):
        if len(included) >= params.max_block_txs:
            break
        try:
            sender = tx.sender
            if sender in waiting:
                continue
            if sender == proposer and reserved > 0:
                reserved -= 1  # part of the reservation: it takes its own slot
            elif len(included) + reserved >= params.max_block_txs:
                waiting.add(sender)
                continue
            if tx.tx_id not in verified:
                validate_transaction(tx, params)
            apply_tx(working, tx, height, params)
        except LedgerError as exc:
            evicted.append((seq, tx, str(exc)))
            continue
        included.append((seq, tx))
    txs = tuple(tx for _, tx in included)
    participants = compute_participants(parent_state, txs, params)
    if not participants:
        return Candidate(block=None, reason=NO_PARTICIPANTS_REASON, evicted=evicted)
    seed = lottery.compute_seed(parent.hash, height)
    winner = lottery.draw(seed, dict(participants))
    pay_block_reward(working, winner, params)
    originals, writes = working.changes()
    updated = statehash.apply_changes(muhash, originals, writes)
    header = BlockHeader(
        height=height,
        prev_hash=parent.hash,
        timestamp=max(timestamp, parent.timestamp),
        validator=winner,
        seed=seed,
        tx_root=compute_tx_root([tx.tx_id for tx in txs]),
        state_root=updated.digest(),
    )
    block = Block(header=header, txs=txs, participants=participants)
    return Candidate(block=block, writes=writes, muhash=updated, included=included, evicted=evicted)
