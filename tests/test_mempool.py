"""Admission: each rule refuses with its own error, and an acknowledged tx is durably pending."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.errors import (
    DuplicateTransaction,
    InsufficientBalance,
    InvalidSignature,
    InvalidTransaction,
    MempoolFull,
    NonceMismatch,
    WrongChain,
)
from ledger.chain.mempool import decode_submission
from tests.ledgerkit import make_chain, make_key, make_proposal, make_tx, propose

A, B, V = make_key("a"), make_key("b"), make_key("v")


@pytest.fixture
def chain(tmp_path):
    c = make_chain(tmp_path / "home", {A.address: 100, B.address: 100}, {V.address: 500}, max_mempool_txs=5)
    yield c
    c.close()


def test_undecodable_submission(chain):
    with pytest.raises(InvalidTransaction, match="undecodable"):
        decode_submission(b"{not json")


def test_wrong_chain_id(chain):
    with pytest.raises(WrongChain):
        chain.submit(make_proposal(A, 0, 1, chain.next_seed, 70, chain_id="other-chain"))


def test_bad_signature(chain):
    tx = make_tx(A, 0, "stake", amount=10)
    with pytest.raises(InvalidSignature):
        chain.submit(dataclasses.replace(tx, signature=make_tx(B, 0, "stake", amount=10).signature))


def test_nonce_too_low_already_used_and_gap(chain):
    chain.submit(propose(chain, A, 70, nonce=0))
    with pytest.raises(NonceMismatch, match="already used by a pending tx"):
        chain.submit(make_tx(A, 0, "stake", amount=1))
    with pytest.raises(NonceMismatch, match="leaves a gap: the next nonce .* is 1"):
        chain.submit(make_tx(A, 2, "stake", amount=1))
    chain.submit(propose(chain, V, 70, nonce=0))
    chain.forge()
    with pytest.raises(NonceMismatch, match="too low"):
        chain.submit(propose(chain, A, 99, nonce=0))


def test_spendable_balance_counts_pending_txs(chain):
    chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=60))
    with pytest.raises(InsufficientBalance, match="spendable balance .* 40 \\(100 liquid, 60 in pending"):
        chain.submit(make_tx(A, 1, "stake", amount=41))
    chain.submit(make_tx(A, 1, "stake", amount=40))
    with pytest.raises(InsufficientBalance, match="bonded stake"):
        chain.submit(make_tx(V, 0, "unstake", amount=501))
    chain.submit(make_tx(V, 0, "unstake", amount=300))
    with pytest.raises(InsufficientBalance, match="pending unstakes"):
        chain.submit(make_tx(V, 1, "unstake", amount=201))


def test_duplicates_pending_and_included(chain):
    tx = propose(chain, V, 70, nonce=0)
    chain.submit(tx)
    with pytest.raises(DuplicateTransaction, match="already pending"):
        chain.submit(tx)
    chain.forge()
    with pytest.raises(DuplicateTransaction, match="already in a block"):
        chain.submit(tx)


def test_mempool_full(chain):
    for nonce in range(5):
        chain.submit(make_tx(A, nonce, "stake", amount=1))
    with pytest.raises(MempoolFull, match="limit"):
        chain.submit(propose(chain, B, 70, nonce=0))
    # A full pool still takes one proposal per eligible validator, so a block can drain it.
    chain.submit(propose(chain, V, 70, nonce=0))
    with pytest.raises(MempoolFull):
        chain.submit(propose(chain, V, 71, nonce=1))
    with pytest.raises(MempoolFull):
        chain.submit(make_tx(V, 1, "unstake", amount=1))
    assert chain.forge().block is not None
    assert chain.mempool.count == 0


def test_unstake_may_count_a_pending_stake(chain):
    chain.submit(make_tx(A, 0, "stake", amount=60))
    chain.submit(make_tx(A, 1, "unstake", amount=50))
    with pytest.raises(InsufficientBalance, match="60 in pending stakes, 50 in pending unstakes"):
        chain.submit(make_tx(A, 2, "unstake", amount=11))


def test_submit_many_reports_each_tx_and_persists_the_good_ones(chain):
    results = chain.submit_many([
        propose(chain, A, 70, nonce=0),
        propose(chain, A, 70, nonce=0),  # duplicate within the batch
        make_tx(A, 1, "stake", amount=1000),  # above balance
        make_tx(A, 1, "stake", amount=10),
    ])
    assert [r.error is None for r in results] == [True, False, False, True]
    assert isinstance(results[1].error, DuplicateTransaction)
    assert isinstance(results[2].error, InsufficientBalance)
    assert chain.mempool.count == 2


def test_pending_survives_reopen_and_forger_orders_by_arrival(tmp_path):
    from ledger.chain.facade import Chain

    home = tmp_path / "home"
    chain = make_chain(home, {A.address: 100}, {V.address: 500})
    ids = [chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=1)),
           chain.submit(propose(chain, V, 70, nonce=0)),
           chain.submit(propose(chain, A, 71, nonce=1))]
    chain.close()
    reopened = Chain.open(home)
    assert reopened.mempool.count == 3
    assert [reopened.tx(i).status for i in ids] == ["pending"] * 3
    block = reopened.forge().block
    assert block is not None and [tx.tx_id for tx in block.txs] == ids
    assert reopened.tx(ids[2]).status == "included" and reopened.tx(ids[2]).height == 1
    reopened.close()


def test_invalidated_pending_tx_is_evicted_with_reason(tmp_path):
    """A tx admitted, then made invalid behind the mempool's back, is evicted — never silently."""
    from ledger.storage import schema
    from ledger.chain.facade import Chain

    home = tmp_path / "home"
    chain = make_chain(home, {A.address: 100}, {V.address: 500})
    doomed = chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=100))
    follower = chain.submit(propose(chain, A, 80, nonce=1))
    chain.submit(propose(chain, V, 70, nonce=0))
    # Simulate a state change the mempool did not see: A's balance drops to 10.
    from ledger import encoding
    from ledger.consensus import state
    key = schema.make_state_key(state.make_account_state_key(A.address))
    account = state.Account.from_dict(encoding.decode(chain.store.get(key)))
    chain.store.write({key: encoding.encode(dataclasses.replace(account, balance=10).to_dict())})
    result = chain.forge()
    assert result.block is not None and len(result.block.txs) == 1
    reasons = dict(result.evicted)
    assert "cannot send 100" in reasons[doomed.hex()]
    assert "not its next nonce" in reasons[follower.hex()]
    record = chain.tx(doomed)
    assert record.status == "evicted" and "cannot send 100" in (record.reason or "")
    assert chain.mempool.count == 0
    chain.close()
    assert Chain.open(home).mempool.count == 0


