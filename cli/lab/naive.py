"""The naive rules the lab attacks: a small model of the tutorial's and posctl v1's consensus.

**Not posctl's rules.** Nothing in ``ledger/`` uses this module; it exists so each attack has
something to succeed against. Each function is the rule as the tutorial
(``seeds/001_…``) or posctl v1 (DESIGN.md decision 7) had it:

* the v1 seed, ``SHA-256(tag ‖ prev_hash ‖ height)``: whoever assembles block h-1 chooses its
  hash (timestamp, tx order) and so re-rolls the seed of block h;
* the v1 draw *among the block's proposers*: r uniform in [0, W) by rejection sampling, bisect
  over cumulative stake in address order — leaving a proposal out re-draws the block;
* the tutorial's lottery pool, one entry per *declared* token, picked with a clock-seeded
  random generator (here a seeded :class:`random.Random`, so runs repeat);
* signatures as pycryptodome checks them (high-S accepted) over a body with no chain id, and a
  tx id over the signed bytes — the two gaps behind replay and malleability;
* no evidence, no slashing, no lock-up and no liveness rule at all.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from typing import Mapping

from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import DSS

V1_SEED_TAG = b"posctl-v1/seed"


@dataclass(frozen=True)
class NaiveHeader:
    """What a v1 block hash covers: every field, so any change re-rolls the next seed."""

    height: int
    prev_hash: bytes
    timestamp: int
    validator: str
    tx_order: tuple[str, ...] = ()

    @property
    def hash(self) -> bytes:
        body = json.dumps([self.height, self.prev_hash.hex(), self.timestamp, self.validator,
                           list(self.tx_order)], separators=(",", ":"))
        return hashlib.sha256(body.encode("ascii")).digest()


GENESIS = NaiveHeader(0, bytes(32), 0, "")


def v1_seed(prev_hash: bytes, height: int) -> bytes:
    """v1's lottery seed: fixed by the parent's hash, which its assembler chose."""
    return hashlib.sha256(V1_SEED_TAG + prev_hash + height.to_bytes(8, "big")).digest()


def v1_uniform_below(seed: bytes, bound: int) -> int:
    """A uniform integer in [0, bound) from ``seed`` by rejection sampling, as v1 drew it."""
    shift = 256 - bound.bit_length()
    for counter in itertools.count():
        candidate = int.from_bytes(hashlib.sha256(seed + counter.to_bytes(8, "big")).digest(), "big") >> shift
        if candidate < bound:
            return candidate
    raise RuntimeError("unreachable")  # pragma: no cover - itertools.count never ends


def v1_draw(seed: bytes, proposers: Mapping[str, int]) -> str:
    """v1's winner: stake-weighted among *the proposers in the block* only."""
    addresses = sorted(proposers)
    totals = list(itertools.accumulate(proposers[a] for a in addresses))
    r = v1_uniform_below(seed, totals[-1])
    return addresses[bisect.bisect_right(totals, r)]


def tutorial_pick(rng: random.Random, declared: Mapping[str, int]) -> str:
    """The tutorial's ``pickWinner``: one pool entry per declared token, one picked at random.

    Equivalent to filling the pool and indexing it, without a list of 10^9 entries.
    """
    addresses = sorted(declared)
    totals = list(itertools.accumulate(declared[a] for a in addresses))
    return addresses[bisect.bisect_right(totals, rng.randrange(totals[-1]))]


# ---- signed transfers without a chain id, ids over the signed bytes ---------------------------


def naive_body(sender_public_key: bytes, nonce: int, to: str, amount: int) -> bytes:
    """A transfer as a v0-style ledger signs it: no chain id, so it is valid on every chain."""
    return json.dumps({"amount": amount, "nonce": nonce, "public_key": sender_public_key.hex(), "to": to},
                      sort_keys=True, separators=(",", ":")).encode("ascii")


def naive_tx_id(body: bytes, signature: bytes) -> bytes:
    """The id over body *and signature*: change the signature, change the id."""
    return hashlib.sha256(body + signature).digest()


def naive_sign(private_key: bytes, body: bytes) -> bytes:
    """Deterministic ECDSA (RFC 6979) as pycryptodome emits it: high-S about half the time."""
    key = ECC.construct(curve="secp256k1", d=int.from_bytes(private_key, "big"))
    return DSS.new(key, "deterministic-rfc6979").sign(SHA256.new(body))


def naive_verify(public_key: bytes, body: bytes, signature: bytes) -> bool:
    """ECDSA as pycryptodome verifies it: any s in [1, n), the high-S twin included."""
    key = ECC.import_key(public_key, curve_name="secp256k1")
    try:
        DSS.new(key, "sec1").verify(SHA256.new(body), signature)
    except ValueError:
        return False
    return True


class NaiveLedger:
    """Balances and nonces under the naive rules: a valid signature and the next nonce suffice."""

    def __init__(self, balances: Mapping[str, int]) -> None:
        self.balances = dict(balances)
        self.nonces: dict[str, int] = {}
        self.seen: set[bytes] = set()

    def apply_transfer(self, sender: str, public_key: bytes, nonce: int, to: str, amount: int,
                       signature: bytes) -> bool:
        """True if the naive rules accept the transfer (and apply it)."""
        body = naive_body(public_key, nonce, to, amount)
        if not naive_verify(public_key, body, signature):
            return False
        if nonce != self.nonces.get(sender, 0) or self.balances.get(sender, 0) < amount:
            return False
        self.seen.add(naive_tx_id(body, signature))
        self.nonces[sender] = nonce + 1
        self.balances[sender] -= amount
        self.balances[to] = self.balances.get(to, 0) + amount
        return True
