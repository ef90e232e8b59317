"""The consensus rules as specifications: one test per refusal in ``ledger/consensus/``.

Each test reads as pre-state (a chain built in memory, or a handcrafted state), the block or tx,
and the expected specific error or post-state. A refused block raises :class:`InvalidBlock`; when
the rule that broke is a tx or evidence rule, the specific error is the block error's context
(``raise … from None`` keeps it there), and :func:`refused` checks its exact type.
``.ci/raise_coverage.py`` fails CI when a ``raise`` of these errors in ``ledger/consensus/`` is
not reached by the suite, so a new rule arrives with its test.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import pytest

from ledger import encoding
from ledger.chain.facade import Chain
from ledger.consensus import lottery, state, statehash
from ledger.consensus.blocks import Block, BlockHeader, compute_evidence_root, compute_tx_root
from ledger.consensus.evidence import Evidence, check_evidence, check_evidence_form, make_evidence
from ledger.consensus.fork import apply_block, apply_evidence, apply_tx, check_proposal, next_seed, state_transition
from ledger.consensus.genesis import GenesisConfig, check_allocations
from ledger.consensus.state import Account, DictState, WorkingState
from ledger.consensus.transactions import (
    Bpm,
    Transaction,
    check_stateless,
    make_transaction,
    sign_transaction,
)
from ledger.errors import (
    BalanceOverflow,
    DuplicateEvidence,
    EvidenceMismatch,
    EvidenceTooOld,
    InsufficientBalance,
    InvalidBlock,
    InvalidEvidence,
    InvalidGenesis,
    InvalidProposal,
    InvalidSignature,
    InvalidTransaction,
    LedgerError,
    LotteryError,
    NonceMismatch,
    ValidatorTombstoned,
    WrongChain,
)
from ledger.params import Params
from ledger.storage import schema
from ledger.storage.store import MemoryStore
from tests.ledgerkit import Key, make_config, make_key, make_proposal, make_tx, propose

V = make_key("spec-v")
"""The validator whose misbehaviour the tests punish."""
W = make_key("spec-w")
"""An honest validator: it proposes every block and includes the evidence."""
U = make_key("spec-u")
"""A plain user with liquid tokens and no stake."""

START = 1_000


def new_chain(**params: int) -> Chain:
    """Genesis: V and W bonded 1,000 each, everyone 1,000 liquid, in memory."""
    allocations = {key.address: START for key in (V, W, U)}
    return Chain.initialise(MemoryStore(), make_config(allocations, {V.address: START, W.address: START}, **params))


def pre_state(chain: Chain) -> DictState:
    """The committed state of ``chain``'s tip, as a block over it sees it."""
    start = len(schema.STATE_PREFIX)
    return DictState({key[start:]: value for key, value in chain.store.iterate(schema.STATE_PREFIX)})


def assemble(chain: Chain, txs: Iterable[Transaction], evidence: Iterable[Evidence] = (), **header: object) -> Block:
    """The block an honest forger would make from exactly ``txs`` and ``evidence`` on ``chain``'s
    tip (its roots, seed, draw, winner and state root computed by the rules), then with the header
    fields in ``header`` replaced: a test changes one thing and sees which rule refuses it."""
    txs, evidence = tuple(txs), tuple(evidence)
    parent, params = chain.tip, chain.params
    height, seed = parent.height + 1, next_seed(parent)
    pre = pre_state(chain)
    weights = state.get_eligible_weights(WorkingState(pre.get, pre.items), params)
    outputs: dict[str, bytes] = {}
    for tx in txs:
        if isinstance(tx, Bpm) and tx.sender not in outputs:
            try:
                outputs[tx.sender] = check_proposal(tx, height, seed, params)
            except InvalidProposal:
                pass
    try:
        winner, trace = lottery.pick_validator(seed, weights, outputs)
        vrf_output = outputs[winner]
    except LotteryError:
        winner, trace, vrf_output = W.address, [], bytes(32)
    fields: dict[str, object] = dict(
        height=height, prev_hash=parent.hash, timestamp=parent.timestamp + 1, validator=winner, seed=seed,
        vrf_output=vrf_output, tx_root=compute_tx_root([tx.tx_id for tx in txs]),
        evidence_root=compute_evidence_root([item.evidence_id for item in evidence]), state_root=bytes(32),
    )
    block = Block(BlockHeader(**fields), txs, evidence, tuple(trace))  # type: ignore[arg-type]
    try:
        working = WorkingState(pre.get, pre.items)
        apply_block(working, block, parent, params)
        originals, writes = working.changes()
        fields["state_root"] = statehash.apply_changes(chain._muhash, originals, writes).digest()
    except LedgerError:
        pass  # a block some rule refuses: its state root does not matter
    fields.update(header)
    return Block(BlockHeader(**fields), txs, evidence, tuple(trace))  # type: ignore[arg-type]


