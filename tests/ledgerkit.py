"""Test helpers: deterministic keys, signed transactions and small chains on real LevelDB."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.crypto.address import address_from_public_key
from ledger.consensus.lottery import vrf_alpha
from ledger.crypto import ecvrf, secp256k1
from ledger.chain.facade import Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.params import Params
from ledger.consensus.transactions import Transaction, make_transaction, sign_transaction


@dataclass(frozen=True)
class Key:
    private: bytes
    public: bytes
    address: str


def make_key(label: str) -> Key:
    """A deterministic key per label, so failures are reproducible."""
    private = hashlib.sha256(b"posctl-test-key:" + label.encode()).digest()
    public = secp256k1.public_key_from_private(private)
    return Key(private, public, address_from_public_key(public))


def make_tx(key: Key, nonce: int, kind: str, chain_id: str = "posctl-test", **fields: object) -> Transaction:
    tx = make_transaction(kind, chain_id=chain_id, public_key=key.public, nonce=nonce, **fields)
    return sign_transaction(tx, key.private)


def make_proposal(
    key: Key, nonce: int, height: int, seed: bytes, bpm: int = 72, chain_id: str = "posctl-test"
) -> Transaction:
    """A signed bpm proposal for ``height`` with its VRF proof over that height's ``seed``."""
    proof = ecvrf.prove(key.private, vrf_alpha(chain_id, height, seed))
    return make_tx(key, nonce, "bpm", chain_id=chain_id, bpm=bpm, height=height, vrf_proof=proof)


def propose(chain: Chain, key: Key, bpm: int = 72, nonce: int | None = None) -> Transaction:
    """A proposal for ``chain``'s next block, at the key's next nonce unless one is given."""
    if nonce is None:
        nonce = chain.account(key.address).next_nonce
    return make_proposal(key, nonce, chain.height + 1, chain.next_seed, bpm, chain.params.chain_id)


def make_config(
    allocations: dict[str, int], bonds: dict[str, int], **params: int
) -> GenesisConfig:
    return GenesisConfig(
        params=Params(chain_id="posctl-test", **params), allocations=allocations, bonds=bonds, timestamp=1_700_000_000
    )


def make_chain(home: Path, allocations: dict[str, int], bonds: dict[str, int], **params: int) -> Chain:
    return Chain.create(home, make_config(allocations, bonds, **params))


class CountingWeights(Mapping[str, int]):
    """A read-only mapping that counts lookups: how much of the set a draw has touched."""

    def __init__(self, data: dict[str, int]) -> None:
        self._data = data
        self.lookups = 0

    def __getitem__(self, key: str) -> int:
        self.lookups += 1
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)
