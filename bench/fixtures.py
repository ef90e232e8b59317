"""Deterministic keys, pre-signed transaction streams and chains for the benchmarks.

Signing is not what is measured, so it is done up front, on both cores, with key objects
parsed once per key. Workers return each tx's canonical bytes: the benchmarks that measure
admission decode them again, as a node decodes what a client sends.

Proposals are the exception: a v2 proposal carries an ECVRF proof over its height's seed, and
that seed is fixed only when the parent block is, so each is made just before its block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from Crypto.PublicKey import ECC

from ledger.consensus.lottery import vrf_alpha
from ledger.crypto import ecvrf, secp256k1
from tests.ledgerkit import Key, make_key
from ledger.chain.facade import Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.params import Params
from ledger.consensus.transactions import BPM, TRANSFER, Transaction, make_transaction

CHAIN_ID = "posctl-bench"
"""Every bench chain shares this id, so one signed stream is valid on any of them."""

GENESIS_TIMESTAMP = 1_700_000_000
ALLOCATION = 10**12
"""Liquid genesis balance of every sender: never the limit."""

VALIDATOR_BOND = 10**9


def make_keys(prefix: str, count: int) -> list[Key]:
    return [make_key(f"{prefix}{i}") for i in range(count)]


# ---- signing (worker side) -----------------------------------------------------------------

def _load_curve() -> object | None:
    try:
        return ECC._curves["secp256k1"]  # type: ignore[attr-defined]
    except (AttributeError, KeyError, TypeError):  # pragma: no cover - other pycryptodome layouts
        return None


_CURVE = _load_curve()
"""pycryptodome's secp256k1 with its precomputed generator table (k·G in ~0.1 ms)."""