def transition(chain: Chain, block: Block) -> dict[bytes, bytes | None]:
    """Run the full state transition of ``block`` over ``chain``'s tip; the writes it would commit."""
    pre = pre_state(chain)
    writes, _ = state_transition(pre.get, pre.items, chain._muhash, block, chain.tip, chain.params)
    return writes


def refused(chain: Chain, block: Block, match: str, cause: type[LedgerError] | None = None) -> InvalidBlock:
    """``block`` is refused with an :class:`InvalidBlock` saying ``match``; ``cause`` is the exact
    type of the rule's own error, when a tx or evidence rule broke."""
    with pytest.raises(InvalidBlock, match=match) as info:
        transition(chain, block)
    if cause is not None:
        assert type(info.value.__context__) is cause, info.value.__context__
    return info.value


def step(chain: Chain, *txs: Transaction, evidence: Iterable[Evidence] = (), proposers: Iterable[Key] = (W,)) -> Block:
    """Submit ``txs``, ``evidence`` and a proposal of each of ``proposers``, then forge one block."""
    for tx in txs:
        chain.submit(tx)
    for item in evidence:
        chain.submit_evidence(item)
    for key in proposers:
        chain.submit(propose(chain, key))
    result = chain.forge(timestamp=chain.tip.timestamp + 1)
    assert result.block is not None, result.reason
    return result.block


def nonce_of(chain: Chain, key: Key) -> int:
    return chain.account(key.address).next_nonce


def equivocation(chain: Chain, key: Key = V) -> Evidence:
    """Two different proposals from ``key`` for the next height, signed but never submitted."""
    height, seed, nonce = chain.height + 1, chain.next_seed, nonce_of(chain, key)
    return make_evidence(make_proposal(key, nonce, height, seed, bpm=70), make_proposal(key, nonce, height, seed, bpm=71))


def account(chain: Chain, key: Key) -> Account:
    return WorkingState(pre_state(chain).get).account(key.address)


# ---- the honest block ------------------------------------------------------------------------


def test_the_honest_block_applies_and_its_root_is_the_forgers():
    chain = new_chain()
    block = assemble(chain, [propose(chain, W)])
    writes = transition(chain, block)
    assert writes
    forged = step(chain)
    assert forged.header.state_root == block.header.state_root


# ---- the header against its parent (fork.validate_header) -------------------------------------


def test_a_height_that_does_not_follow_the_parent_is_refused():
    chain = new_chain()
    refused(chain, assemble(chain, [propose(chain, W)], height=2), "block height 2 does not follow parent height 0")


def test_a_prev_hash_other_than_the_parents_is_refused():
    chain = new_chain()
    refused(chain, assemble(chain, [propose(chain, W)], prev_hash=bytes(32)), "prev_hash does not match")


def test_a_timestamp_earlier_than_the_parents_is_refused():
    chain = new_chain()
    block = assemble(chain, [propose(chain, W)], timestamp=chain.tip.timestamp - 1)
    refused(chain, block, "timestamp is earlier than its parent's")
    # The same second as the parent is fine: clocks are coarse.
    transition(chain, assemble(chain, [propose(chain, W)], timestamp=chain.tip.timestamp))


def test_a_seed_other_than_the_one_the_parent_fixes_is_refused():
    chain = new_chain()
    refused(chain, assemble(chain, [propose(chain, W)], seed=bytes(32)), "seed is not the one its parent fixes")


# ---- the body against the header (fork.apply_block) -------------------------------------------


def test_more_txs_than_max_block_txs_is_refused():
    chain = new_chain(max_block_txs=2)
    txs = [make_tx(U, n, "transfer", to=W.address, amount=1) for n in range(2)] + [propose(chain, W)]
    refused(chain, assemble(chain, txs), "has 3 txs, above max_block_txs 2")


def test_a_tx_root_that_does_not_commit_to_the_txs_is_refused():
    chain = new_chain()
    refused(chain, assemble(chain, [propose(chain, W)], tx_root=compute_tx_root([])), "tx_root does not match")


def test_the_same_tx_twice_is_refused():
    chain = new_chain()
    transfer = make_tx(U, 0, "transfer", to=W.address, amount=1)
    refused(chain, assemble(chain, [transfer, transfer, propose(chain, W)]), "contains the same transaction twice")


def test_an_evidence_root_that_does_not_commit_to_the_evidence_is_refused():
    chain = new_chain()
    block = assemble(chain, [propose(chain, W)], [equivocation(chain)], evidence_root=compute_evidence_root([]))
    refused(chain, block, "evidence_root does not match")


