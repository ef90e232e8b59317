"""The mempool's cap in bytes (``POSCTL_MAX_MEMPOOL_MB``, as Bitcoin Core's ``-maxmempool``) and
the bound on its in-memory caches: real LevelDB chains, and a real node for the HTTP answer."""

from __future__ import annotations

import json
import shutil

import pytest

from ledger.chain.facade import Chain
from ledger.chain.mempool import MAX_MEMPOOL_MB_ENV, BoundedCache
from ledger.errors import MempoolFull
from tests.faultkit import Node, one_error_line, posctl
from tests.ledgerkit import make_chain, make_key, make_tx, propose

A, B, V, W = make_key("a"), make_key("b"), make_key("v"), make_key("w")
CAP_MB = 0.002
CAP_BYTES = int(CAP_MB * 1024 * 1024)


def transfer(nonce: int):  # type: ignore[no-untyped-def]
    return make_tx(A, nonce, "transfer", to=B.address, amount=1)


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A chain whose mempool holds at most CAP_BYTES of txs (a few transfers)."""
    monkeypatch.setenv(MAX_MEMPOOL_MB_ENV, str(CAP_MB))
    chain = make_chain(tmp_path / "home", {A.address: 10**6, B.address: 10**6}, {V.address: 500, W.address: 500})
    yield chain
    chain.close()


def fill(chain: Chain) -> tuple[int, MempoolFull]:
    """Submit transfers until the byte cap refuses one; returns (admitted, the refusal)."""
    for nonce in range(1000):
        try:
            chain.submit(transfer(nonce))
        except MempoolFull as exc:
            return nonce, exc
    raise AssertionError("the byte cap never refused a transfer")


def test_admission_beyond_the_byte_cap_is_refused(small):
    size = len(transfer(0).encoded)
    admitted, refusal = fill(small)
    assert admitted == CAP_BYTES // size  # exactly as many as fit
    assert small.mempool.count == admitted < small.params.max_mempool_txs  # the bytes decided, not the count
    assert small.mempool.bytes == admitted * size <= CAP_BYTES
    message = str(refusal)
    assert MAX_MEMPOOL_MB_ENV in message and f"{CAP_BYTES} bytes" in message and "forge a block" in message
    assert f"{admitted * size} bytes of txs" in message


def test_the_byte_count_survives_a_reopen_and_a_forge(small, tmp_path):
    admitted, _ = fill(small)
    expected = small.mempool.bytes
    small.close()
    with Chain.open(tmp_path / "home") as chain:
        assert chain.mempool.bytes == expected
        with pytest.raises(MempoolFull):
            chain.submit(transfer(admitted))
        chain.submit(propose(chain, V))
        block = chain.forge().block
        assert block is not None and len(block.txs) == admitted + 1
        assert chain.mempool.bytes == 0 and chain.mempool.count == 0
        chain.submit(transfer(admitted))  # room again
        assert chain.mempool.bytes == len(transfer(admitted).encoded)


def test_a_full_pool_still_takes_one_proposal_per_eligible_validator(small):
    fill(small)
    small.submit(propose(small, V))  # exempt: otherwise nothing could forge the block that drains it
    small.submit(propose(small, W))
    assert small.mempool.bytes > CAP_BYTES
    with pytest.raises(MempoolFull):  # but only one each, and never for a non-validator
        small.submit(propose(small, B))
    with pytest.raises(MempoolFull):
        small.submit(make_tx(V, 1, "stake", amount=1))
    assert small.forge().block is not None


def test_a_bad_cap_is_refused_with_what_to_do(small, tmp_path):
    small.close()
    result = posctl(tmp_path / "home", "chain", "status", POSCTL_MAX_MEMPOOL_MB="lots")
    assert result.returncode == 1
    line = one_error_line(result)
    assert MAX_MEMPOOL_MB_ENV in line and "positive number" in line


def test_the_node_answers_503_with_the_reason(tmp_path):
    home = tmp_path / "home"
    make_chain(home, {A.address: 10**6, B.address: 10**6}, {V.address: 500}).close()
    node = Node(home, tmp_path, POSCTL_MAX_MEMPOOL_MB=str(CAP_MB))
    try:
        codes = []
        for nonce in range(CAP_BYTES // len(transfer(0).encoded) + 1):
            codes.append(node.submit(transfer(nonce)))
        assert [code for code, _ in codes[:-1]] == [200] * (len(codes) - 1)
        code, body = codes[-1]
        assert code == 503, body
        assert MAX_MEMPOOL_MB_ENV in json.dumps(body)
    finally:
        assert node.stop() == 0


# ---- bounded caches ----------------------------------------------------------------------------


def test_bounded_cache_forgets_the_oldest():
    cache: BoundedCache[int, str] = BoundedCache(limit=3)
    for key in range(10):
        cache.put(key, str(key))
    assert len(cache) == 3 and [key in cache for key in (6, 7, 8, 9)] == [False, True, True, True]


def test_the_decoded_and_verified_caches_stay_bounded(tmp_path):
    """Many more pending txs than the caches hold: memory stays at the limit, and what fell out
    of the caches is read and checked again from the database when the block is forged."""
    limit = 40
    count = 300
    with make_chain(tmp_path / "home", {A.address: 10**6, B.address: 10**6}, {V.address: 500}) as chain:
        chain.mempool._decoded.limit = limit
        chain.mempool.verified.limit = limit
        chain.submit(propose(chain, V))
        txs = [transfer(nonce) for nonce in range(count)]
        for start in range(0, count, 50):
            assert all(result.error is None for result in chain.submit_many(txs[start:start + 50]))
            assert len(chain.mempool._decoded) <= limit and len(chain.mempool.verified) <= limit
        assert sum(1 for _ in chain.mempool.pending()) == count + 1
        assert len(chain.mempool._decoded) <= limit
        block = chain.forge().block
        assert block is not None and len(block.txs) == count + 1
        assert len(chain.mempool._decoded) <= limit and len(chain.mempool.verified) <= limit
    shutil.rmtree(tmp_path / "home")
