"""The forger: pending transactions in, the next block (or the reason there is none) out.

It uses the state transition's own steps (``release_matured_unbonding``, ``apply_tx``,
``record_liveness``, ``apply_evidence``, ``pay_block_reward``) and the lottery's
``pick_validator``, so a forged block is valid by construction, and
``verify`` re-checks it with ``apply_block``. It does no I/O: reads go through ``base_get``
and the caller commits what it returns in one atomic batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ledger.consensus import lottery, state, statehash
from ledger.consensus.blocks import Block, BlockHeader, compute_evidence_root, compute_tx_root
from ledger.consensus.evidence import Evidence
from ledger.consensus.fork import (
    NO_PROPOSER_REASON,
    apply_evidence,
    apply_tx,
    check_proposal,
    next_seed,
    pay_block_reward,
    record_liveness,
    release_matured_unbonding,
)
from ledger.consensus.state import PrefixReader, WorkingState
from ledger.consensus.transactions import Bpm, Transaction, TxId, validate_transaction
from ledger.crypto import ecvrf
from ledger.crypto.address import Address
from ledger.crypto.muhash import MuHash3072
from ledger.errors import Equivocation, LedgerError
from ledger.params import Params

Pending = tuple[int, Transaction]
"""A mempool entry: arrival sequence number and tx."""

PendingEvidence = tuple[bytes, Evidence]
"""A pending evidence entry: its mempool key and the evidence."""


@dataclass
class Candidate:
    """What forging produced: a block to commit (or ``None`` and why), and what to evict."""

    block: Block | None
    reason: str | None = None
    writes: dict[bytes, bytes | None] | None = None
    muhash: MuHash3072 | None = None
    included: list[Pending] = field(default_factory=list)
    evicted: list[tuple[int, Transaction, str]] = field(default_factory=list)
    included_evidence: list[PendingEvidence] = field(default_factory=list)
    evicted_evidence: list[tuple[bytes, Evidence, str]] = field(default_factory=list)


def _first_proposal(
    pending: Iterator[Pending], scanned: list[Pending], weights: dict[Address, int], height: int, params: Params
) -> tuple[str | None, int]:
    """The first eligible validator whose proposal for ``height`` fits in a block with its earlier
    pending txs, and how many of its txs (the proposal included) that takes. Reads ``pending``
    only as far as that proposal, keeping what it read in ``scanned`` for the main pass."""
    seen: dict[str, int] = {}
    for item in pending:
        scanned.append(item)
        tx = item[1]
        try:
            sender = tx.sender
        except LedgerError:
            continue  # undecodable key: the main pass evicts it
        seen[sender] = seen.get(sender, 0) + 1
        if not isinstance(tx, Bpm) or tx.height != height or seen[sender] > params.max_block_txs:
            continue
        if sender in weights:
            return sender, seen[sender]
    return None, 0


def build_block(
    base_get: Callable[[bytes], bytes | None],
    base_items: PrefixReader,
    parent: BlockHeader,
    muhash: MuHash3072,
    params: Params,
    pending: Iterable[Pending],
    timestamp: int,
    verified: set[TxId] | frozenset[TxId] = frozenset(),
    evidence: Iterable[PendingEvidence] = (),
) -> Candidate:
    """Build the block after ``parent`` from pending txs in arrival order and pending evidence.

    Each tx is applied in turn; one that no longer applies (an expired proposal, a spent
    balance…) is evicted with its reason, never silently dropped. Txs this process already
    validated at admission (``verified``: stateless rules, signature and, for proposals, the VRF
    proof at this height's seed) are not validated again. With no proposal from an eligible
    validator there is no block, and the reason says so.

    Room is kept for one proposal: the first eligible validator's proposal in arrival order,
    with that validator's earlier pending txs (its nonces must follow), is reserved before the
    block fills. Otherwise ``max_block_txs`` txs that arrived before every proposal would fill
    every block and forging would stop for good. A sender held back for room waits whole (its
    later txs too, so nonces still follow), and nothing held back is evicted.
    """
    height = parent.height + 1
    seed = next_seed(parent)
    weights = state.get_eligible_weights(WorkingState(base_get, base_items), params)
    working = WorkingState(base_get, base_items)
    release_matured_unbonding(working, height)
    remaining = iter(pending)
    scanned: list[Pending] = []
    proposer, reserved = _first_proposal(remaining, scanned, weights, height, params)
    included: list[Pending] = []
    evicted: list[tuple[int, Transaction, str]] = []
    waiting: set[str] = set()
    outputs: dict[Address, bytes] = {}
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
            output = None
            if isinstance(tx, Bpm):
                if sender in outputs:
                    raise Equivocation(f"a second proposal from {sender} for height {tx.height}: that is equivocation")
                if tx.height == height:  # otherwise apply_tx refuses it as expired, naming the heights
                    output = (ecvrf.proof_to_hash(tx.vrf_proof) if tx.tx_id in verified
                              else check_proposal(tx, height, seed, params))
            apply_tx(working, tx, height, params)
            if output is not None:
                outputs[sender] = output
        except LedgerError as exc:
            evicted.append((seq, tx, str(exc)))
            continue
        included.append((seq, tx))
    if not any(address in weights for address in outputs):
        return Candidate(block=None, reason=NO_PROPOSER_REASON, evicted=evicted)
    winner, trace = lottery.pick_validator(seed, weights, outputs)
    record_liveness(working, trace, outputs, params)
    included_evidence: list[PendingEvidence] = []
    evicted_evidence: list[tuple[bytes, Evidence, str]] = []
    for key, item in evidence:
        try:
            apply_evidence(working, item, height, winner, params)
        except LedgerError as exc:
            evicted_evidence.append((key, item, str(exc)))
            continue
        included_evidence.append((key, item))
    pay_block_reward(working, winner, params)
    originals, writes = working.changes()
    updated = statehash.apply_changes(muhash, originals, writes)
    txs = tuple(tx for _, tx in included)
    header = BlockHeader(
        height=height,
        prev_hash=parent.hash,
        timestamp=max(timestamp, parent.timestamp),
        validator=winner,
        seed=seed,
        vrf_output=outputs[winner],
        tx_root=compute_tx_root([tx.tx_id for tx in txs]),
        evidence_root=compute_evidence_root([item.evidence_id for _, item in included_evidence]),
        state_root=updated.digest(),
    )
    block = Block(header=header, txs=txs, evidence=tuple(item for _, item in included_evidence), trace=tuple(trace))
    return Candidate(
        block=block, writes=writes, muhash=updated, included=included, evicted=evicted,
        included_evidence=included_evidence, evicted_evidence=evicted_evidence,
    )