def test_the_same_evidence_twice_in_one_block_is_refused():
    chain = new_chain()
    evidence = equivocation(chain)
    refused(chain, assemble(chain, [propose(chain, W)], [evidence, evidence]), "contains the same evidence twice")


def test_a_block_without_a_proposal_from_an_eligible_validator_has_no_winner():
    chain = new_chain()
    transfer = make_tx(U, 0, "transfer", to=W.address, amount=1)
    refused(chain, assemble(chain, [transfer]), "has no winner: no proposal for this height")
    # U has tokens but no stake: its proposal does not enter the draw either.
    refused(chain, assemble(chain, [propose(chain, U)]), "has no winner")


def test_a_draw_trace_other_than_the_draw_is_refused():
    chain = new_chain()
    block = assemble(chain, [propose(chain, V), propose(chain, W)])
    bad = dataclasses.replace(block, trace=block.trace[::-1] if len(block.trace) > 1 else ())
    refused(chain, bad, "draw trace differs")
    edited = dataclasses.replace(block, trace=(dataclasses.replace(block.trace[0], r=block.trace[0].r + 1),) + block.trace[1:])
    refused(chain, edited, "draw trace differs")


def test_a_validator_other_than_the_lottery_winner_is_refused():
    chain = new_chain()
    block = assemble(chain, [propose(chain, V), propose(chain, W)])
    loser = V.address if block.header.validator == W.address else W.address
    refused(chain, assemble(chain, block.txs, validator=loser), f"validator {loser} is not the lottery winner")


def test_a_vrf_output_other_than_the_winners_is_refused():
    chain = new_chain()
    block = assemble(chain, [propose(chain, V), propose(chain, W)])
    refused(chain, assemble(chain, block.txs, vrf_output=bytes(32)), "vrf_output is not the VRF output of the winner")


def test_a_state_root_other_than_the_state_after_the_block_is_refused():
    chain = new_chain()
    refused(chain, assemble(chain, [propose(chain, W)], state_root=bytes(32)), "state_root does not match")


# ---- proposals in a block (fork.check_proposals, check_proposal) -------------------------------


def test_two_proposals_from_one_validator_in_one_block_are_refused():
    chain = new_chain()
    first = propose(chain, W, bpm=70)
    second = propose(chain, W, bpm=71, nonce=1)
    refused(chain, assemble(chain, [first, second]), f"two proposals from {W.address}: that is equivocation")


def test_a_proposal_for_another_height_is_refused_in_the_block():
    chain = new_chain()
    late = make_proposal(W, 0, 2, chain.next_seed)
    refused(chain, assemble(chain, [propose(chain, V), late]), "is for height 2, not 1")


def test_a_proposal_whose_vrf_proof_does_not_verify_is_refused():
    chain = new_chain()
    wrong_seed = make_proposal(W, 0, 1, bytes(32))  # proof over another seed
    refused(chain, assemble(chain, [propose(chain, V), wrong_seed]), "the VRF proof does not verify")


# ---- txs in a block: the stateless rules (transactions.check_stateless) ------------------------


def unsigned(kind: str, key: Key = U, nonce: int = 0, chain_id: str = "posctl-test", **fields: object) -> Transaction:
    return make_transaction(kind, chain_id=chain_id, public_key=key.public, nonce=nonce, **fields)


def signed(kind: str, key: Key = U, nonce: int = 0, chain_id: str = "posctl-test", **fields: object) -> Transaction:
    return sign_transaction(unsigned(kind, key, nonce, chain_id, **fields), key.private)


STATELESS_CASES = [
    ("wrong chain", signed("transfer", chain_id="other-chain", to=W.address, amount=1), WrongChain,
     "transaction is for chain 'other-chain', this chain is 'posctl-test'"),
    ("negative nonce", signed("transfer", nonce=-1, to=W.address, amount=1), InvalidTransaction,
     "nonce -1 must be an integer in"),
    ("not a curve point", make_transaction("transfer", chain_id="posctl-test", public_key=b"\x02" + bytes(32), nonce=0,
                                           to=W.address, amount=1), InvalidTransaction, "public key"),
    ("amount not whole", signed("stake", amount="5"), InvalidTransaction, "amount must be a whole number of tokens"),
    ("zero amount", signed("unstake", amount=0), InvalidTransaction, "amount 0 is out of range"),
    ("bpm not an integer", signed("bpm", bpm="72", height=1, vrf_proof=bytes(81)), InvalidTransaction,
     "bpm must be an integer"),
    ("recipient not an address", signed("transfer", to="pos1notanaddress", amount=1), InvalidTransaction, "recipient: "),
    ("recipient in uppercase", signed("transfer", to=W.address.upper(), amount=1), InvalidTransaction,
     "recipient address must be written in lowercase"),
    ("bad signature", dataclasses.replace(signed("transfer", to=W.address, amount=1),
                                          signature=signed("transfer", to=W.address, amount=2).signature),
     None, "signature"),
]


