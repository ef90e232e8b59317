"""One test class, run against both storage backends (py-evm's habit)."""

from __future__ import annotations

import pytest

from ledger.storage.store import LevelDBStore, MemoryStore


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    if request.param == "memory":
        s = MemoryStore()
    else:
        s = LevelDBStore.open(tmp_path / "db", create=True)
    yield s
    s.close()


def test_write_get_delete(store):
    store.write({b"a": b"1", b"b": b"2"})
    assert store.get(b"a") == b"1"
    store.write({b"a": None, b"c": b"3"})
    assert store.get(b"a") is None and store.get(b"c") == b"3"


def test_prefix_iteration_in_byte_order_and_reverse(store):
    store.write({b"p:2": b"x", b"p:1": b"y", b"q:0": b"z", b"p:10": b"w"})
    assert [k for k, _ in store.iterate(b"p:")] == [b"p:1", b"p:10", b"p:2"]
    assert [k for k, _ in store.iterate(b"p:", reverse=True)] == [b"p:2", b"p:10", b"p:1"]
    assert store.last(b"q:") == (b"q:0", b"z")
    assert store.last(b"none:") is None


def test_prefix_iteration_below_a_key_both_ways(store):
    """``below`` cuts a prefix scan at a key (excluded): where a page of an index starts. Keys
    just outside the prefix, on either side, never appear, even for a prefix ending in 0xff."""
    for prefix in (b"p:", b"p\xff"):
        keys = [prefix + bytes([i]) for i in (0, 1, 5, 9)]
        store.write({k: k for k in keys} | {prefix[:-1]: b"x", prefix + b"\xff\xff": b"y", b"q": b"z"})
        scanned = [k for k, _ in store.iterate(prefix)]
        assert scanned == keys + [prefix + b"\xff\xff"]
        assert [k for k, _ in store.iterate(prefix, below=prefix + bytes([5]))] == keys[:2]
        assert [k for k, _ in store.iterate(prefix, reverse=True, below=prefix + bytes([5]))] == keys[1::-1]
        assert [k for k, _ in store.iterate(prefix, reverse=True, below=b"\xff" * 4)] == scanned[::-1]
        assert list(store.iterate(prefix, below=prefix)) == []


def test_atomic_batch_reads_its_own_writes_and_commits_only_on_success(store):
    with store.atomic_batch() as batch:
        batch.put(b"k", b"v")
        assert batch.get(b"k") == b"v"
        assert store.get(b"k") is None  # nothing visible before the commit
    assert store.get(b"k") == b"v"
    with pytest.raises(RuntimeError):
        with store.atomic_batch() as batch:
            batch.put(b"k2", b"v2")
            batch.delete(b"k")
            raise RuntimeError("abort")
    assert store.get(b"k2") is None and store.get(b"k") == b"v"


def test_leveldb_flush_settles_the_write_buffer_and_compact_leaves_no_level_0_table(tmp_path):
    """``flush`` writes the write buffer to a table and compacts nothing; ``compact`` leaves every
    key in sorted, non-overlapping tables (plyvel's unbounded ``compact_range()`` only flushed,
    leaving a large genesis in level-0 tables that each later open set out to compact again)."""
    import random

    store = LevelDBStore.open(tmp_path / "db", create=True)
    try:
        keys = [b"k:%08d" % i for i in range(60_000)]
        random.Random(7).shuffle(keys)  # as a genesis file lists its accounts: in no order
        for start in range(0, len(keys), 20_000):  # three overlapping tables, one per flush
            store.write_stream(((key, key * 8) for key in keys[start:start + 20_000]), part_bytes=1 << 30)
            store.flush()
        assert all(log.stat().st_size == 0 for log in (tmp_path / "db").glob("*.log"))  # all in tables
        assert len([count for count in store.tables_by_level() if count]) > 1
        store.compact()
        levels = store.tables_by_level()
        assert levels[0] == 0 and len([count for count in levels if count]) == 1, levels
        assert [k for k, _ in store.iterate(b"k:")] == sorted(keys)
    finally:
        store.close()
