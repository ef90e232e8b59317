"""The forger: pending transactions in, the next block (or the reason there is none) out.

It uses the state transition's own steps (``begin_block``, ``apply_tx``,
``compute_participants``, ``finish_block``) so a forged block is valid by construction, and
``verify`` re-checks it with ``apply_block``. It does no I/O: reads go through ``base_get``
and the caller commits what it returns in one atomic batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ledger import lottery, statehash
from ledger.blocks import Block, BlockHeader, compute_tx_root
from ledger.errors import LedgerError
from ledger.muhash import MuHash3072
from ledger.params import Params
from ledger.state import WorkingState, is_eligible_validator
from ledger.transactions import BPM, Transaction, TxId, validate_transaction
from ledger.transition import NO_PARTICIPANTS_REASON, apply_tx, begin_block, compute_participants, finish_block

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

    The last slot of a block is kept for a proposal while it has none: otherwise
    ``max_block_txs`` transfers that arrived before every proposal would fill each block and no
    block could ever be forged. A sender whose tx is held back this way waits whole (its later
    txs stay pending too, so their nonces still follow), and nothing held back is evicted.
    """
    height = parent.height + 1
    parent_state = WorkingState(base_get)
    working = WorkingState(base_get)
    begin_block(working, height)
    included: list[Pending] = []
    evicted: list[tuple[int, Transaction, str]] = []
    waiting: set[str] = set()
    has_proposal = False
    for seq, tx in pending:
        if len(included) >= params.max_block_txs:
            break
        try:
            sender = tx.sender
            if sender in waiting:
                continue
            proposes = tx.kind == BPM and is_eligible_validator(parent_state.account(sender), params)
            if not has_proposal and not proposes and len(included) >= params.max_block_txs - 1:
                waiting.add(sender)
                continue
            if tx.tx_id not in verified:
                validate_transaction(tx, params)
            apply_tx(working, tx, height, params)
        except LedgerError as exc:
            evicted.append((seq, tx, str(exc)))
            continue
        included.append((seq, tx))
        has_proposal = has_proposal or proposes
    txs = tuple(tx for _, tx in included)
    participants = compute_participants(parent_state, txs, params)
    if not participants:
        return Candidate(block=None, reason=NO_PARTICIPANTS_REASON, evicted=evicted)
    seed = lottery.compute_seed(parent.hash, height)
    winner = lottery.draw(seed, dict(participants))
    finish_block(working, winner, params)
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
