"""Scale: opening reads no allocation, the parallel genesis equals the one-shot one, and the
fast address check agrees with BIP-173's decoder."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Iterator

import pytest

from ledger.chain.facade import CHAIN_DIRNAME, Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.consensus.state import ACCOUNT_STATE_PREFIX
from ledger.crypto import bech32
from ledger.errors import InvalidAddress
from ledger.params import Params
from ledger.storage import schema
from ledger.storage.store import Changes, KeyValueStore, LevelDBStore
from tests.ledgerkit import make_key

V = make_key("scale-validator")


def addresses(count: int, label: bytes = b"scale") -> list[str]:
    return [bech32.encode_address(hashlib.sha256(label + i.to_bytes(8, "big")).digest()[:20]) for i in range(count)]


def scale_config(count: int) -> GenesisConfig:
    allocations = {address: 1000 + i for i, address in enumerate(addresses(count))}
    return GenesisConfig(params=Params(chain_id="posctl-scale"), allocations=allocations,
                         bonds={V.address: 10**9}, timestamp=1_700_000_000)


class CountingStore(KeyValueStore):
    """A real LevelDB store that counts every byte read through it (keys and values)."""

    def __init__(self, inner: KeyValueStore) -> None:
        self.inner = inner
        self.bytes_read = 0
        self.keys_read: list[bytes] = []

    def _count(self, key: bytes, value: bytes | None) -> None:
        self.bytes_read += len(key) + len(value or b"")
        self.keys_read.append(key)

    def get(self, key: bytes) -> bytes | None:
        value = self.inner.get(key)
        self._count(key, value)
        return value

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.inner.iterate(prefix, reverse=reverse):
            self._count(key, value)
            yield key, value

    def write(self, changes: Changes) -> None:
        self.inner.write(changes)

    def close(self) -> None:
        self.inner.close()


def _reads_on_open(home: Path) -> tuple[int, list[bytes], int, list[bytes]]:
    store = CountingStore(LevelDBStore.open(home / CHAIN_DIRNAME))
    with Chain(store, home) as chain:
        opened, opened_keys = store.bytes_read, list(store.keys_read)
        chain.status()
        return opened, opened_keys, store.bytes_read - opened, store.keys_read[len(opened_keys):]


def test_opening_reads_no_allocation_whatever_the_genesis_size(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    Chain.create(small, scale_config(1000)).close()
    Chain.create(large, scale_config(100_000)).close()
    small_open, small_keys, small_status, small_status_keys = _reads_on_open(small)
    large_open, large_keys, large_status, large_status_keys = _reads_on_open(large)
    assert large_open == small_open, (small_keys, large_keys)
    assert small_open < 2000  # the tip (with its 384-byte accumulator), the parameters, the mempool meta
    # status reads the totals, whose numbers have more digits at 100k accounts: a few bytes
    assert abs(large_status - small_status) < 64, (small_status_keys, large_status_keys)
    for key in large_keys + large_status_keys:
        assert key != schema.GENESIS_KEY
        assert not key.startswith(schema.make_state_key(ACCOUNT_STATE_PREFIX)) or V.address.encode() in key
    with Chain.open(large) as chain:  # the allocations are still there for whoever asks
        assert len(chain.genesis.allocations) == 100_000


def test_fast_address_check_agrees_with_the_decoder():
    rnd = random.Random(16)
    for _ in range(2000):
        address = bech32.encode_address(rnd.randbytes(20))
        assert bech32.is_canonical_address(address)
        position = rnd.randrange(len(address))
        typo = address[:position] + rnd.choice(bech32.CHARSET + "1bioQP ") + address[position + 1:]
        try:
            bech32.decode_address(typo)
            valid = True
        except InvalidAddress:
            valid = False
        assert bech32.is_canonical_address(typo) == (valid and typo.islower()), typo
    assert not bech32.is_canonical_address(address.upper())  # valid, but left to the decoder