def _sign_fast(private: bytes, tx: Transaction) -> Transaction:
    """A valid low-S ECDSA signature over SHA-256(signing message), made ~5x faster than
    ``DSS`` by multiplying pycryptodome's precomputed generator directly.

    The nonce is HMAC-SHA256(private, digest) — deterministic and unique per message, which is
    all a benchmark fixture needs (it is not RFC 6979, so the bytes differ from
    ``sign_transaction``'s; ``ledger.crypto.verify`` accepts both).
    """
    message = tx.signing_message()
    if _CURVE is None:  # pragma: no cover - other pycryptodome layouts
        from ledger.consensus.transactions import sign_transaction

        return sign_transaction(tx, private)
    n = secp256k1.SECP256K1_ORDER
    digest = hashlib.sha256(message).digest()
    z = int.from_bytes(digest, "big")
    d = int.from_bytes(private, "big")
    counter = 0
    while True:
        k = int.from_bytes(hmac.new(private, digest + bytes([counter]), hashlib.sha256).digest(), "big") % n
        counter += 1
        if k == 0:
            continue
        r = int((_CURVE.G * k).x) % n  # type: ignore[attr-defined]
        if r == 0:
            continue
        s = pow(k, -1, n) * (z + r * d) % n
        if s == 0:
            continue
        break
    if s > secp256k1.HALF_ORDER:
        s = n - s
    return dataclasses.replace(tx, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"))


TxSpec = tuple  # (private, public, nonce, kind, to, amount): transfers and stakes


def _sign_specs(specs: Sequence[TxSpec]) -> list[bytes]:
    out = []
    for private, public, nonce, kind, to, amount in specs:
        fields = {name: value for name, value in (("to", to), ("amount", amount)) if value is not None}
        tx = make_transaction(kind, chain_id=CHAIN_ID, public_key=public, nonce=nonce, **fields)
        out.append(_sign_fast(private, tx).encode())
    return out


def sign_all(specs: Sequence[TxSpec], workers: int | None = None) -> list[bytes]:
    """Sign every spec on all cores; returns canonical tx bytes in spec order."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(specs) < 2000:
        return _sign_specs(specs)
    chunk = 1000
    chunks = [specs[i:i + chunk] for i in range(0, len(specs), chunk)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        parts = pool.map(_sign_specs, chunks)
    return [raw for part in parts for raw in part]


def proposal(key: Key, nonce: int, height: int, seed: bytes, bpm: int = 72) -> Transaction:
    """A v2 proposal for ``height`` with the real ECVRF proof over that height's seed.

    It cannot be signed ahead like a transfer: the proof is over the seed of its height, which
    the previous block's winner fixes. Only the ECDSA signature uses the fast signer.
    """
    proof = ecvrf.prove(key.private, vrf_alpha(CHAIN_ID, height, seed))
    tx = make_transaction(BPM, chain_id=CHAIN_ID, public_key=key.public, nonce=nonce, bpm=bpm, height=height,
                          vrf_proof=proof)
    return _sign_fast(key.private, tx)


def propose_next(chain: Chain, key: Key, bpm: int = 72) -> Transaction:
    """``key``'s proposal for ``chain``'s next block, at its next nonce."""
    nonce = chain.account(key.address).next_nonce
    return proposal(key, nonce, chain.height + 1, chain.next_seed, bpm)


# ---- streams -------------------------------------------------------------------------------


@dataclass
class World:
    """The keys every bench chain is created with."""

    validator: Key
    """Bonded; proposes in every 1,000-tx block."""
    chain_validator: Key
    """Bonded; proposes in every block of the 100-block and long chains (the other validator
    then misses its turns when drawn first, and is jailed after ``max_missed``: a live chain)."""
    senders: list[Key]

    def genesis(self, **params: int) -> GenesisConfig:
        return GenesisConfig(
            params=Params(chain_id=CHAIN_ID, **params),
            allocations={k.address: ALLOCATION for k in self.senders},
            bonds={self.validator.address: VALIDATOR_BOND, self.chain_validator.address: VALIDATOR_BOND},
            timestamp=GENESIS_TIMESTAMP,
        )

    def create_chain(self, home: Path, **params: int) -> Chain:
        return Chain.create(home, self.genesis(**params))


def make_world(senders: int) -> World:
    return World(
        validator=make_key("validator"), chain_validator=make_key("chain-validator"),
        senders=make_keys("sender", senders),
    )


def transfer_specs(world: World, count: int) -> list[TxSpec]:
    """``count`` transfers round-robin over the senders, in arrival order (nonces follow).

    No proposals among them: a v2 proposal names its height and proves over that height's
    seed, so it is built when its block is next (:func:`propose_next`), not signed ahead.
    Forging with ``max_block_txs == 1000`` takes 999 of these plus the one proposal the forger
    keeps room for.
    """
    specs: list[TxSpec] = []
    n_senders = len(world.senders)
    for turn in range(count):
        i = turn % n_senders
        key = world.senders[i]
        to = world.senders[(i + 1) % n_senders].address
        specs.append((key.private, key.public, turn // n_senders, TRANSFER, to, 1 + turn % 7))
    return specs


def validator_set(count: int) -> list[Key]:
    """``count`` bonded validators for the many-proposals figures."""
    return make_keys("proposer", count)


def validators_genesis(validators: Sequence[Key]) -> GenesisConfig:
    """A chain whose only accounts are ``validators``, each bonded alike."""
    return GenesisConfig(
        params=Params(chain_id=CHAIN_ID, max_block_txs=max(1000, len(validators))),
        allocations={k.address: ALLOCATION for k in validators},
        bonds={k.address: VALIDATOR_BOND for k in validators},
        timestamp=GENESIS_TIMESTAMP,
    )


def unsynced_writes(chain: Chain) -> None:
    """Make this open chain's batches skip the fsync (same atomic batches, same bytes).

    Only for building the long chain fixture in the time budget: how fast a 20,000-block chain
    opens does not depend on whether its blocks were fsynced one by one while it was built.
    The synced cost per block is measured separately on the 100-block chain.
    """
    db = chain.store._db  # type: ignore[attr-defined]

    def write(changes: "dict[bytes, bytes | None]") -> None:
        with db.write_batch(transaction=True, sync=False) as batch:
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)

    chain.store.write = write  # type: ignore[method-assign]
