"""The state transition function: ``apply_tx``, ``apply_block`` and ``state_transition``.

Pure logic over a :class:`ledger.consensus.state.WorkingState` — no I/O, no clock, no randomness — so the
forger, ``verify`` and any future consensus engine compute exactly the same thing. Each rule is
a flat ``if …: raise`` that names the value and the rule it broke.

Order inside a block: matured unbonding entries are released, then the transactions apply in
order, then the validator receives the block reward. The lottery's participants are the
distinct senders of the block's ``bpm`` transactions whose bonded stake *in the parent state*
is at least ``min_stake``; releasing unbonding entries never changes bonded stake, so reading
them after the release is the same as reading the parent.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ledger.consensus import lottery
from ledger.consensus import state
from ledger.consensus import statehash
from ledger.consensus.blocks import Block, BlockHeader, Participants, compute_tx_root
from ledger.crypto.address import Address
from ledger.errors import InvalidBlock, LedgerError, NonceMismatch
from ledger.crypto.muhash import MuHash3072
from ledger.params import Params
from ledger.consensus.state import WorkingState
from ledger.consensus.transactions import (
    Bpm,
    Stake,
    Transaction,
    Transfer,
    Unstake,
    check_stateless,
    verify_signature,
)

NO_PARTICIPANTS_REASON = "no bpm proposal from a validator with at least min_stake bonded"


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
            state.begin_unbonding(view, sender, amount, height + params.unbonding_blocks)
        case Bpm():
            pass  # a reading is data; its weight in the lottery comes from bonded stake
    state.increment_nonce(view, sender)


def release_matured_unbonding(view: WorkingState, height: int) -> None:
    """Start of every block: unbonding entries that reach ``height`` become liquid again."""
    state.release_matured(view, height)


def compute_participants(view: WorkingState, txs: Sequence[Transaction], params: Params) -> Participants:
    """Distinct ``bpm`` senders bonded at least ``min_stake``, with that stake, by address."""
    seen: dict[Address, int] = {}
    for tx in txs:
        if not isinstance(tx, Bpm) or tx.sender in seen:
            continue
        account = state.get_account(view, tx.sender)
        if state.is_eligible_validator(account, params):
            seen[tx.sender] = account.bonded
    return tuple(sorted(seen.items()))


def pay_block_reward(view: WorkingState, validator: Address, params: Params) -> None:
    """End of every block: the block reward, the only new supply after genesis."""
    if params.block_reward:
        state.mint(view, validator, params.block_reward)


def validate_header(header: BlockHeader, parent: BlockHeader, params: Params) -> None:
    if header.height != parent.height + 1:
        raise InvalidBlock(f"block height {header.height} does not follow parent height {parent.height}")
    if header.prev_hash != parent.hash:
        raise InvalidBlock(f"block {header.height} prev_hash does not match the parent's hash")
    if header.timestamp < parent.timestamp:
        raise InvalidBlock(f"block {header.height} timestamp is earlier than its parent's")
    expected_seed = lottery.compute_seed(parent.hash, header.height)
    if header.seed != expected_seed:
        raise InvalidBlock(f"block {header.height} lottery seed is not compute_seed(prev_hash, height)")


def apply_block(
    view: WorkingState,
    block: Block,
    parent: BlockHeader,
    params: Params,
    *,
    verify_signatures: bool = True,
) -> None:
    """Check a block against its parent and apply it (everything but the state root)."""
    header = block.header
    validate_header(header, parent, params)
    if len(block.txs) > params.max_block_txs:
        raise InvalidBlock(f"block {header.height} has {len(block.txs)} txs, above max_block_txs {params.max_block_txs}")
    if header.tx_root != compute_tx_root([tx.tx_id for tx in block.txs]):
        raise InvalidBlock(f"block {header.height} tx_root does not match its transactions")
    if len({tx.tx_id for tx in block.txs}) != len(block.txs):
        raise InvalidBlock(f"block {header.height} contains the same transaction twice")
    release_matured_unbonding(view, header.height)
    participants = compute_participants(view, block.txs, params)
    if block.participants != participants:
        raise InvalidBlock(f"block {header.height} lists lottery participants that differ from its bpm txs")
    if not participants:
        raise InvalidBlock(f"block {header.height} has no lottery participants: {NO_PARTICIPANTS_REASON}")
    winner = lottery.draw(header.seed, dict(participants))
    if header.validator != winner:
        raise InvalidBlock(f"block {header.height} validator {header.validator} is not the lottery winner {winner}")
    for index, tx in enumerate(block.txs):
        try:
            check_stateless(tx, params)
            if verify_signatures:
                verify_signature(tx)
            apply_tx(view, tx, header.height, params)
        except LedgerError as exc:
            raise InvalidBlock(f"block {header.height} tx {index} ({tx.id_hex}): {exc}") from None
    pay_block_reward(view, winner, params)


def state_transition(
    base_get: Callable[[bytes], bytes | None],
    muhash: MuHash3072,
    block: Block,
    parent: BlockHeader,
    params: Params,
    *,
    verify_signatures: bool = True,
) -> tuple[dict[bytes, bytes | None], MuHash3072]:
    """Apply ``block`` over the parent state and check its state root.

    Returns the state writes to commit and the new state accumulator; raises
    :class:`InvalidBlock` and leaves the base untouched if anything is wrong.
    """
    working = WorkingState(base_get)
    apply_block(working, block, parent, params, verify_signatures=verify_signatures)
    originals, writes = working.changes()
    updated = statehash.apply_changes(muhash, originals, writes)
    if updated.digest() != block.header.state_root:
        raise InvalidBlock(f"block {block.height} state_root does not match the state after applying it")
    return writes, updated