@pytest.mark.parametrize("tx, cause, match", [case[1:] for case in STATELESS_CASES], ids=[c[0] for c in STATELESS_CASES])
def test_a_tx_breaking_a_stateless_rule_makes_the_block_invalid(tx, cause, match):
    chain = new_chain()
    if isinstance(tx, Bpm):
        # A proposal's own height and proof are checked first (check_proposals); bpm is checked
        # by the stateless rules, so the proposal here is otherwise good.
        tx = sign_transaction(dataclasses.replace(propose(chain, U), bpm="72", signature=b""), U.private)
        error = refused(chain, assemble(chain, [propose(chain, W), tx]), match)
        assert type(error.__context__) is InvalidTransaction
        return
    error = refused(chain, assemble(chain, [tx, propose(chain, W)]), rf"block 1 tx 0 \({tx.id_hex}\): .*{match}")
    if cause is not None:
        assert type(error.__context__) is cause
    else:
        assert type(error.__context__) is InvalidSignature


def test_a_bpm_out_of_the_chains_range_is_refused():
    params = Params(chain_id="posctl-test", bpm_min=40, bpm_max=200)
    for bpm in (39, 201):
        with pytest.raises(InvalidTransaction, match=f"bpm {bpm} is out of range: this chain accepts 40 to 200"):
            check_stateless(signed("bpm", bpm=bpm, height=1, vrf_proof=bytes(81)), params)
    check_stateless(signed("bpm", bpm=40, height=1, vrf_proof=bytes(81)), params)


def test_an_amount_of_2_to_the_63_is_refused():
    with pytest.raises(InvalidTransaction, match="out of range: use 1 to 2"):
        check_stateless(signed("transfer", to=W.address, amount=2**63), Params(chain_id="posctl-test"))


def test_a_proposal_height_below_1_is_refused_by_the_stateless_rules():
    # In a block, check_proposals refuses it first for its height; admission checks this rule first.
    with pytest.raises(InvalidTransaction, match="proposal height 0 must be an integer in"):
        check_stateless(signed("bpm", bpm=72, height=0, vrf_proof=bytes(81)), Params(chain_id="posctl-test"))


def test_a_tx_of_no_known_kind_is_refused():
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Mystery(Transaction):
        KIND = "mystery"

    with pytest.raises(InvalidTransaction, match="unknown transaction kind 'mystery'"):
        check_stateless(Mystery(chain_id="posctl-test", public_key=U.public, nonce=0), Params(chain_id="posctl-test"))
    with pytest.raises(InvalidTransaction, match="unknown transaction kind 'mystery': use one of transfer, stake"):
        make_transaction("mystery", chain_id="posctl-test", public_key=U.public, nonce=0)


def test_a_tx_above_max_tx_bytes_is_refused():
    tx = signed("transfer", to=W.address, amount=1)
    size = len(tx.encode())
    check_stateless(tx, Params(chain_id="posctl-test", max_tx_bytes=size))
    with pytest.raises(InvalidTransaction, match=f"transaction is {size} bytes, above the limit of {size - 1}"):
        check_stateless(tx, Params(chain_id="posctl-test", max_tx_bytes=size - 1))


def test_signing_with_a_key_that_is_not_the_txs_is_refused():
    with pytest.raises(InvalidTransaction, match="the private key does not belong"):
        sign_transaction(unsigned("transfer", key=U, to=W.address, amount=1), V.private)


# ---- txs in a block: the stateful rules (fork.apply_tx, state mutators) ------------------------


def test_a_nonce_that_is_not_the_senders_next_is_refused():
    chain = new_chain()
    gap = make_tx(U, 1, "transfer", to=W.address, amount=1)
    refused(chain, assemble(chain, [gap, propose(chain, W)]), "nonce 1 from .* is not its next nonce 0", NonceMismatch)


@pytest.mark.parametrize("kind, fields, match", [
    ("transfer", {"to": W.address, "amount": START + 1}, f"has {START} liquid tokens, cannot send {START + 1}"),
    ("stake", {"amount": START + 1}, f"has {START} liquid tokens, cannot stake {START + 1}"),
    ("unstake", {"amount": 1}, "has 0 bonded, cannot unstake 1"),
])
def test_spending_more_than_the_sender_has_is_refused(kind, fields, match):
    chain = new_chain()
    tx = make_tx(U, 0, kind, **fields)
    refused(chain, assemble(chain, [tx, propose(chain, W)]), match, InsufficientBalance)