def test_full_blocks_of_transfers_never_starve_the_proposals(tmp_path):
    """max_block_txs transfers that arrived before every proposal must not block forging forever:
    the last slot is kept for a proposal, and the held-back sender's txs wait, in order."""
    chain = make_chain(tmp_path / "home", {A.address: 100, B.address: 100}, {V.address: 500}, max_block_txs=3)
    transfers = [chain.submit(make_tx(A, n, "transfer", to=B.address, amount=1)) for n in range(4)]
    late = chain.submit(make_tx(B, 0, "transfer", to=A.address, amount=1))
    proposal = chain.submit(propose(chain, V, 70, nonce=0))
    result = chain.forge()
    assert result.block is not None and result.evicted == []
    assert [tx.tx_id for tx in result.block.txs] == [transfers[0], transfers[1], proposal]
    assert chain.tx(transfers[2]).status == "pending" and chain.tx(late).status == "pending"
    chain.submit(propose(chain, V, 71, nonce=1))
    second = chain.forge().block
    assert second is not None and [tx.tx_id for tx in second.txs][:2] == [transfers[2], transfers[3]]
    chain.verify()
    chain.close()


def test_a_validators_own_earlier_tx_cannot_hide_its_proposal(tmp_path):
    """Free bpm txs from unfunded keys fill the block, and the validator's bpm follows its own
    transfer: the reservation takes the validator's transfer and bpm together."""
    from tests.ledgerkit import make_key as key

    chain = make_chain(tmp_path / "home", {A.address: 100, V.address: 100}, {V.address: 500}, max_block_txs=3)
    junk = [chain.submit(propose(chain, key(f"junk{i}"), 60, nonce=0)) for i in range(4)]
    own_transfer = chain.submit(make_tx(V, 0, "transfer", to=A.address, amount=1))
    proposal = chain.submit(propose(chain, V, 70, nonce=1))
    block = chain.forge().block
    assert block is not None
    assert [tx.tx_id for tx in block.txs] == [junk[0], own_transfer, proposal]
    assert all(chain.tx(j).status == "pending" for j in junk[1:])
    chain.close()


