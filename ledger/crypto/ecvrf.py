"""ECVRF-SECP256K1-SHA256-TAI: the verifiable random function behind proposals (design decision 14).

Why a VRF: a validator's proposal for height h carries β = VRF(sk, α) with α fixed by the chain,
so β is unpredictable to everyone else, yet unique per key and α: the holder cannot re-roll it,
and anyone holding the public key checks it with the 81-byte proof π.

RFC 9381 defines elliptic-curve suites only for P-256 and edwards25519. Suite 0xFE is
ECVRF-P256-SHA256-TAI with secp256k1 in place of P-256 and every other step unchanged:

* encode_to_curve by try-and-increment (section 5.4.1.1): hash the suite byte, 0x01, the public
  key, α, a one-byte counter and 0x00; read the digest as the x of a point with even y (0x02‖x);
  take the first counter that gives a point;
* the nonce k by RFC 6979 (section 5.4.2.1) over SHA-256 of the encoded point H;
* the challenge c (section 5.4.3): SHA-256 over suite, 0x02, the five points Y, H, Γ, U, V and
  0x00, truncated to 16 bytes;
* β (section 5.2): SHA-256 over suite, 0x03, Γ and 0x00 (both curves have cofactor 1).

Points travel in SEC1 compressed form (33 bytes). The code is generic over :class:`Suite`, so
RFC 9381's own P-256 example checks the structure, and the 0xFE vectors check the curve swap.

pycryptodome does the curve arithmetic. Verification treats every scalar as public (the faster,
variable-time path, except s·B, where the generator's precomputed table already wins); proving
keeps x and k secret (pycryptodome's constant-time, blinded path).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from Crypto.Math.Numbers import Integer
from Crypto.PublicKey.ECC import EccPoint

from ledger.errors import InvalidKey
from ledger.errors import InvalidProof, InvalidVrfKey, MalformedProof, ProofMismatch

__all__ = [
    "CHALLENGE_SIZE",
    "OUTPUT_SIZE",
    "P256",
    "PROOF_SIZE",
    "SECP256K1",
    "ProofTrace",
    "Suite",
    "challenge",
    "decode_proof",
    "derive_public_key",
    "encode_to_curve",
    "nonce",
    "point_to_string",
    "proof_to_hash",
    "prove",
    "prove_with_trace",
    "string_to_point",
    "verify",
]

HASH_NAME = "sha256"
"""Every suite here is a "-SHA256-TAI" suite: SHA-256 for hashing and for RFC 6979's HMAC."""

CHALLENGE_SIZE = 16
"""cLen: the challenge is SHA-256 truncated to 16 bytes (128-bit security, as in the RFC)."""

ENCODE_TO_CURVE_FRONT = b"\x01"
"""Domain separator before the public key in encode_to_curve's hash."""

ENCODE_TO_CURVE_BACK = b"\x00"
"""Domain separator closing encode_to_curve's hash input."""

CHALLENGE_FRONT = b"\x02"
"""Domain separator before the five points in the challenge hash."""

CHALLENGE_BACK = b"\x00"
"""Domain separator closing the challenge hash input."""

PROOF_TO_HASH_FRONT = b"\x03"
"""Domain separator before Γ in the output hash."""

PROOF_TO_HASH_BACK = b"\x00"
"""Domain separator closing the output hash input."""

EVEN_Y = 0x02
"""SEC1 prefix of a compressed point whose y is even (also how a hash becomes a candidate x)."""

ODD_Y = 0x03
"""SEC1 prefix of a compressed point whose y is odd."""

MAX_ENCODE_TRIES = 256
"""The counter is one byte; each try fails with probability ~1/2, so 256 failures never happen."""

PUBLIC_KEY_CACHE_SIZE = 4096
"""Decoded VRF public keys kept: more than any validator set posctl expects, a few MB at most."""

MAX_NONCE_TRIES = 64
"""RFC 6979 retries only for a candidate k outside [1, n): about 2^-128 per try on these curves."""