def test_a_proposal_applied_at_another_height_is_refused_as_expired_or_early():
    chain = new_chain()
    view = WorkingState(pre_state(chain).get)
    params = chain.params
    with pytest.raises(InvalidProposal, match="expired: the proposal is for height 1, this block is 2"):
        apply_tx(view, make_proposal(W, 0, 1, chain.next_seed), 2, params)
    with pytest.raises(InvalidProposal, match="the proposal is for height 3, not this block \\(2\\)"):
        apply_tx(view, make_proposal(W, 0, 3, chain.next_seed), 2, params)
    assert view.changes() == ({}, {})


def test_a_transfer_that_would_take_a_balance_to_2_to_the_63_is_refused():
    pre = pre_state(new_chain())
    rich = make_key("spec-rich")
    pre.put(state.make_account_state_key(rich.address), encoding.encode(Account(balance=2**63 - 5).to_dict()))
    view = WorkingState(pre.get)
    with pytest.raises(BalanceOverflow, match="recipient balance would reach 2\\^63"):
        apply_tx(view, make_tx(U, 0, "transfer", to=rich.address, amount=5), 1, Params(chain_id="posctl-test"))
    apply_tx(view, make_tx(U, 0, "transfer", to=rich.address, amount=4), 1, Params(chain_id="posctl-test"))
    assert view.account(rich.address).balance == 2**63 - 1


def test_unjail_of_a_validator_that_is_not_jailed_is_refused():
    chain = new_chain()
    tx = make_tx(V, 0, "unjail")
    refused(chain, assemble(chain, [tx, propose(chain, W)]), "is not jailed: there is nothing to unjail",
            InvalidTransaction)


# ---- state views --------------------------------------------------------------------------


def test_a_state_without_parameters_is_no_chain():
    with pytest.raises(InvalidBlock, match="state holds no chain parameters"):
        WorkingState(lambda key: None).params()


def test_a_view_without_a_prefix_reader_cannot_check_a_block():
    chain = new_chain()
    block = assemble(chain, [propose(chain, W)])
    with pytest.raises(InvalidBlock, match="cannot list validators"):
        apply_block(WorkingState(pre_state(chain).get), block, chain.tip, chain.params)


@pytest.mark.parametrize("status, height, match", [
    (state.ACTIVE, 3, "height 3 is not the next block \\(2\\)"),
    (state.TOMBSTONED, 2, "tombstoned for equivocation: it can never propose again"),
    (state.JAILED, 2, "jailed after missing 100 turns in a row: send an unjail"),
    (state.BELOW_MIN_STAKE, 2, "has 5 bonded, below min_stake 100"),
])
def test_who_may_propose_and_for_which_height(status, height, match):
    params = Params(chain_id="posctl-test")
    with pytest.raises(InvalidProposal, match=match):
        state.check_can_propose(status, 5, params, height, 2)
    state.check_can_propose(state.ACTIVE, 100, params, 2, 2)


# ---- genesis (genesis.GenesisConfig) ------------------------------------------------------


@pytest.mark.parametrize("config, match", [
    (dict(allocations={"pos1nope": 1}), "allocation: "),
    (dict(allocations={U.address: 0}), "allocation of .*: 0 is not a whole amount"),
    (dict(bonds={W.address: 5}), "needs at least one validator bonded with min_stake \\(100\\)"),
    (dict(timestamp="noon"), "must be a whole number of Unix seconds"),
    (dict(timestamp=-1), "is out of range: use Unix seconds"),
    (dict(allocations={U.address: 2**62, V.address: 2**62}), "genesis supply must stay below 2\\^63"),
], ids=["bad address", "zero amount", "no validator", "timestamp type", "timestamp range", "supply"])
def test_a_genesis_config_the_chain_could_not_run_with_is_refused(config, match):
    fields = dict(params=Params(chain_id="posctl-test"), allocations={}, bonds={W.address: 100}, timestamp=0)
    fields.update(config)
    with pytest.raises(InvalidGenesis, match=match):
        GenesisConfig(**fields)


def test_an_account_given_twice_in_genesis_is_refused():
    with pytest.raises(InvalidGenesis, match="bond of .* is given twice"):
        GenesisConfig(bonds={W.address: 100, W.address.upper(): 100})


@pytest.mark.parametrize("data, match", [
    (b"[]", "a genesis file must be a JSON object"),
    (b'{"colour":1}', "genesis has unknown field 'colour'"),
    (b'{"params":[]}', "genesis field 'params' must be an object"),
    (b'{"bonds":[]}', "genesis field 'bonds' must map addresses to amounts"),
    (b'{"bonds": {}}', "genesis is not canonical"),
])
def test_a_genesis_file_that_is_not_a_configuration_is_refused(data, match):
    with pytest.raises(InvalidGenesis, match=match):
        GenesisConfig.decode(data)


