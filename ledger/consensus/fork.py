"""The state transition: ``state_transition`` first, then the steps it is made of.

Pure logic over a :class:`ledger.consensus.state.WorkingState` — no I/O, no clock, no randomness — so the
forger, ``verify`` and any future consensus engine compute exactly the same thing. Each rule is
a flat ``if …: raise`` that names the value and the rule it broke.

Order inside a block (DESIGN.md, decisions 15-17):

1. the header follows its parent, and its seed is :func:`next_seed` of the parent;
2. the draw: the eligible validators *of the parent state* (read before anything is applied),
   the seed's fixed order over them, and the first one whose proposal is in the block wins;
   every proposal's VRF proof is checked, and the winner's output is the header's ``vrf_output``;
3. matured unbonding entries are released;
4. the transactions apply in order;
5. liveness: the first-drawn validator, if it did not propose, misses a turn (jailed at
   ``max_missed``); every proposer's count starts again;
6. evidence slashes and tombstones equivocating validators;
7. the validator receives the block reward.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from ledger.consensus import lottery, state, statehash
from ledger.consensus.blocks import Block, BlockHeader, compute_evidence_root, compute_tx_root
from ledger.consensus.evidence import Evidence, check_evidence, check_evidence_form
from ledger.consensus.lottery import TraceEntry
from ledger.consensus.state import PrefixReader, WorkingState
from ledger.consensus.transactions import (
    Bpm,
    Stake,
    Transaction,
    Transfer,
    Unjail,
    Unstake,
    check_stateless,
    verify_signature,
)
from ledger.crypto import ecvrf
from ledger.crypto.address import Address
from ledger.crypto.muhash import MuHash3072
from ledger.errors import InvalidBlock, InvalidProof, InvalidProposal, LedgerError, LotteryError, NonceMismatch
from ledger.params import Params

NO_PROPOSER_REASON = "no proposal for this height from an eligible validator (bonded >= min_stake, not jailed)"


def state_transition(
    base_get: Callable[[bytes], bytes | None],
    base_items: PrefixReader,
    muhash: MuHash3072,
    block: Block,
    parent: BlockHeader,
    params: Params,
    *,
    verify_signatures: bool = True,
    vrf_outputs: Mapping[bytes, bytes] | None = None,
) -> tuple[dict[bytes, bytes | None], MuHash3072]:
    """Apply ``block`` over the parent state and check its state root.

    Returns the state writes to commit and the new state accumulator; raises
    :class:`InvalidBlock` and leaves the base untouched if anything is wrong.
    ``vrf_outputs`` (see :func:`check_proposals`) lets a replay verify VRF proofs elsewhere.
    """
    working = WorkingState(base_get, base_items)
    apply_block(working, block, parent, params, verify_signatures=verify_signatures, vrf_outputs=vrf_outputs)
    originals, writes = working.changes()
    updated = statehash.apply_changes(muhash, originals, writes)
    if updated.digest() != block.header.state_root:
        raise InvalidBlock(f"block {block.height} state_root does not match the state after applying it")
    return writes, updated


def apply_block(
    view: WorkingState,
    block: Block,
    parent: BlockHeader,
    params: Params,
    *,
    verify_signatures: bool = True,
    vrf_outputs: Mapping[bytes, bytes] | None = None,
) -> None:
    """Check a block against its parent and apply it (everything but the state root)."""
    header = block.header
    height = header.height
    validate_header(header, parent)
    if len(block.txs) > params.max_block_txs:
        raise InvalidBlock(f"block {height} has {len(block.txs)} txs, above max_block_txs {params.max_block_txs}")
    if header.tx_root != compute_tx_root([tx.tx_id for tx in block.txs]):
        raise InvalidBlock(f"block {height} tx_root does not match its transactions")
    if len({tx.tx_id for tx in block.txs}) != len(block.txs):
        raise InvalidBlock(f"block {height} contains the same transaction twice")
    if header.evidence_root != compute_evidence_root([item.evidence_id for item in block.evidence]):
        raise InvalidBlock(f"block {height} evidence_root does not match its evidence")
    if len({item.evidence_id for item in block.evidence}) != len(block.evidence):
        raise InvalidBlock(f"block {height} contains the same evidence twice")
    weights = state.get_eligible_weights(view, params)  # the parent state: nothing applied yet
    outputs = check_proposals(block.txs, height, header.seed, params, vrf_outputs)
    try:
        winner, trace = lottery.pick_validator(header.seed, weights, outputs)
    except LotteryError:
        raise InvalidBlock(f"block {height} has no winner: {NO_PROPOSER_REASON}") from None
    if tuple(trace) != block.trace:
        raise InvalidBlock(f"block {height} draw trace differs from the draw its seed and proposals give")
    if header.validator != winner:
        raise InvalidBlock(f"block {height} validator {header.validator} is not the lottery winner {winner}")
    if header.vrf_output != outputs[winner]:
        raise InvalidBlock(f"block {height} vrf_output is not the VRF output of the winner's proposal")
    release_matured_unbonding(view, height)
    for index, tx in enumerate(block.txs):
        try:
            check_stateless(tx, params)
            if verify_signatures:
                verify_signature(tx)
            apply_tx(view, tx, height, params)
        except LedgerError as exc:
            raise InvalidBlock(f"block {height} tx {index} ({tx.id_hex}): {exc}") from None
    record_liveness(view, trace, outputs, params)
    for index, item in enumerate(block.evidence):
        try:
            apply_evidence(view, item, height, winner, params)
        except LedgerError as exc:
            raise InvalidBlock(f"block {height} evidence {index} ({item.id_hex}): {exc}") from None
    pay_block_reward(view, winner, params)


def next_seed(parent: BlockHeader) -> bytes:
    """The seed of the block after ``parent``: nothing its forger chooses enters it."""
    if parent.height == 0:
        return lottery.genesis_seed(parent.hash)
    return lottery.compute_seed(parent.seed, parent.vrf_output)


def validate_header(header: BlockHeader, parent: BlockHeader) -> None:
    if header.height != parent.height + 1:
        raise InvalidBlock(f"block height {header.height} does not follow parent height {parent.height}")
    if header.prev_hash != parent.hash:
        raise InvalidBlock(f"block {header.height} prev_hash does not match the parent's hash")
    if header.timestamp < parent.timestamp:
        raise InvalidBlock(f"block {header.height} timestamp is earlier than its parent's")
    if header.seed != next_seed(parent):
        raise InvalidBlock(f"block {header.height} seed is not the one its parent fixes (next_seed)")


def check_proposal(tx: Bpm, height: int, seed: bytes, params: Params) -> bytes:
    """The VRF output of a proposal for block ``height`` with that height's ``seed``."""
    if tx.height != height:
        raise InvalidProposal(f"proposal {tx.id_hex} is for height {tx.height}, not {height}")
    try:
        return ecvrf.verify(tx.public_key, lottery.vrf_alpha(params.chain_id, height, seed), tx.vrf_proof)
    except (InvalidProof, LedgerError) as exc:
        raise InvalidProposal(f"proposal {tx.id_hex}: the VRF proof does not verify: {exc}") from None