def test_a_repair_rebuilds_the_pool_from_the_txs_that_survived_whole(tmp_path):
    """LevelDB's repair reads its logs without checksums, so a damaged record can come back as
    altered bytes (seen: the counters as `{"co/nt": 1, …}`, which ended every command in a
    KeyError traceback). The pool is rebuilt from the txs whose records are still their own
    signed bytes: indexes and counters included."""
    from ledger.chain.facade import Chain
    from ledger.chain.mempool import rebuild_records
    from ledger.errors import DatabaseCorrupted, NotFound
    from ledger.storage import schema

    home = tmp_path / "home"
    chain = make_chain(home, {A.address: 100, B.address: 100}, {V.address: 500})
    kept = [chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=1)),
            chain.submit(make_tx(B, 0, "transfer", to=A.address, amount=2))]
    altered = chain.submit(make_tx(A, 1, "transfer", to=B.address, amount=3))
    seq = chain.store.get(schema.make_mempool_id_key(altered))
    raw = chain.store.get(schema.MEMPOOL_PREFIX + seq)
    chain.store.write({schema.MEMPOOL_PREFIX + seq: raw.replace(b'"amount":3', b'"amount":9'),
                       schema.MEMPOOL_META_KEY: b'{"bytes":291,"co/nt":3,"next_seq":3}'})
    chain.close()
    with pytest.raises(DatabaseCorrupted, match="mempool's counters are damaged.*posctl chain repair"):
        Chain.open(home)
    from ledger.storage.store import LevelDBStore

    store = LevelDBStore.open(home / "chain")
    assert rebuild_records(store) == (2, 1)
    store.close()
    with Chain.open(home) as reopened:
        assert reopened.mempool.count == 2
        assert [reopened.tx(i).status for i in kept] == ["pending", "pending"]
        with pytest.raises(NotFound):
            reopened.tx(altered)
        assert {entry.tx_id for entry in reopened.history(A.address)} >= set(kept)
        reopened.submit(propose(reopened, V))
        block = reopened.forge().block
        assert block is not None and {tx.tx_id for tx in block.txs} >= set(kept)


def test_an_unjail_is_admitted_only_from_a_jailed_validator_and_once(tmp_path):
    """An unjail from a validator that was not jailed was admitted, then evicted in the block
    with every later tx of its sender (their nonces left a gap), a proposal among them that the
    wallet had recorded as signed: a lone validator could never propose for that height again."""
    chain = make_chain(tmp_path / "home", {A.address: 100}, {V.address: 500, B.address: 500}, max_missed=1)
    with pytest.raises(InvalidTransaction, match="is not jailed: there is nothing to unjail"):
        chain.submit(make_tx(V, 0, "unjail"))
    assert chain.mempool.count == 0
    for _ in range(40):  # only B proposes: V, drawn first without a proposal, is jailed
        if chain.account(V.address).status == "jailed":
            break
        chain.submit(propose(chain, B, 70))
        assert chain.forge().block is not None
    else:
        raise AssertionError("V was never drawn first in 40 blocks")
    chain.submit(make_tx(V, 0, "unjail"))
    with pytest.raises(InvalidTransaction, match="an unjail from .* is already pending"):
        chain.submit(make_tx(V, 1, "unjail"))
    chain.submit(propose(chain, B, 71))
    assert chain.forge().block is not None and chain.account(V.address).status == "active"
    chain.close()