@pytest.mark.parametrize("pairs, match", [
    ([(U.address, 5), ("pos1notanaddress", 5)], "allocation: "),
    ([(U.address, 5), (V.address, 0)], "allocation of .*: 0 is not a whole amount"),
    ([(U.address, 2**63)], "is not a whole amount in \\[1, 2\\^63\\)"),
    ([(U.address, True)], "True is not a whole amount"),
])
def test_a_large_genesis_checked_in_parts_refuses_what_the_constructor_refuses(pairs, match):
    """The parallel genesis path (``check_allocations``, one part per worker) gives the
    constructor's refusal for the first bad allocation of its part."""
    with pytest.raises(InvalidGenesis, match=match):
        check_allocations(pairs)
    with pytest.raises(InvalidGenesis, match=match):
        GenesisConfig(allocations=dict(pairs))


# ---- evidence: the form (evidence.make_evidence, check_evidence_form) -------------------------


def test_evidence_is_two_different_proposals():
    chain = new_chain()
    proposal = propose(chain, V)
    with pytest.raises(InvalidEvidence, match="evidence is two bpm proposals"):
        make_evidence(proposal, make_tx(V, 0, "transfer", to=W.address, amount=1))
    with pytest.raises(EvidenceMismatch, match="the two proposals are the same transaction"):
        make_evidence(proposal, proposal)


def evidence_refused(chain: Chain, evidence: Evidence, cause: type[LedgerError], match: str) -> None:
    """Refused in a block (the block error names the rule, its context is ``cause``) and at
    admission (``cause`` itself), and the block without it applies."""
    refused(chain, assemble(chain, [propose(chain, W)], [evidence]), f"evidence 0 \\({evidence.id_hex}\\): .*{match}", cause)
    with pytest.raises(cause, match=match):
        chain.submit_evidence(evidence)
    transition(chain, assemble(chain, [propose(chain, W)]))


def test_evidence_from_two_different_validators_is_refused():
    chain = new_chain()
    a, b = make_proposal(V, 0, 1, chain.next_seed), make_proposal(W, 0, 1, chain.next_seed)
    evidence_refused(chain, make_evidence(a, b), EvidenceMismatch, "come from two different validators")


def test_evidence_for_two_different_heights_is_refused():
    chain = new_chain()
    a, b = make_proposal(V, 0, 1, chain.next_seed), make_proposal(V, 0, 2, chain.next_seed)
    evidence_refused(chain, make_evidence(a, b), EvidenceMismatch, "are for two different heights \\([12] and [12]\\)")


def test_evidence_for_another_chain_is_refused():
    chain = new_chain()
    a = make_proposal(V, 0, 1, chain.next_seed, bpm=70, chain_id="other-chain")
    b = make_proposal(V, 0, 1, chain.next_seed, bpm=71, chain_id="other-chain")
    evidence_refused(chain, make_evidence(a, b), WrongChain, "evidence proposal is for chain 'other-chain'")


def test_evidence_with_a_bad_signature_is_refused():
    chain = new_chain()
    good = equivocation(chain)
    forged = dataclasses.replace(good.second, signature=good.first.signature)  # V never signed this one
    evidence = make_evidence(good.first, forged)
    evidence_refused(chain, evidence, InvalidEvidence, "is not signed by its validator")


# ---- evidence: the state (evidence.check_evidence) and its effect (state.slash_validator) -------


def test_evidence_already_used_is_refused():
    chain = new_chain()
    evidence = equivocation(chain)
    step(chain, evidence=[evidence])
    with pytest.raises(DuplicateEvidence, match="already used in block 1"):
        chain.submit_evidence(evidence)
    refused(chain, assemble(chain, [propose(chain, W)], [evidence]), "was already used in block 1", DuplicateEvidence)


def test_evidence_already_pending_is_refused():
    chain = new_chain()
    evidence = equivocation(chain)
    chain.submit_evidence(evidence)
    with pytest.raises(DuplicateEvidence, match="is already pending"):
        chain.submit_evidence(evidence)


def test_evidence_against_a_tombstoned_validator_is_refused():
    chain = new_chain()
    height, seed = chain.height + 1, chain.next_seed
    a, b, c = (make_proposal(V, 0, height, seed, bpm=bpm) for bpm in (70, 71, 72))
    first, second = make_evidence(a, b), make_evidence(a, c)
    # In one block: the first tombstones V, the second finds it tombstoned.
    refused(chain, assemble(chain, [propose(chain, W)], [first, second]), "already tombstoned", ValidatorTombstoned)
    step(chain, evidence=[first])
    assert account(chain, V).tombstoned
    evidence_refused(chain, second, ValidatorTombstoned, f"{V.address} is already tombstoned")