def check_proposals(
    txs: Sequence[Transaction], height: int, seed: bytes, params: Params,
    verified: Mapping[bytes, bytes] | None = None,
) -> dict[Address, bytes]:
    """Each proposer's VRF output; one proposal per validator, each for this height with a good proof.

    ``verified`` maps tx ids to VRF outputs already verified by the caller with this very
    ``seed`` (``validate_header`` has checked it is the one the parent fixes), over
    ``vrf_alpha(chain_id, tx.height, seed)``: a replay checks proofs on other cores ahead of
    the block it applies. A proposal missing from it is verified here."""
    outputs: dict[Address, bytes] = {}
    for tx in txs:
        if not isinstance(tx, Bpm):
            continue
        if tx.sender in outputs:
            raise InvalidBlock(f"block {height} holds two proposals from {tx.sender}: that is equivocation")
        known = verified.get(tx.tx_id) if verified is not None and tx.height == height else None
        if known is not None:
            outputs[tx.sender] = known
            continue
        try:
            outputs[tx.sender] = check_proposal(tx, height, seed, params)
        except InvalidProposal as exc:
            raise InvalidBlock(f"block {height}: {exc}") from None
    return outputs


def apply_tx(view: WorkingState, tx: Transaction, height: int, params: Params) -> None:
    """Apply one transaction in block ``height``; on any error nothing has been written.

    Only the stateful rules live here; the caller has already run the stateless ones
    (:func:`ledger.consensus.transactions.validate_transaction`), as admission and replay both do.
    """
    sender = tx.sender
    account = state.get_account(view, sender)
    if tx.nonce != account.nonce:
        raise NonceMismatch(f"nonce {tx.nonce} from {sender} is not its next nonce {account.nonce}")
    match tx:
        case Transfer(to=to, amount=amount):
            state.transfer(view, sender, to, amount)
        case Stake(amount=amount):
            state.bond(view, sender, amount)
        case Unstake(amount=amount):
            state.unstake(view, sender, amount, height + params.unbonding_blocks, params)
        case Bpm(height=proposal_height):
            if proposal_height < height:
                raise InvalidProposal(f"expired: the proposal is for height {proposal_height}, this block is {height}")
            if proposal_height > height:
                raise InvalidProposal(f"the proposal is for height {proposal_height}, not this block ({height})")
        case Unjail():
            state.unjail(view, sender)
    state.increment_nonce(view, sender)


def release_matured_unbonding(view: WorkingState, height: int) -> None:
    """Start of every block: unbonding entries that reach ``height`` become liquid again."""
    state.release_matured(view, height)


def record_liveness(
    view: WorkingState, trace: Sequence[TraceEntry], proposers: Mapping[Address, object], params: Params
) -> None:
    """The first-drawn validator misses a turn if it did not propose; proposers are live again."""
    first = trace[0]
    if not first.proposed:
        state.record_missed_turn(view, first.address, params)
    for address in sorted(proposers):
        state.record_proposal(view, address)


def apply_evidence(view: WorkingState, evidence: Evidence, height: int, reporter: Address, params: Params) -> state.Slashing:
    """Check ``evidence`` in block ``height`` and slash its validator; ``reporter`` earns the whistleblower share."""
    check_evidence_form(evidence, params)
    check_evidence(view, evidence, height, params)
    view.set_evidence_used(evidence.evidence_id, height)
    return state.slash_validator(view, evidence.validator, evidence.height, height, reporter, params)


def pay_block_reward(view: WorkingState, validator: Address, params: Params) -> None:
    """End of every block: the block reward, the only new supply after genesis."""
    if params.block_reward:
        state.pay_reward(view, validator, params.block_reward)