@dataclass(frozen=True)
class Suite:
    """One ECVRF ciphersuite over a prime-order short-Weierstrass curve y² = x³ + ax + b mod p.

    Only curves with p ≡ 3 (mod 4) fit: square roots are then one exponentiation.
    """

    name: str
    suite_byte: int
    curve_name: str
    """pycryptodome's name for the curve."""
    p: int
    a: int
    b: int
    n: int
    """Order of the generator (the RFC's q); the cofactor is 1."""
    generator: tuple[int, int]

    def __post_init__(self) -> None:
        if self.p % 4 != 3:
            raise ValueError(f"suite {self.name}: p is not 3 mod 4, square roots need another way")

    @property
    def suite_string(self) -> bytes:
        """The one-byte suite string that opens every hash input."""
        return bytes([self.suite_byte])

    @property
    def field_size(self) -> int:
        """Bytes of a coordinate."""
        return (self.p.bit_length() + 7) // 8

    @property
    def point_size(self) -> int:
        """ptLen: a compressed point is a prefix byte and x."""
        return 1 + self.field_size

    @property
    def scalar_size(self) -> int:
        """qLen: bytes of a scalar mod n (s in the proof, the secret key)."""
        return (self.n.bit_length() + 7) // 8

    @property
    def proof_size(self) -> int:
        """Γ ‖ c ‖ s."""
        return self.point_size + CHALLENGE_SIZE + self.scalar_size


SECP256K1 = Suite(
    name="ECVRF-SECP256K1-SHA256-TAI",
    suite_byte=0xFE,
    curve_name="secp256k1",
    p=0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F,
    a=0,
    b=7,
    n=0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    generator=(
        0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
        0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
    ),
)
"""The suite posctl uses: the VRF key is the account's secp256k1 signing key."""

P256 = Suite(
    name="ECVRF-P256-SHA256-TAI",
    suite_byte=0x01,
    curve_name="P-256",
    p=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    a=-3,
    b=0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    n=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    generator=(
        0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
        0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    ),
)
"""RFC 9381's own suite 0x01, kept so its published example can check this code."""

PROOF_SIZE = SECP256K1.proof_size
"""81 bytes: Γ (33) ‖ c (16) ‖ s (32)."""

OUTPUT_SIZE = hashlib.new(HASH_NAME).digest_size
"""β is one SHA-256 digest: 32 bytes."""


@dataclass(frozen=True)
class ProofTrace:
    """Every intermediate value of one proof, for known-answer tests.

    ``k`` is the secret nonce: anyone who sees it and the proof can solve for the secret key,
    so a trace must never leave the process that holds the key.
    """

    public_key: bytes
    h: bytes
    h_ctr: int
    k: int
    gamma: bytes
    u: bytes
    v: bytes
    c: int
    s: int
    proof: bytes
    beta: bytes


# --- points ---------------------------------------------------------------------------------


@functools.cache
def _generator(suite: Suite) -> EccPoint:
    """B, built once per suite (pycryptodome recognises it and uses its precomputed table)."""
    gx, gy = suite.generator
    return EccPoint(gx, gy, suite.curve_name)


@functools.cache
def _sqrt_exponent(suite: Suite) -> Integer:
    """(p + 1) / 4: raising a square to it gives a square root when p ≡ 3 (mod 4)."""
    return Integer((suite.p + 1) // 4, public=True)


@functools.cache
def _modulus(suite: Suite) -> Integer:
    """p as pycryptodome's Integer: its modular power runs in C, about twice Python's speed."""
    return Integer(suite.p, public=True)


def _lift_x(suite: Suite, x: int, odd: bool) -> EccPoint | None:
    """The point with this x and y of this parity, or None if x is no point's x coordinate."""
    if x >= suite.p:
        return None
    rhs = (x * x * x + suite.a * x + suite.b) % suite.p
    y = int(pow(Integer(rhs, public=True), _sqrt_exponent(suite), _modulus(suite)))
    if y * y % suite.p != rhs:
        return None
    if (y & 1) != odd:
        y = suite.p - y  # y = 0 would be a point of order 2, which a prime-order curve lacks
    return EccPoint(x, y, suite.curve_name)


def string_to_point(data: bytes, *, suite: Suite = SECP256K1) -> EccPoint:
    """Decode a compressed SEC1 point, refusing anything but the one valid encoding.

    Raises ``ValueError`` naming the rule; callers turn it into the error of what was decoded
    (a public key or a proof). The point at infinity has no 33-byte encoding, so it never decodes.
    """
    if len(data) != suite.point_size:
        raise ValueError(f"a point is {suite.point_size} bytes, got {len(data)}")
    prefix = data[0]
    if prefix not in (EVEN_Y, ODD_Y):
        raise ValueError(f"point prefix is 0x{prefix:02x}, must be 0x02 or 0x03")
    x = int.from_bytes(data[1:], "big")
    if x >= suite.p:
        raise ValueError("point x is not below the field prime p")
    point = _lift_x(suite, x, prefix == ODD_Y)
    if point is None:
        raise ValueError(f"x {data[1:].hex()} is not the x of a point on {suite.curve_name}")
    return point


def point_to_string(point: EccPoint, *, suite: Suite = SECP256K1) -> bytes:
    """Compressed SEC1 encoding; callers never pass the point at infinity (it has none here)."""
    x, y = point.xy
    return bytes([ODD_Y if y & 1 else EVEN_Y]) + x.to_bytes(suite.field_size, "big")


@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE_SIZE)
def _decode_public_key(suite: Suite, public_key: bytes) -> EccPoint:
    """Y from its encoding, cached: the same validators prove block after block, and decoding
    (a square root and an on-curve check) is about a tenth of a verification.

    Callers must not mutate the cached point (pycryptodome's ``*=``/``+=`` work in place).
    """
    try:
        return string_to_point(public_key, suite=suite)
    except ValueError as exc:
        raise InvalidVrfKey(f"VRF public key is not a {suite.curve_name} point: {exc}") from None