def test_a_tombstoned_validator_can_never_unjail():
    chain = new_chain()
    step(chain, evidence=[equivocation(chain)])
    tx = make_tx(V, nonce_of(chain, V), "unjail")
    refused(chain, assemble(chain, [tx, propose(chain, W)]), "is tombstoned for equivocation and can never be unjailed",
            InvalidTransaction)


def test_slashing_takes_the_fraction_of_bonded_stake_pays_the_reporter_and_burns_the_rest():
    chain = new_chain(unbonding_blocks=5)
    evidence = equivocation(chain)  # V equivocates at height 1
    block = step(chain, evidence=[evidence])
    assert block.header.validator == W.address and block.evidence == (evidence,)
    slashed = START * 500 // 10_000  # 50
    reward = slashed * 1000 // 10_000  # 5
    v = account(chain, V)
    assert (v.bonded, v.tombstoned, v.jailed, v.slashed) == (0, True, False, slashed)
    assert v.unbonding == (state.Unbonding(START - slashed, 1 + 5),)  # the rest starts unbonding
    assert account(chain, W).balance == START + reward + 10  # whistleblower share and block reward
    totals = chain.totals()
    assert totals.burned == slashed - reward
    assert totals.supply == totals.issued - totals.burned == 3 * START + 2 * START + 10 - (slashed - reward)
    # V is never drawn again.
    assert V.address not in state.get_eligible_weights(WorkingState(pre_state(chain).get, pre_state(chain).items),
                                                         chain.params)


def test_unbonding_begun_before_the_infraction_is_not_slashed_and_begun_at_or_after_it_is():
    chain = new_chain(unbonding_blocks=5)
    step(chain, make_tx(V, 0, "unstake", amount=100))  # block 1: begun before the infraction
    evidence = equivocation(chain)  # V signs two proposals for height 2
    step(chain, make_tx(V, 1, "unstake", amount=200))  # block 2: begun at the infraction height
    step(chain, make_tx(V, 2, "unstake", amount=300))  # block 3: begun after it
    step(chain, evidence=[evidence])  # block 4
    bonded = START - 600
    cut = bonded * 5 // 100 + 200 * 5 // 100 + 300 * 5 // 100  # 20 + 10 + 15
    v = account(chain, V)
    assert v.slashed == cut == 45
    assert v.unbonding == (
        state.Unbonding(100, 1 + 5),  # untouched: it was already leaving
        state.Unbonding(190, 2 + 5),
        state.Unbonding(285, 3 + 5),
        state.Unbonding(bonded - 20, 4 + 5),  # the remaining bond, unbonding from the evidence block
    )
    assert chain.totals().burned == cut - cut * 1000 // 10_000
    chain.verify()


def test_evidence_is_accepted_while_the_stake_unbonded_at_the_infraction_is_still_locked():
    """The window and the lock-up agree (DESIGN.md decision 17): an entry begun at the infraction
    height h is released at the start of block h + unbonding_blocks, so evidence is accepted up to
    block h + unbonding_blocks - 1, where it still slashes that entry, and refused from then on,
    where the entry would have escaped."""
    unbonding = 3
    chain = new_chain(unbonding_blocks=unbonding)
    evidence = equivocation(chain)  # infraction at height 1
    step(chain, make_tx(V, 0, "unstake", amount=200))  # block 1: begun at the infraction, released at 4
    while chain.height < 1 + unbonding - 2:
        step(chain)
    last_chance = assemble(chain, [propose(chain, W)], [evidence])
    assert last_chance.height == 1 + unbonding - 1
    step(chain)
    assert chain.height == 1 + unbonding - 1 and account(chain, V).unbonding == (state.Unbonding(200, 4),)
    refused(chain, assemble(chain, [propose(chain, W)], [evidence]),
            f"the equivocation at height 1 is {unbonding} blocks old at height {unbonding + 1}", EvidenceTooOld)
    with pytest.raises(EvidenceTooOld):
        chain.submit_evidence(evidence)


def test_evidence_in_the_last_block_of_the_window_slashes_the_entry_begun_at_the_infraction():
    unbonding = 3
    chain = new_chain(unbonding_blocks=unbonding)
    evidence = equivocation(chain)
    step(chain, make_tx(V, 0, "unstake", amount=200))
    while chain.height < unbonding - 1:
        step(chain)
    block = step(chain, evidence=[evidence])
    assert block.height == unbonding and block.evidence == (evidence,)
    v = account(chain, V)
    assert v.unbonding[0] == state.Unbonding(190, 1 + unbonding)
    assert v.slashed == 10 + (START - 200) * 5 // 100


