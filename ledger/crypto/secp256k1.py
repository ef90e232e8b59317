"""secp256k1 keys and low-S ECDSA signatures.

pycryptodome (>= 4.4, the first release with secp256k1) does the curve work. It emits high-S
signatures about half the time and accepts them on verify, which would let anyone flip a valid
signature into a second valid one; posctl therefore normalises to low-S when signing and refuses
s > n/2 when verifying.

Verification has two engines with one contract. pycryptodome is the reference and always present;
coincurve (libsecp256k1, Bitcoin Core's library, the ``fast`` extra) is several times faster and is
used when installed. ``POSCTL_SECP256K1=pycryptodome`` or ``=coincurve`` forces one. Both run
behind the same range, low-S and key-format checks, so they accept exactly the same signatures
(tests/test_secp256k1_engines.py compares them over the vectors and thousands of random cases).
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable

from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC
from Crypto.Signature import DSS

from ledger.errors import InvalidKey, InvalidParams, InvalidSignature

ENGINE_VARIABLE = "POSCTL_SECP256K1"
"""Environment variable that forces a verification engine: ``pycryptodome`` or ``coincurve``."""

ENGINES = ("pycryptodome", "coincurve")

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
"""n, the order of the secp256k1 group."""

HALF_ORDER = SECP256K1_ORDER // 2
"""Largest s a canonical (low-S) signature may carry."""

PUBLIC_KEY_SIZE = 33
"""Compressed SEC1 public key: 0x02/0x03 prefix and the x coordinate."""

SIGNATURE_SIZE = 64
"""r ‖ s, 32 bytes each, big-endian."""



def _private_key_object(private_key: bytes) -> ECC.EccKey:
    if len(private_key) != 32:
        raise InvalidKey(f"a private key is 32 bytes, got {len(private_key)}")
    d = int.from_bytes(private_key, "big")
    if not 1 <= d < SECP256K1_ORDER:
        raise InvalidKey("private key is outside [1, n)")
    return ECC.construct(curve="secp256k1", d=d)


@functools.lru_cache(maxsize=65536)
def _public_key_object(public_key: bytes) -> ECC.EccKey:
    """Parse once per key: parsing costs about as much as a verification."""
    if len(public_key) != PUBLIC_KEY_SIZE or public_key[0] not in (2, 3):
        raise InvalidKey("a public key is 33 bytes of compressed SEC1 (prefix 02 or 03)")
    try:
        return ECC.import_key(public_key, curve_name="secp256k1")
    except ValueError:
        raise InvalidKey("public key is not a point on secp256k1") from None


def public_key_from_private(private_key: bytes) -> bytes:
    """The 33-byte compressed public key of a 32-byte private key."""
    key = _private_key_object(private_key)
    return key.public_key().export_key(format="SEC1", compress=True)


def validate_public_key(public_key: bytes) -> None:
    """Raise :class:`InvalidKey` unless this is a compressed point on the curve."""
    _public_key_object(bytes(public_key))


def sign(private_key: bytes, message: bytes) -> bytes:
    """RFC 6979 deterministic ECDSA over SHA-256(message), normalised to low-S."""
    signer = DSS.new(_private_key_object(private_key), "deterministic-rfc6979")
    signature = signer.sign(SHA256.new(message))
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if s > HALF_ORDER:
        s = SECP256K1_ORDER - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignature` unless ``signature`` is a canonical signature of ``message``."""
    _engine_verify()(public_key, message, signature)


def _check_form(signature: bytes) -> None:
    """The rules posctl adds to ECDSA, identical for every engine: 64 bytes, r and s in [1, n), low-S."""
    if len(signature) != SIGNATURE_SIZE:
        raise InvalidSignature(f"a signature is {SIGNATURE_SIZE} bytes, got {len(signature)}")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not 1 <= r < SECP256K1_ORDER or not 1 <= s < SECP256K1_ORDER:
        raise InvalidSignature("signature r or s is outside [1, n)")
    if s > HALF_ORDER:
        raise InvalidSignature("signature is not low-S (s > n/2): re-sign with a canonical signer")


def verify_pycryptodome(public_key: bytes, message: bytes, signature: bytes) -> None:
    """The reference engine."""
    _check_form(signature)
    try:
        key = _public_key_object(bytes(public_key))
    except InvalidKey as exc:
        raise InvalidSignature(str(exc)) from None
    try:
        DSS.new(key, "sec1").verify(SHA256.new(message), signature)
    except ValueError:
        raise InvalidSignature("signature does not verify for this public key and message") from None


@functools.lru_cache(maxsize=65536)
def _coincurve_key(public_key: bytes) -> "object":
    """A parsed libsecp256k1 key, once per key (the same format rule as the reference)."""
    import coincurve

    if len(public_key) != PUBLIC_KEY_SIZE or public_key[0] not in (2, 3):
        raise InvalidKey("a public key is 33 bytes of compressed SEC1 (prefix 02 or 03)")
    try:
        return coincurve.PublicKey(public_key)
    except ValueError:
        raise InvalidKey("public key is not a point on secp256k1") from None


def verify_coincurve(public_key: bytes, message: bytes, signature: bytes) -> None:
    """libsecp256k1 through coincurve; refuses exactly what :func:`verify_pycryptodome` refuses."""
    from coincurve.ecdsa import cdata_to_der, deserialize_compact

    _check_form(signature)
    try:
        key = _coincurve_key(bytes(public_key))
    except InvalidKey as exc:
        raise InvalidSignature(str(exc)) from None
    try:
        good = key.verify(cdata_to_der(deserialize_compact(bytes(signature))), message)  # type: ignore[attr-defined]
    except ValueError:
        good = False
    if not good:
        raise InvalidSignature("signature does not verify for this public key and message")


def coincurve_available() -> bool:
    return importlib.util.find_spec("coincurve") is not None


@functools.lru_cache(maxsize=1)
def engine() -> str:
    """The engine in use: the one ``POSCTL_SECP256K1`` names, else coincurve if installed."""
    forced = os.environ.get(ENGINE_VARIABLE, "").strip().lower()
    if forced and forced not in ENGINES:
        raise InvalidParams(f"{ENGINE_VARIABLE}={forced!r} is not an engine: use pycryptodome or coincurve")
    if forced == "coincurve" and not coincurve_available():
        raise InvalidParams(f"{ENGINE_VARIABLE}=coincurve but coincurve is not installed: pip install 'posctl[fast]'")
    if forced:
        return forced
    return "coincurve" if coincurve_available() else "pycryptodome"


def _engine_verify() -> Callable[[bytes, bytes, bytes], None]:
    return verify_coincurve if engine() == "coincurve" else verify_pycryptodome