def _secret_scalar(suite: Suite, secret_key: bytes) -> int:
    """x from the 32-byte big-endian secret key, which must lie in [1, n)."""
    if len(secret_key) != suite.scalar_size:
        raise InvalidKey(f"a VRF secret key is {suite.scalar_size} bytes, got {len(secret_key)}")
    x = int.from_bytes(secret_key, "big")
    if not 1 <= x < suite.n:
        raise InvalidKey("VRF secret key is outside [1, n)")
    return x


def derive_public_key(secret_key: bytes, *, suite: Suite = SECP256K1) -> bytes:
    """Y = x·B, compressed: for secp256k1 the same bytes as the account's signing public key."""
    x = _secret_scalar(suite, bytes(secret_key))
    return point_to_string(_generator(suite) * x, suite=suite)


# --- the RFC's building blocks --------------------------------------------------------------


def _hash(data: bytes) -> bytes:
    """The suite's Hash (SHA-256)."""
    return hashlib.new(HASH_NAME, data).digest()


def _encode_to_curve(suite: Suite, salt: bytes, alpha: bytes) -> tuple[EccPoint, bytes, int]:
    """H, its encoding and the counter that produced it (RFC 9381 section 5.4.1.1).

    The salt is the encoded public key, so H differs per key: one key's proofs say nothing about
    another's. A digest is a candidate x with even y; half of all x are on the curve.
    """
    prefix = suite.suite_string + ENCODE_TO_CURVE_FRONT + salt + alpha
    for ctr in range(MAX_ENCODE_TRIES):
        digest = _hash(prefix + bytes([ctr]) + ENCODE_TO_CURVE_BACK)
        point = _lift_x(suite, int.from_bytes(digest, "big"), odd=False)
        if point is not None:
            return point, bytes([EVEN_Y]) + digest, ctr
    raise InvalidProof(f"no counter below {MAX_ENCODE_TRIES} maps alpha {alpha.hex()} to a point")


def encode_to_curve(
    public_key: bytes, alpha: bytes, *, suite: Suite = SECP256K1
) -> tuple[bytes, int]:
    """H for this key and α, encoded, with the counter that found it (h and h_ctr in vectors)."""
    _, h_string, ctr = _encode_to_curve(suite, bytes(public_key), bytes(alpha))
    return h_string, ctr


def _bits_to_int(data: bytes, qlen: int) -> int:
    """RFC 6979 bits2int: the leftmost qlen bits of data as an integer."""
    value = int.from_bytes(data, "big")
    excess = len(data) * 8 - qlen
    return value >> excess if excess > 0 else value


def _nonce(suite: Suite, x: int, h_string: bytes) -> int:
    """k by RFC 6979 section 3.2 with m = h_string (RFC 9381 section 5.4.2.1).

    Deterministic, so proving needs no randomness, yet unpredictable without x: a repeated or
    guessable k would reveal x from a single proof. The "suitable for ECDSA" check is omitted,
    as the RFC says.
    """
    qlen = suite.n.bit_length()
    rlen = suite.scalar_size
    h1 = _hash(h_string)
    x_octets = x.to_bytes(rlen, "big")
    h1_octets = (_bits_to_int(h1, qlen) % suite.n).to_bytes(rlen, "big")
    hlen = len(h1)
    v = b"\x01" * hlen
    k = b"\x00" * hlen
    k = hmac.digest(k, v + b"\x00" + x_octets + h1_octets, HASH_NAME)
    v = hmac.digest(k, v, HASH_NAME)
    k = hmac.digest(k, v + b"\x01" + x_octets + h1_octets, HASH_NAME)
    v = hmac.digest(k, v, HASH_NAME)
    for _ in range(MAX_NONCE_TRIES):
        t = b""
        while len(t) * 8 < qlen:
            v = hmac.digest(k, v, HASH_NAME)
            t += v
        candidate = _bits_to_int(t, qlen)
        if 1 <= candidate < suite.n:
            return candidate
        k = hmac.digest(k, v + b"\x00", HASH_NAME)
        v = hmac.digest(k, v, HASH_NAME)
    raise InvalidKey(f"RFC 6979 found no nonce in [1, n) after {MAX_NONCE_TRIES} tries")