def test_check_evidence_alone_refuses_too_old_evidence_with_its_own_error():
    chain = new_chain(unbonding_blocks=3)
    evidence = equivocation(chain)
    view = WorkingState(pre_state(chain).get)
    check_evidence_form(evidence, chain.params)
    check_evidence(view, evidence, 3, chain.params)
    with pytest.raises(EvidenceTooOld):
        check_evidence(view, evidence, 4, chain.params)
    with pytest.raises(EvidenceTooOld):
        apply_evidence(view, evidence, 4, W.address, chain.params)


# ---- liveness and jailing -------------------------------------------------------------------


def jail_v(chain: Chain) -> None:
    """Forge with only W proposing until V, drawn first without a proposal, is jailed."""
    for _ in range(40):
        if account(chain, V).jailed:
            return
        step(chain)
    raise AssertionError("V was never drawn first in 40 blocks")


def test_a_jailed_validator_is_not_drawn():
    chain = new_chain(max_missed=1)
    jail_v(chain)
    pre = pre_state(chain)
    assert V.address not in state.get_eligible_weights(WorkingState(pre.get, pre.items), chain.params)
    # Its proposal alone cannot make a block ...
    refused(chain, assemble(chain, [propose(chain, V)]), "has no winner")
    # ... and with both proposing it is never in the draw.
    for _ in range(8):
        block = step(chain, proposers=(V, W))
        assert block.header.validator == W.address
        assert [entry.address for entry in block.trace] == [W.address]
    # Unjailed, it is drawn again from the next block on.
    step(chain, make_tx(V, nonce_of(chain, V), "unjail"))
    assert not account(chain, V).jailed
    traces = [step(chain, proposers=(V, W)).trace for _ in range(6)]
    assert any(V.address in [entry.address for entry in trace] for trace in traces)


# ---- the chain never stops itself -----------------------------------------------------------


def test_the_last_eligible_validator_cannot_unstake_below_min_stake():
    """Every block needs a proposal from an eligible validator: an unstake that took the last one
    below min_stake stopped the chain for good (its stake, its unbonding and every pending tx
    locked, `chain forge` saying "no block" for ever). It is refused; down to min_stake is fine."""
    chain = new_chain()
    step(chain, make_tx(W, nonce_of(chain, W), "unstake", amount=START - 50))  # W leaves the draw; V is left
    assert not state.is_eligible_validator(account(chain, W), chain.params)
    too_much = make_tx(V, nonce_of(chain, V), "unstake", amount=START - 99)
    refused(chain, assemble(chain, [too_much, propose(chain, V)]), "no other validator eligible: no block could "
            "ever be forged again; unstake at most 900", InvalidTransaction)
    with pytest.raises(InvalidTransaction, match="would leave .* with 99 bonded, below min_stake 100"):
        chain.submit(too_much)  # refused at admission too, so `wallet unstake` says so at once
    step(chain, make_tx(V, nonce_of(chain, V), "unstake", amount=START - 100), proposers=(V,))
    assert account(chain, V).bonded == 100 and state.is_eligible_validator(account(chain, V), chain.params)
    step(chain, proposers=(V,))  # the chain goes on


def test_two_validators_unstaking_in_one_block_cannot_both_leave():
    """Each unstake alone leaves the other eligible; in one block the second would leave none."""
    chain = new_chain()
    both = [make_tx(V, 0, "unstake", amount=START), make_tx(W, 0, "unstake", amount=START)]
    refused(chain, assemble(chain, [*both, propose(chain, W)]), "no other validator eligible", InvalidTransaction)
    transition(chain, assemble(chain, [both[0], propose(chain, W)]))  # either alone is a valid block


def test_the_last_eligible_validator_is_not_jailed_for_a_missed_turn():
    """W wins a block and unstakes out of the draw in it, while V, drawn first, missed its turn:
    jailed at max_missed, V would leave no eligible validator, could never get its unjail into a
    block, and the chain would stop. It is not jailed (its missed turns still count); with W
    still eligible, the same miss jails it."""
    chain = new_chain(max_missed=1)
    for _ in range(40):
        nonce = nonce_of(chain, W)
        block = assemble(chain, [make_tx(W, nonce, "unstake", amount=START), propose(chain, W, nonce=nonce + 1)])
        if block.trace[0].address == V.address:
            break
        step(chain, proposers=(V, W))  # V proposes too, so it misses nothing meanwhile
    else:
        raise AssertionError("V was never drawn first in 40 blocks")
    params, pre = chain.params, pre_state(chain)
    alone = WorkingState(pre.get, pre.items)
    apply_block(alone, block, chain.tip, params)
    assert (alone.account(V.address).jailed, alone.account(V.address).missed) == (False, 1)
    assert state.is_eligible_validator(alone.account(V.address), params)
    with_w = WorkingState(pre.get, pre.items)
    apply_block(with_w, assemble(chain, [propose(chain, W)]), chain.tip, params)
    assert with_w.account(V.address).jailed
