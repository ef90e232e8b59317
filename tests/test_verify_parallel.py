"""verify() with signatures checked in worker processes still names the first bad height."""

from __future__ import annotations

import pytest

from ledger.storage import schema
from ledger.chain import sigcheck
from ledger.chain.facade import Chain
from ledger.errors import VerificationError
from ledger.storage.store import LevelDBStore
from tests.ledgerkit import make_chain, make_key, make_proposal, make_tx, propose

KEYS = [make_key(f"p{i}") for i in range(30)]
V = make_key("validator")


def build(home, blocks: int) -> None:
    chain = make_chain(home, {k.address: 10_000 for k in KEYS}, {V.address: 500})
    for height in range(blocks):
        txs = [propose(chain, V, 70, nonce=height)]
        txs += [make_tx(k, height, "transfer", to=V.address, amount=1) for k in KEYS]
        assert all(r.error is None for r in chain.submit_many(txs))
        assert chain.forge().block is not None
    chain.close()


@pytest.fixture
def small_pool_settings(monkeypatch):
    """Start the pool after a few signatures, in small chunks, so a short chain uses it."""
    monkeypatch.setattr(sigcheck, "PARALLEL_THRESHOLD", 40)
    monkeypatch.setattr(sigcheck, "CHUNK", 16)


def test_parallel_verify_passes_and_catches_a_swapped_signature(tmp_path, small_pool_settings):
    home = tmp_path / "home"
    build(home, blocks=8)
    with Chain.open(home) as chain:
        report = chain.verify()
        assert report.txs == 8 * 31
    # Swap one signature in block 6 for another valid-looking one: ids and roots are unchanged
    # (ids cover the unsigned body), so only the signature check can notice.
    store = LevelDBStore.open(home / "chain")
    raw = store.get(schema.make_block_key(6)).decode()
    block5 = store.get(schema.make_block_key(5)).decode()
    import json

    sig6 = json.loads(raw)["txs"][7]["signature"]
    sig5 = json.loads(block5)["txs"][7]["signature"]
    store.write({schema.make_block_key(6): raw.replace(sig6, sig5).encode()})
    store.close()
    with Chain.open(home) as chain:
        with pytest.raises(VerificationError, match=r"height 6: tx 7 .*does not verify") as info:
            chain.verify()
    assert info.value.height == 6


def test_first_invalid_reports_the_index():
    good = make_proposal(KEYS[0], 0, 1, bytes(32))
    bad = make_proposal(KEYS[1], 0, 1, bytes(32))
    items = [(good.public_key, good.signing_message(), good.signature),
             (bad.public_key, bad.signing_message(), good.signature)]
    assert sigcheck.first_invalid(items[:1]) is None
    index, reason = sigcheck.first_invalid(items)
    assert index == 1 and "does not verify" in reason