def nonce(secret_key: bytes, h_string: bytes, *, suite: Suite = SECP256K1) -> int:
    """The RFC 6979 nonce k for this secret key and encoded H."""
    return _nonce(suite, _secret_scalar(suite, bytes(secret_key)), bytes(h_string))


def challenge(
    y: bytes, h: bytes, gamma: bytes, u: bytes, v: bytes, *, suite: Suite = SECP256K1
) -> int:
    """c from the five encoded points (RFC 9381 section 5.4.3): the Fiat–Shamir hash that binds
    the proof to the key, to α (through H) and to both commitments U and V."""
    digest = _hash(suite.suite_string + CHALLENGE_FRONT + y + h + gamma + u + v + CHALLENGE_BACK)
    return int.from_bytes(digest[:CHALLENGE_SIZE], "big")


def _output(suite: Suite, gamma_string: bytes) -> bytes:
    """β from an already validated Γ (cofactor 1: Γ itself is hashed)."""
    return _hash(suite.suite_string + PROOF_TO_HASH_FRONT + gamma_string + PROOF_TO_HASH_BACK)


def decode_proof(proof: bytes, *, suite: Suite = SECP256K1) -> tuple[EccPoint, int, int]:
    """(Γ, c, s) from π, refusing a wrong length, a Γ that is not a point, and s ≥ n.

    s ≥ n is refused so that each proof has exactly one encoding (RFC 9381 section 5.4.4).
    """
    proof = bytes(proof)
    if len(proof) != suite.proof_size:
        raise MalformedProof(f"a VRF proof is {suite.proof_size} bytes, got {len(proof)}")
    gamma_end = suite.point_size
    c_end = gamma_end + CHALLENGE_SIZE
    try:
        gamma = string_to_point(proof[:gamma_end], suite=suite)
    except ValueError as exc:
        raise MalformedProof(
            f"VRF proof's Gamma is not a {suite.curve_name} point: {exc}"
        ) from None
    c = int.from_bytes(proof[gamma_end:c_end], "big")
    s = int.from_bytes(proof[c_end:], "big")
    if s >= suite.n:
        raise MalformedProof(f"VRF proof's s {proof[c_end:].hex()} is not below the group order n")
    return gamma, c, s


# --- prove, verify, proof_to_hash -----------------------------------------------------------


def prove_with_trace(secret_key: bytes, alpha: bytes, *, suite: Suite = SECP256K1) -> ProofTrace:
    """π for α under the secret key, with every intermediate value (RFC 9381 section 5.1)."""
    x = _secret_scalar(suite, bytes(secret_key))
    alpha = bytes(alpha)
    base = _generator(suite)
    pk_string = point_to_string(base * x, suite=suite)
    h, h_string, ctr = _encode_to_curve(suite, pk_string, alpha)
    gamma_string = point_to_string(h * x, suite=suite)
    k = _nonce(suite, x, h_string)
    u_string = point_to_string(base * k, suite=suite)
    v_string = point_to_string(h * k, suite=suite)
    c = challenge(pk_string, h_string, gamma_string, u_string, v_string, suite=suite)
    s = (k + c * x) % suite.n
    proof = gamma_string + c.to_bytes(CHALLENGE_SIZE, "big") + s.to_bytes(suite.scalar_size, "big")
    return ProofTrace(
        public_key=pk_string,
        h=h_string,
        h_ctr=ctr,
        k=k,
        gamma=gamma_string,
        u=u_string,
        v=v_string,
        c=c,
        s=s,
        proof=proof,
        beta=_output(suite, gamma_string),
    )


def prove(secret_key: bytes, alpha: bytes, *, suite: Suite = SECP256K1) -> bytes:
    """π (81 bytes for secp256k1): proves that β = proof_to_hash(π) is this key's output for α."""
    return prove_with_trace(secret_key, alpha, suite=suite).proof


def proof_to_hash(proof: bytes, *, suite: Suite = SECP256K1) -> bytes:
    """β from π without checking it against a key (RFC 9381 section 5.2): only for a proof
    already verified, or one's own. Raises :class:`MalformedProof` if π cannot be decoded."""
    decode_proof(proof, suite=suite)
    return _output(suite, bytes(proof[: suite.point_size]))


