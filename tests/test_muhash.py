"""MuHash3072: Bitcoin Core's vectors, order independence, cancellation, persistence."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import EncodingError
from ledger.crypto.muhash import BYTE_SIZE, MODULUS, MuHash3072

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "muhash.json").read_text(encoding="utf-8")
)


def from_int(i: int) -> bytes:
    """Core's test helper FromInt(i): 32 bytes, the first one i."""
    return bytes([i]) + bytes(31)


# --- Bitcoin Core vectors ---------------------------------------------------------------------


def test_core_insert_remove_vector() -> None:
    case = VECTORS["insert_remove"]
    state = MuHash3072()
    for item in case["insert"]:
        state.insert(bytes.fromhex(item))
    for item in case["remove"]:
        state.remove(bytes.fromhex(item))
    # Core prints uint256 values byte-reversed.
    assert state.digest()[::-1].hex() == case["digest_display_hex"]


def test_core_vector_matches_from_int_helper() -> None:
    state = MuHash3072()
    state.insert(from_int(0))
    state.insert(from_int(1))
    state.remove(from_int(2))
    assert state.digest()[::-1].hex() == VECTORS["insert_remove"]["digest_display_hex"]


def test_core_serialization_vector() -> None:
    case = VECTORS["serialization"]
    state = MuHash3072()
    for item in case["insert"]:
        state.insert(bytes.fromhex(item))
    assert state.core_serialization().hex() == case["core_serialization_hex"]
    restored = MuHash3072.from_core_serialization(bytes.fromhex(case["core_serialization_hex"]))
    assert restored.digest() == state.digest()


def test_core_overflow_vector() -> None:
    case = VECTORS["overflow"]
    state = MuHash3072.from_core_serialization(bytes.fromhex(case["core_serialization_hex"]))
    assert state.digest().hex() == case["digest_hex"]


def test_core_randomised_identity() -> None:
    """Core's loop: x*y / (y*x) is the empty set, and any order of 4 operations agrees."""
    rng = random.Random(3072)
    empty = MuHash3072().digest()
    for _ in range(10):
        table = [rng.randrange(8) for _ in range(4)]
        results = set()
        for order in range(4):
            state = MuHash3072()
            for i in range(4):
                t = table[i ^ order]
                (state.remove if t & 4 else state.insert)(from_int(t & 3))
            results.add(state.digest())
        assert len(results) == 1
        x, y = from_int(rng.randrange(16)), from_int(rng.randrange(16))
        state = MuHash3072()
        state.insert(x)
        state.insert(y)
        state.remove(y)
        state.remove(x)
        assert state.digest() == empty


# --- properties -------------------------------------------------------------------------------


def test_empty_set_digest_is_hash_of_one() -> None:
    assert MuHash3072().digest() == hashlib.sha256((1).to_bytes(BYTE_SIZE, "little")).digest()


def test_order_independence() -> None:
    items = [f"entry-{i}".encode() for i in range(12)]
    forward, backward = MuHash3072(), MuHash3072()
    for item in items:
        forward.insert(item)
    for item in reversed(items):
        backward.insert(item)
    assert forward.digest() == backward.digest()
    assert forward == backward


def test_insert_then_remove_returns_to_empty() -> None:
    state = MuHash3072()
    empty = state.digest()
    state.insert(b"account:alice=100")
    assert state.digest() != empty
    state.remove(b"account:alice=100")
    assert state.digest() == empty


def test_remove_before_insert_also_cancels() -> None:
    state = MuHash3072()
    state.remove(b"x")
    state.insert(b"x")
    assert state.digest() == MuHash3072().digest()


def test_multiset_counts_matter() -> None:
    once, twice = MuHash3072(), MuHash3072()
    once.insert(b"a")
    twice.insert(b"a")
    twice.insert(b"a")
    assert once.digest() != twice.digest()


def test_digest_keeps_the_set() -> None:
    """digest() may reduce numerator/denominator to one residue, but the set is unchanged:
    later digests and updates agree with a twin that was never digested."""

    def build() -> MuHash3072:
        state = MuHash3072()
        state.insert(b"a")
        state.remove(b"b")
        return state

    state, twin = build(), build()
    first = state.digest()
    assert state.digest() == first
    state.insert(b"c")
    twin.insert(b"c")
    assert state.digest() == twin.digest() != first
    assert state.to_bytes() == twin.to_bytes()


