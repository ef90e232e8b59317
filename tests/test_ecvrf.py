"""ECVRF-SECP256K1-SHA256-TAI: published vectors, RFC 9381's P-256 example, one error per rule,
and properties (a proof verifies to its output; any single flipped bit is refused)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest
from Crypto.PublicKey import ECC
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.crypto import ecvrf, secp256k1
from ledger.errors import (
    InvalidKey,
    InvalidProof,
    InvalidTransaction,
    InvalidVrfKey,
    MalformedProof,
    ProofMismatch,
)

# Copied from atikayda/ecvrf, vectors/vectors.json (MIT licence): see tests/vectors/README.md.
VECTOR_FILE = Path(__file__).resolve().parent / "vectors" / "ecvrf_secp256k1_sha256_tai.json"
VECTORS: dict[str, Any] = json.loads(VECTOR_FILE.read_text(encoding="utf-8"))
POSITIVE: list[dict[str, Any]] = VECTORS["vectors"]
NEGATIVE: list[dict[str, Any]] = VECTORS["negative_vectors"]

N = ecvrf.SECP256K1.n
P = ecvrf.SECP256K1.p

# RFC 9381 Appendix B.1, ECVRF-P256-SHA256-TAI, example 10 (suite 0x01).
RFC_P256_SK = bytes.fromhex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721")
RFC_P256_ALPHA = b"sample"
RFC_P256_PI = bytes.fromhex(
    "035b5c726e8c0e2c488a107c600578ee75cb702343c153cb1eb8dec77f4b5071b4"
    "a53f0a46f018bc2c56e58d383f2305e0"
    "975972c26feea0eb122fe7893c15af376b33edf7de17c6ea056d4d82de6bc02f"
)
RFC_P256_BETA = bytes.fromhex("a3ad7b0ef73d8fc6655053ea22f9bede8c743f08bbed3d38821f0e16474b505e")

# The first positive vector (sk = 1, empty alpha), reused where a known-good proof is needed.
GOOD_PK = bytes.fromhex(POSITIVE[0]["pk"])
GOOD_ALPHA = bytes.fromhex(POSITIVE[0]["alpha"])
GOOD_PI = bytes.fromhex(POSITIVE[0]["pi"])
GOOD_BETA = bytes.fromhex(POSITIVE[0]["beta"])

# Why each published bad proof must fail. "tampered Gamma" rows depend on whether the flipped x
# is still on the curve; test_negative_vector checks that against pycryptodome's own decoder.
NEGATIVE_EXPECTED: dict[str, type[InvalidProof]] = {
    "tampered Gamma (bit flip at byte 5)": MalformedProof,
    "tampered Gamma (bit flip at byte 1)": ProofMismatch,
    "tampered c (bit flip at byte 33)": ProofMismatch,
    "tampered c (zeroed challenge)": ProofMismatch,
    "tampered s (bit flip at byte 49)": ProofMismatch,
    "s >= group order (s = n)": MalformedProof,
    "s = n + 1": MalformedProof,
    "valid proof verified with wrong public key": ProofMismatch,
    "valid proof verified with wrong alpha": ProofMismatch,
    "truncated proof (80 bytes)": MalformedProof,
    "extended proof (82 bytes, trailing 0xff)": MalformedProof,
    "Gamma not on curve (x = 2^256-1 > p)": MalformedProof,
    "all-zero proof (81 bytes of 0x00)": MalformedProof,
    "Gamma with invalid SEC1 prefix 0x04": MalformedProof,
    "empty alpha proof verified with single null byte alpha": ProofMismatch,
}


def decodes_independently(point: bytes) -> bool:
    """Whether pycryptodome's own SEC1 import (not this module's decoder) accepts the point."""
    try:
        secp256k1.validate_public_key(point)
    except InvalidKey:
        return False
    return True


def flip_bit(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(flipped)


def scalar_bytes(value: int) -> bytes:
    return value.to_bytes(32, "big")


# --- published secp256k1 vectors -------------------------------------------------------------


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["label"] for v in POSITIVE])
def test_vector_every_intermediate_value(vector: dict[str, Any]) -> None:
    sk = bytes.fromhex(vector["sk"])
    pk = bytes.fromhex(vector["pk"])
    alpha = bytes.fromhex(vector["alpha"])
    h = bytes.fromhex(vector["h"])

    assert ecvrf.derive_public_key(sk).hex() == vector["pk"]
    assert ecvrf.encode_to_curve(pk, alpha) == (h, vector["h_ctr"])
    assert ecvrf.nonce(sk, h) == int(vector["k"], 16)
    points = [bytes.fromhex(vector[name]) for name in ("gamma", "u", "v")]
    assert ecvrf.challenge(pk, h, *points) == int(vector["c"], 16)

    trace = ecvrf.prove_with_trace(sk, alpha)
    assert trace.public_key.hex() == vector["pk"]
    assert (trace.h.hex(), trace.h_ctr) == (vector["h"], vector["h_ctr"])
    assert trace.k == int(vector["k"], 16)
    assert trace.gamma.hex() == vector["gamma"]
    assert (trace.u.hex(), trace.v.hex()) == (vector["u"], vector["v"])
    assert (trace.c, trace.s) == (int(vector["c"], 16), int(vector["s"], 16))
    assert trace.proof.hex() == vector["pi"]
    assert trace.beta.hex() == vector["beta"]
    assert ecvrf.prove(sk, alpha).hex() == vector["pi"]


@pytest.fixture(params=secp256k1.ENGINES)
def engine(request: pytest.FixtureRequest) -> Any:
    """Each test that takes it runs under both secp256k1 engines: verify's point arithmetic goes
    through libsecp256k1 when the engine is coincurve, through the pure-Python reference else."""
    with engine_forced(request.param):
        yield request.param


@contextlib.contextmanager
def engine_forced(name: str) -> Iterator[None]:
    """``POSCTL_SECP256K1=name`` for the block (the engine is read once and cached)."""
    before = os.environ.get(secp256k1.ENGINE_VARIABLE)
    os.environ[secp256k1.ENGINE_VARIABLE] = name
    secp256k1.engine.cache_clear()
    try:
        assert secp256k1.engine() == name
        yield
    finally:
        if before is None:
            os.environ.pop(secp256k1.ENGINE_VARIABLE, None)
        else:
            os.environ[secp256k1.ENGINE_VARIABLE] = before
        secp256k1.engine.cache_clear()


def verify_outcome(name: str, public_key: bytes, alpha: bytes, proof: bytes) -> tuple[str, str]:
    """("ok", beta) or (error class, message) of verify under engine ``name``."""
    with engine_forced(name):
        try:
            return "ok", ecvrf.verify(public_key, alpha, proof).hex()
        except InvalidProof as exc:
            return type(exc).__name__, str(exc)


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["label"] for v in POSITIVE])
def test_libsecp256k1_computes_the_reference_h_u_and_v(vector: dict[str, Any]) -> None:
    pk, alpha, pi = (bytes.fromhex(vector[name]) for name in ("pk", "alpha", "pi"))
    with engine_forced("coincurve"):
        points = ecvrf._libsecp256k1_points(ecvrf.SECP256K1, pk, alpha, pi)
    assert points is not None and tuple(p.hex() for p in points) == (vector["h"], vector["u"], vector["v"])
    with engine_forced("pycryptodome"):
        assert ecvrf._libsecp256k1_points(ecvrf.SECP256K1, pk, alpha, pi) is None


@pytest.mark.parametrize("vector", POSITIVE, ids=[v["label"] for v in POSITIVE])
def test_vector_verifies_to_beta(vector: dict[str, Any], engine: str) -> None:
    pk, alpha, pi = (bytes.fromhex(vector[name]) for name in ("pk", "alpha", "pi"))
    assert ecvrf.verify(pk, alpha, pi).hex() == vector["beta"]
    assert ecvrf.proof_to_hash(pi).hex() == vector["beta"]


def test_vectors_file_is_the_one_described() -> None:
    assert VECTORS["suite"] == ecvrf.SECP256K1.name
    assert (len(POSITIVE), len(NEGATIVE)) == (51, 15)
    assert set(NEGATIVE_EXPECTED) == {v["description"] for v in NEGATIVE}


@pytest.mark.parametrize("vector", NEGATIVE, ids=[v["description"] for v in NEGATIVE])
def test_negative_vector(vector: dict[str, Any], engine: str) -> None:
    assert vector["expected_verify"] is False
    pk, alpha, pi = (bytes.fromhex(vector[name]) for name in ("pk", "alpha", "pi"))
    expected = NEGATIVE_EXPECTED[vector["description"]]
    if vector["description"].startswith("tampered Gamma"):
        assert (expected is ProofMismatch) == decodes_independently(pi[:33])
    with pytest.raises(expected):
        ecvrf.verify(pk, alpha, pi)


# --- RFC 9381's own example on P-256 ----------------------------------------------------------


def test_rfc9381_p256_example() -> None:
    assert ecvrf.prove(RFC_P256_SK, RFC_P256_ALPHA, suite=ecvrf.P256) == RFC_P256_PI
    pk = ecvrf.derive_public_key(RFC_P256_SK, suite=ecvrf.P256)
    assert ecvrf.verify(pk, RFC_P256_ALPHA, RFC_P256_PI, suite=ecvrf.P256) == RFC_P256_BETA
    assert ecvrf.proof_to_hash(RFC_P256_PI, suite=ecvrf.P256) == RFC_P256_BETA


def test_rfc9381_p256_example_refuses_other_alpha() -> None:
    pk = ecvrf.derive_public_key(RFC_P256_SK, suite=ecvrf.P256)
    with pytest.raises(ProofMismatch):
        ecvrf.verify(pk, b"test", RFC_P256_PI, suite=ecvrf.P256)


@pytest.mark.parametrize("suite", [ecvrf.SECP256K1, ecvrf.P256], ids=lambda s: s.name)
def test_suite_constants_match_pycryptodome(suite: ecvrf.Suite) -> None:
    generator = ECC.construct(curve=suite.curve_name, d=1).pointQ
    assert generator.xy == suite.generator
    assert (generator * suite.n).is_point_at_infinity()
    assert not (generator * (suite.n - 1)).is_point_at_infinity()
    gx, gy = suite.generator
    assert (gy * gy - (gx**3 + suite.a * gx + suite.b)) % suite.p == 0


def test_sizes() -> None:
    assert (ecvrf.PROOF_SIZE, ecvrf.OUTPUT_SIZE, ecvrf.CHALLENGE_SIZE) == (81, 32, 16)
    assert len(GOOD_PI) == ecvrf.PROOF_SIZE


def test_vrf_key_is_the_signing_key() -> None:
    sk = bytes.fromhex(POSITIVE[5]["sk"])
    assert ecvrf.derive_public_key(sk) == secp256k1.public_key_from_private(sk)


# --- secret keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    [b"\x01" * 31, bytes(33), scalar_bytes(0), scalar_bytes(N), scalar_bytes(2**256 - 1)],
    ids=["31 bytes", "33 bytes", "zero", "n", "2^256-1"],
)
def test_prove_refuses_secret_key_outside_range(secret_key: bytes) -> None:
    with pytest.raises(InvalidKey):
        ecvrf.prove(secret_key, b"alpha")


def test_prove_accepts_largest_secret_key() -> None:
    pi = ecvrf.prove(scalar_bytes(N - 1), b"alpha")
    public_key = ecvrf.derive_public_key(scalar_bytes(N - 1))
    assert ecvrf.verify(public_key, b"alpha", pi) == ecvrf.proof_to_hash(pi)


# --- public keys (RFC 9381 validate_key) ------------------------------------------------------

# x = 5: 5^3 + 7 = 132 is not a square mod p, so no point has it (pycryptodome agrees below).
X_NOT_ON_CURVE = b"\x02" + (5).to_bytes(32, "big")


@pytest.mark.parametrize(
    "public_key",
    [
        GOOD_PK[:32],
        GOOD_PK + b"\x00",
        b"",
        b"\x00",  # SEC1's encoding of the point at infinity
        b"\x04" + GOOD_PK[1:],
        b"\x00" + GOOD_PK[1:],
        b"\x02" + P.to_bytes(32, "big"),
        b"\x03" + (2**256 - 1).to_bytes(32, "big"),
        X_NOT_ON_CURVE,
        bytes(ECC.construct(curve="secp256k1", d=1).public_key().export_key(format="SEC1")),
    ],
    ids=[
        "32 bytes", "34 bytes", "empty", "infinity", "prefix 04", "prefix 00", "x = p",
        "x = 2^256-1", "x not on curve", "uncompressed",
    ],
)
def test_verify_refuses_public_key_that_is_not_a_point(public_key: bytes) -> None:
    assert not decodes_independently(public_key)
    with pytest.raises(InvalidVrfKey):
        ecvrf.verify(public_key, GOOD_ALPHA, GOOD_PI)


def test_public_key_error_names_the_rule() -> None:
    with pytest.raises(InvalidVrfKey, match=r"prefix is 0x04, must be 0x02 or 0x03"):
        ecvrf.verify(b"\x04" + GOOD_PK[1:], GOOD_ALPHA, GOOD_PI)
    with pytest.raises(InvalidVrfKey, match=r"not below the field prime p"):
        ecvrf.verify(b"\x02" + P.to_bytes(32, "big"), GOOD_ALPHA, GOOD_PI)


def test_verify_checks_the_key_before_the_proof() -> None:
    with pytest.raises(InvalidVrfKey):
        ecvrf.verify(X_NOT_ON_CURVE, GOOD_ALPHA, bytes(81))


def test_errors_are_invalid_transactions() -> None:
    for error in (MalformedProof, InvalidVrfKey, ProofMismatch):
        assert issubclass(error, InvalidProof)
    assert issubclass(InvalidProof, InvalidTransaction)


# --- proof decoding ---------------------------------------------------------------------------


def with_c_and_s(proof: bytes, c: int, s: int) -> bytes:
    return proof[:33] + c.to_bytes(16, "big") + s.to_bytes(32, "big")


def test_s_just_below_n_decodes_and_then_mismatches() -> None:
    c = int.from_bytes(GOOD_PI[33:49], "big")
    with pytest.raises(ProofMismatch):
        ecvrf.verify(GOOD_PK, GOOD_ALPHA, with_c_and_s(GOOD_PI, c, N - 1))


def test_zero_c_and_s_is_refused_not_crashed() -> None:
    # U = 0·B − 0·Y is the point at infinity, which has no 33-byte encoding to hash.
    with pytest.raises(ProofMismatch, match="point at infinity"):
        ecvrf.verify(GOOD_PK, GOOD_ALPHA, with_c_and_s(GOOD_PI, 0, 0))


def test_s_out_of_range_message_names_the_rule() -> None:
    with pytest.raises(MalformedProof, match="not below the group order n"):
        ecvrf.verify(GOOD_PK, GOOD_ALPHA, with_c_and_s(GOOD_PI, 1, N))


def test_proof_length_message_names_the_rule() -> None:
    with pytest.raises(MalformedProof, match="a VRF proof is 81 bytes, got 80"):
        ecvrf.verify(GOOD_PK, GOOD_ALPHA, GOOD_PI[:80])


def test_proof_to_hash_of_good_proof() -> None:
    assert ecvrf.proof_to_hash(GOOD_PI) == GOOD_BETA


@pytest.mark.parametrize(
    "proof",
    [GOOD_PI[:80], GOOD_PI + b"\x00", b"\x04" + GOOD_PI[1:], X_NOT_ON_CURVE + GOOD_PI[33:],
     with_c_and_s(GOOD_PI, 0, N)],
    ids=["80 bytes", "82 bytes", "prefix 04", "Gamma not on curve", "s = n"],
)
def test_proof_to_hash_refuses_undecodable_proof(proof: bytes) -> None:
    with pytest.raises(MalformedProof):
        ecvrf.proof_to_hash(proof)


def test_verify_takes_bytearray_and_memoryview() -> None:
    beta = ecvrf.verify(bytearray(GOOD_PK), memoryview(GOOD_ALPHA), bytearray(GOOD_PI))
    assert beta == GOOD_BETA


# --- properties -------------------------------------------------------------------------------

secret_keys = st.integers(min_value=1, max_value=N - 1).map(scalar_bytes)
alphas = st.binary(min_size=0, max_size=64)
VRF_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@VRF_SETTINGS
@given(secret_key=secret_keys, alpha=alphas)
def test_proof_verifies_to_its_hash(secret_key: bytes, alpha: bytes) -> None:
    pi = ecvrf.prove(secret_key, alpha)
    assert len(pi) == ecvrf.PROOF_SIZE
    beta = ecvrf.verify(ecvrf.derive_public_key(secret_key), alpha, pi)
    assert beta == ecvrf.proof_to_hash(pi)
    assert len(beta) == ecvrf.OUTPUT_SIZE


@VRF_SETTINGS
@given(secret_key=secret_keys, alpha=alphas, bit=st.integers(min_value=0, max_value=81 * 8 - 1))
def test_any_flipped_proof_bit_is_refused(secret_key: bytes, alpha: bytes, bit: int) -> None:
    pi = flip_bit(ecvrf.prove(secret_key, alpha), bit)
    if bit < 33 * 8:
        decodes = decodes_independently(pi[:33])
        expected: type[InvalidProof] = ProofMismatch if decodes else MalformedProof
    elif bit < 49 * 8:
        expected = ProofMismatch  # c is any 16 bytes
    else:
        expected = ProofMismatch if int.from_bytes(pi[49:], "big") < N else MalformedProof
    with pytest.raises(expected):
        ecvrf.verify(ecvrf.derive_public_key(secret_key), alpha, pi)


@VRF_SETTINGS
@given(secret_key=secret_keys, alpha=alphas, bit=st.integers(min_value=0, max_value=33 * 8 - 1))
def test_any_flipped_public_key_bit_is_refused(secret_key: bytes, alpha: bytes, bit: int) -> None:
    pi = ecvrf.prove(secret_key, alpha)
    public_key = flip_bit(ecvrf.derive_public_key(secret_key), bit)
    decodes = decodes_independently(public_key)
    expected: type[InvalidProof] = ProofMismatch if decodes else InvalidVrfKey
    with pytest.raises(expected):
        ecvrf.verify(public_key, alpha, pi)


@VRF_SETTINGS
@given(secret_key=secret_keys, alpha=st.binary(min_size=1, max_size=64), data=st.data())
def test_any_flipped_alpha_bit_is_refused(
    secret_key: bytes, alpha: bytes, data: st.DataObject
) -> None:
    pi = ecvrf.prove(secret_key, alpha)
    bit = data.draw(st.integers(min_value=0, max_value=len(alpha) * 8 - 1))
    with pytest.raises(ProofMismatch):
        ecvrf.verify(ecvrf.derive_public_key(secret_key), flip_bit(alpha, bit), pi)


@VRF_SETTINGS
@given(secret_key=secret_keys, alpha=alphas, flips=st.lists(st.integers(0, 81 * 8 - 1), max_size=2),
       key_flip=st.one_of(st.none(), st.integers(0, 33 * 8 - 1)))
def test_both_engines_give_the_same_verdict(secret_key: bytes, alpha: bytes, flips: list[int],
                                            key_flip: int | None) -> None:
    """The same β or the same error, class and message, whatever is flipped in proof or key."""
    pi = ecvrf.prove(secret_key, alpha)
    for bit in flips:
        pi = flip_bit(pi, bit)
    public_key = ecvrf.derive_public_key(secret_key)
    if key_flip is not None:
        public_key = flip_bit(public_key, key_flip)
    reference = verify_outcome("pycryptodome", public_key, alpha, pi)
    assert verify_outcome("coincurve", public_key, alpha, pi) == reference
    if not flips and key_flip is None:
        assert reference == ("ok", ecvrf.proof_to_hash(pi).hex())
