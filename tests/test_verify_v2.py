"""verify() replays consensus v2 too: proofs, seeds, draw traces, evidence and jailing.

Each test edits one stored value of a real LevelDB chain and expects ``verify`` to name the height
of the block that holds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from ledger import encoding
from ledger.chain.facade import Chain
from ledger.consensus.evidence import make_evidence
from ledger.errors import VerificationError
from ledger.storage import schema
from ledger.storage.store import LevelDBStore
from tests.ledgerkit import make_chain, make_key, make_proposal, make_tx, propose

A, B, C = make_key("verify-a"), make_key("verify-b"), make_key("verify-c")


def build(home: Path) -> None:
    """Block 1: all propose; block 2: only c (a jailing-capable miss for whoever is drawn first);
    block 3: b's equivocation at height 3 is slashed."""
    chain = make_chain(home, {A.address: 1000, B.address: 1000, C.address: 1000},
                       {A.address: 300, B.address: 200, C.address: 100}, max_missed=1)
    for key in (A, B, C):
        chain.submit(propose(chain, key))
    assert chain.forge().block is not None
    chain.submit(propose(chain, C))
    assert chain.forge().block is not None
    nonce = chain.account(B.address).next_nonce
    first = make_proposal(B, nonce, 3, chain.next_seed, 70)
    second = make_proposal(B, nonce, 3, chain.next_seed, 71)
    chain.submit_evidence(make_evidence(first, second))
    chain.submit(make_tx(A, chain.account(A.address).next_nonce, "transfer", to=C.address, amount=1))
    for key in (A, C):
        if chain.account(key.address).status == "active":
            chain.submit(propose(chain, key))
    block = chain.forge().block
    assert block is not None and len(block.evidence) == 1
    chain.verify()
    chain.close()


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    build(tmp_path / "home")
    return tmp_path / "home"


def edit_block(home: Path, height: int, change: Callable[[dict], None]) -> None:
    store = LevelDBStore.open(home / "chain")
    block = encoding.decode(store.get(schema.make_block_key(height)))
    change(block)
    store.write({schema.make_block_key(height): encoding.encode(block)})
    store.close()


def verify_error(home: Path) -> VerificationError:
    with Chain.open(home) as chain, pytest.raises(VerificationError) as info:
        chain.verify()
    return info.value


def test_an_edited_vrf_output_is_named(home: Path) -> None:
    def change(block: dict) -> None:
        block["header"]["vrf_output"] = "11" * 32
    edit_block(home, 2, change)
    error = verify_error(home)
    assert error.height == 2 and "height 2" in str(error)


def test_an_edited_trace_entry_is_named(home: Path) -> None:
    def change(block: dict) -> None:
        block["trace"][0][3] += 1  # r of the first draw
    edit_block(home, 1, change)
    error = verify_error(home)
    assert error.height == 1 and "draw trace" in str(error)


def test_an_edited_evidence_item_is_named(home: Path) -> None:
    def change(block: dict) -> None:
        block["evidence"][0]["second"]["bpm"] += 1  # no longer what b signed
    edit_block(home, 3, change)
    error = verify_error(home)
    assert error.height == 3 and "height 3" in str(error)


def test_a_dropped_evidence_item_is_named(home: Path) -> None:
    def change(block: dict) -> None:
        block["evidence"] = []
    edit_block(home, 3, change)
    error = verify_error(home)
    assert error.height == 3 and "evidence_root" in str(error)


def test_a_v1_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    home = tmp_path / "v1"
    make_chain(home, {A.address: 10}, {A.address: 300}).close()
    store = LevelDBStore.open(home / "chain")
    store.write({schema.SCHEMA_VERSION_KEY: b"1"})  # what posctl v1 wrote
    store.close()
    from ledger.errors import DatabaseError

    with pytest.raises(DatabaseError, match=r"made by posctl v1 .*start a new chain"):
        Chain.open(home)