def test_to_bytes_round_trip_and_continues() -> None:
    state = MuHash3072()
    for i in range(5):
        state.insert(bytes([i]))
    state.remove(b"\x02")
    blob = state.to_bytes()
    assert len(blob) == BYTE_SIZE
    restored = MuHash3072.from_bytes(blob)
    assert restored.digest() == state.digest()
    assert restored.to_bytes() == blob
    state.insert(b"more")
    restored.insert(b"more")
    state.remove(b"\x00")
    restored.remove(b"\x00")
    assert restored.digest() == state.digest()


def test_to_bytes_is_canonical() -> None:
    """Two states for the same set serialise identically, however they were reached."""
    direct, roundabout = MuHash3072(), MuHash3072()
    direct.insert(b"k")
    roundabout.insert(b"j")
    roundabout.insert(b"k")
    roundabout.remove(b"j")
    assert direct.to_bytes() == roundabout.to_bytes()
    assert MuHash3072().to_bytes() == (1).to_bytes(BYTE_SIZE, "little")


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        bytes(BYTE_SIZE - 1),
        bytes(BYTE_SIZE + 1),
        bytes(BYTE_SIZE),  # zero
        MODULUS.to_bytes(BYTE_SIZE, "little"),
        b"\xff" * BYTE_SIZE,
    ],
    ids=["empty", "short", "long", "zero", "modulus", "overflow"],
)
def test_from_bytes_rejects_non_canonical(blob: bytes) -> None:
    with pytest.raises(EncodingError):
        MuHash3072.from_bytes(blob)


def test_from_core_serialization_rejects_bad_input() -> None:
    with pytest.raises(EncodingError):
        MuHash3072.from_core_serialization(bytes(BYTE_SIZE))
    with pytest.raises(EncodingError):
        MuHash3072.from_core_serialization(b"\x01" + bytes(2 * BYTE_SIZE - 1))


def test_copy_is_independent() -> None:
    state = MuHash3072()
    state.insert(b"a")
    twin = state.copy()
    twin.insert(b"b")
    assert state.digest() != twin.digest()
    state.insert(b"b")
    assert state.digest() == twin.digest()


_ITEMS = st.binary(max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    multiset=st.lists(_ITEMS, max_size=8),
    noise=st.lists(_ITEMS, max_size=5),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_different_paths_to_same_multiset_agree(
    multiset: list[bytes], noise: list[bytes], seed: int
) -> None:
    """Inserting a multiset directly, or shuffled with extra insert/remove pairs interleaved in
    any order (a removal may even come before its insertion), gives the same digest."""
    direct = MuHash3072()
    for item in multiset:
        direct.insert(item)

    operations = [("insert", item) for item in multiset]
    operations += [("insert", item) for item in noise] + [("remove", item) for item in noise]
    random.Random(seed).shuffle(operations)
    shuffled = MuHash3072()
    for action, item in operations:
        getattr(shuffled, action)(item)

    assert shuffled.digest() == direct.digest()
    assert shuffled.to_bytes() == direct.to_bytes()
    assert MuHash3072.from_bytes(shuffled.to_bytes()).digest() == direct.digest()


def test_fast_reduction_matches_plain_modulo() -> None:
    """_mulmod (GMP's when gmpy2 is installed) and _mulmod_folded (p = 2^3072 - c folded back)
    must both equal Python's % for any residues."""
    import random

    from ledger.crypto import muhash as module

    rng = random.Random(7)
    edge = [0, 1, module.MODULUS - 1, module.MODULUS - 2, 2**3072 - module.MODULUS]
    for a, b in [(x, y) for x in edge for y in edge] + [
        (rng.randrange(module.MODULUS), rng.randrange(module.MODULUS)) for _ in range(500)
    ]:
        assert module._mulmod(a, b) == module._mulmod_folded(a, b) == (a * b) % module.MODULUS