_IDENTITY = "VRF proof does not verify: U or V is the point at infinity"
"""An honest prover's U = k·B and V = k·H with k in [1, n) are never the identity."""


def _libsecp256k1_points(suite: Suite, public_key: bytes, alpha: bytes, proof: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(H, U, V) encoded, computed by libsecp256k1 (coincurve) when the secp256k1 engine in use is
    coincurve, with U = s·B − c·Y and V = s·H − c·Γ (−c·Y as (n − c)·Y); encode_to_curve's
    candidates are checked by libsecp256k1's point parser.

    None hands the whole verification to the pure-Python reference: another curve, the
    pycryptodome engine, anything that does not decode (the reference then raises the error
    that names it) or a zero term libsecp256k1 cannot represent. Both paths are compared over
    every published vector and random proofs in the tests.
    """
    from ledger.crypto import secp256k1

    if suite is not SECP256K1 or secp256k1.engine() != "coincurve":
        return None
    from coincurve import PublicKey

    size = suite.point_size
    if len(public_key) != size or public_key[0] not in (EVEN_Y, ODD_Y) or len(proof) != suite.proof_size \
            or proof[0] not in (EVEN_Y, ODD_Y):
        return None  # libsecp256k1 would also take other encodings: the reference refuses them
    c = int.from_bytes(proof[size:size + CHALLENGE_SIZE], "big")
    s = int.from_bytes(proof[size + CHALLENGE_SIZE:], "big")
    minus_c = (suite.n - c) % suite.n
    if not 0 < s < suite.n or minus_c == 0:
        return None
    try:
        y, gamma = PublicKey(public_key), PublicKey(proof[:size])
    except ValueError:
        return None
    prefix = suite.suite_string + ENCODE_TO_CURVE_FRONT + public_key + alpha
    h = None
    for ctr in range(MAX_ENCODE_TRIES):
        h_string = bytes([EVEN_Y]) + _hash(prefix + bytes([ctr]) + ENCODE_TO_CURVE_BACK)
        try:
            h = PublicKey(h_string)
            break
        except ValueError:  # x is no point's x (or not below p): the next counter
            continue
    if h is None:
        return None
    s_bytes = s.to_bytes(suite.scalar_size, "big")
    minus_c_bytes = minus_c.to_bytes(suite.scalar_size, "big")
    try:
        u = PublicKey.combine_keys([PublicKey.from_secret(s_bytes), y.multiply(minus_c_bytes)])
        v = PublicKey.combine_keys([h.multiply(s_bytes), gamma.multiply(minus_c_bytes)])
    except ValueError:  # libsecp256k1 refuses a sum that is the point at infinity
        raise ProofMismatch(_IDENTITY) from None
    return h_string, u.format(compressed=True), v.format(compressed=True)


def verify(public_key: bytes, alpha: bytes, proof: bytes, *, suite: Suite = SECP256K1) -> bytes:
    """β if π proves it for this key and α, else raise (RFC 9381 section 5.3, with validate_key).

    Raises :class:`InvalidVrfKey` for a key that is not a point (the identity has no encoding
    and the cofactor is 1, so decoding is the whole of validate_key), :class:`MalformedProof`
    for a proof that does not decode, :class:`ProofMismatch` when the challenge disagrees.
    """
    public_key, alpha, proof = bytes(public_key), bytes(alpha), bytes(proof)
    fast = _libsecp256k1_points(suite, public_key, alpha, proof)
    if fast is not None:
        h_string, u_string, v_string = fast
    else:
        y = _decode_public_key(suite, public_key)
        gamma, c, s = decode_proof(proof, suite=suite)
        h, h_string, _ = _encode_to_curve(suite, public_key, alpha)
        c_public = Integer(c, public=True)
        # U = s·B − c·Y and V = s·H − c·Γ; s·B uses the generator's table (fastest as a plain int).
        u = _generator(suite) * s + -(y * c_public)
        v = h * Integer(s, public=True) + -(gamma * c_public)
        if u.is_point_at_infinity() or v.is_point_at_infinity():
            raise ProofMismatch(_IDENTITY)
        u_string, v_string = point_to_string(u, suite=suite), point_to_string(v, suite=suite)
    gamma_string = proof[: suite.point_size]
    c = int.from_bytes(proof[suite.point_size: suite.point_size + CHALLENGE_SIZE], "big")
    expected = challenge(public_key, h_string, gamma_string, u_string, v_string, suite=suite)
    if expected != c:
        raise ProofMismatch(
            f"VRF proof does not verify for public key {public_key.hex()} and alpha "
            f"{alpha.hex() or '(empty)'}: challenge c does not match"
        )
    return _output(suite, gamma_string)
