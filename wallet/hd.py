"""BIP-32 hierarchical deterministic keys over secp256k1.

Curve arithmetic is pycryptodome's (``EccPoint``); HMAC-SHA512, base58check and the
serialisation are written out here from the BIP-32 text because they are short and their
edge cases are exactly what the test vectors check:

* every 32-byte quantity is written with ``to_bytes(32, "big")`` so leading zeros survive
  (test vectors 3 and 4 exist because several libraries dropped them);
* an invalid child (I_L >= n, a zero key, the point at infinity) moves on to the next index,
  as the BIP says, instead of failing or returning a broken key;
* :meth:`ExtendedKey.from_string` enforces every rule test vector 5 probes and names the rule
  it found broken.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

from ledger.crypto.address import hash160
from ledger.crypto.secp256k1 import SECP256K1_ORDER
from Crypto.PublicKey import ECC
from Crypto.PublicKey.ECC import EccPoint

from wallet.errors import DerivationError, InvalidExtendedKey

CURVE_NAME = "secp256k1"
CURVE_ORDER = SECP256K1_ORDER
"""n, the order of the secp256k1 group (the ledger's own constant)."""
FIELD_PRIME = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
"""p, the prime of the field the curve is defined over (y^2 = x^3 + 7)."""
CURVE_B = 7

HARDENED = 0x80000000
"""Indices from 2^31 up are hardened: derivable only from a private key."""
MAX_INDEX = 0xFFFFFFFF

VERSION_XPRV = bytes.fromhex("0488ADE4")
"""Mainnet private version bytes: the string starts with ``xprv``."""
VERSION_XPUB = bytes.fromhex("0488B21E")
"""Mainnet public version bytes: the string starts with ``xpub``."""

MASTER_HMAC_KEY = b"Bitcoin seed"
"""The HMAC key BIP-32 fixes for master key generation."""
MIN_SEED_BYTES = 16
MAX_SEED_BYTES = 64
"""BIP-32 seeds are 128 to 512 bits."""

SERIALIZED_SIZE = 78
"""version 4, depth 1, parent fingerprint 4, child number 4, chain code 32, key 33."""
CHECKSUM_SIZE = 4

_BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_INDEX = {char: i for i, char in enumerate(_BASE58_ALPHABET)}

_PATH_STEP = re.compile(r"^([0-9]+)(['hH]?)$")

_CURVE = ECC._curves[CURVE_NAME]  # pycryptodome's curve table: generator and order
if _CURVE.order != CURVE_ORDER or _CURVE.p != FIELD_PRIME:  # pragma: no cover
    raise ImportError("pycryptodome's secp256k1 parameters differ from BIP-32's")
_GENERATOR = EccPoint(_CURVE.Gx, _CURVE.Gy, CURVE_NAME)


# --- base58check -----------------------------------------------------------------------------


def base58_encode(data: bytes) -> str:
    """Base58 with one ``1`` per leading zero byte (which a plain integer conversion loses)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(_BASE58_ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    """Inverse of :func:`base58_encode`; a character outside the alphabet raises ValueError."""
    number = 0
    for char in text:
        digit = _BASE58_INDEX.get(char)
        if digit is None:
            raise ValueError("character outside the base58 alphabet")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _double_sha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def base58check_encode(payload: bytes) -> str:
    return base58_encode(payload + _double_sha256(payload)[:CHECKSUM_SIZE])


def base58check_decode(text: str) -> bytes:
    """The payload, or ValueError if the string is not base58 or its checksum is wrong."""
    raw = base58_decode(text)
    if len(raw) < CHECKSUM_SIZE:
        raise ValueError("too short to carry a checksum")
    payload, checksum = raw[:-CHECKSUM_SIZE], raw[-CHECKSUM_SIZE:]
    if not hmac.compare_digest(_double_sha256(payload)[:CHECKSUM_SIZE], checksum):
        raise ValueError("checksum mismatch")
    return payload


# --- curve helpers ---------------------------------------------------------------------------


def _hmac_sha512(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


def _compress(point: EccPoint) -> bytes:
    x, y = (int(c) for c in point.xy)
    return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")


@functools.lru_cache(maxsize=4096)
def _decompress(public_key: bytes) -> EccPoint:
    """Parse a compressed SEC1 key, checking the point is on the curve.

    Cached because CKDpub over an account xpub parses the same parent key for every address.
    Callers must not mutate the returned point (pycryptodome's in-place ``+=`` would); this
    module only uses ``+`` and ``*``, which return new points.
    """
    if len(public_key) != 33 or public_key[0] not in (2, 3):
        raise ValueError("not a compressed public key")
    x = int.from_bytes(public_key[1:], "big")
    if x >= FIELD_PRIME:
        raise ValueError("x coordinate is not a field element")
    y_squared = (pow(x, 3, FIELD_PRIME) + CURVE_B) % FIELD_PRIME
    y = pow(y_squared, (FIELD_PRIME + 1) // 4, FIELD_PRIME)  # p = 3 mod 4
    if y * y % FIELD_PRIME != y_squared:
        raise ValueError("x coordinate is not on secp256k1")
    if y & 1 != public_key[0] & 1:
        y = FIELD_PRIME - y
    return EccPoint(x, y, CURVE_NAME)


def _public_from_secret(secret: int) -> bytes:
    return _compress(_GENERATOR * secret)


# --- extended keys ---------------------------------------------------------------------------


class ExtendedKey:
    """A BIP-32 node: a private or public key plus chain code and its place in the tree.

    Immutable. The private key never appears in ``repr``; :meth:`to_string` is the one way to
    export it, and only on purpose.
    """

    __slots__ = (
        "_secret",
        "_public_key",
        "_chain_code",
        "_depth",
        "_parent_fingerprint",
        "_child_number",
    )

    def __init__(
        self,
        *,
        chain_code: bytes,
        depth: int,
        parent_fingerprint: bytes,
        child_number: int,
        secret: int | None = None,
        public_key: bytes | None = None,
    ) -> None:
        """Build from already validated parts; use :meth:`from_seed` or :meth:`from_string`."""
        if (secret is None) == (public_key is None):
            raise ValueError("an extended key holds exactly one of a secret and a public key")
        self._secret = secret
        self._public_key = public_key
        self._chain_code = bytes(chain_code)
        self._depth = depth
        self._parent_fingerprint = bytes(parent_fingerprint)
        self._child_number = child_number

    # construction ----------------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtendedKey:
        """The master key m of a 16-64 byte seed (a BIP-39 seed is 64 bytes)."""
        if not MIN_SEED_BYTES <= len(seed) <= MAX_SEED_BYTES:
            raise DerivationError(
                f"a BIP-32 seed is {MIN_SEED_BYTES} to {MAX_SEED_BYTES} bytes, not {len(seed)}"
            )
        digest = _hmac_sha512(MASTER_HMAC_KEY, bytes(seed))
        secret = int.from_bytes(digest[:32], "big")
        if not 1 <= secret < CURVE_ORDER:  # probability below 2^-127
            raise DerivationError("this seed yields an invalid master key; use another seed")
        return cls(
            secret=secret,
            chain_code=digest[32:],
            depth=0,
            parent_fingerprint=b"\0" * 4,
            child_number=0,
        )

    @classmethod
    def from_string(cls, text: str) -> ExtendedKey:
        """Parse an ``xprv``/``xpub`` string, enforcing every BIP-32 serialisation rule."""
        if not isinstance(text, str):
            raise InvalidExtendedKey("an extended key must be given as an xprv/xpub string")
        try:
            raw = base58check_decode(text.strip())
        except ValueError as exc:
            raise InvalidExtendedKey(f"extended key is not valid base58check: {exc}") from None
        if len(raw) != SERIALIZED_SIZE:
            raise InvalidExtendedKey(
                f"extended key carries {len(raw)} bytes, not {SERIALIZED_SIZE}"
            )
        version = raw[0:4]
        depth = raw[4]
        parent_fingerprint = raw[5:9]
        child_number = int.from_bytes(raw[9:13], "big")
        chain_code = raw[13:45]
        key_data = raw[45:78]

        if version not in (VERSION_XPRV, VERSION_XPUB):
            raise InvalidExtendedKey(
                f"unknown extended key version 0x{version.hex()}: "
                "posctl reads mainnet xprv (0x0488ade4) and xpub (0x0488b21e)"
            )
        if depth == 0 and parent_fingerprint != b"\0" * 4:
            raise InvalidExtendedKey("a depth-0 key must have a zero parent fingerprint")
        if depth == 0 and child_number != 0:
            raise InvalidExtendedKey("a depth-0 key must have child number 0")

        common = dict(
            chain_code=chain_code,
            depth=depth,
            parent_fingerprint=parent_fingerprint,
            child_number=child_number,
        )
        if version == VERSION_XPRV:
            if key_data[0] in (2, 3):
                raise InvalidExtendedKey("xprv version but the key data is a public key")
            if key_data[0] != 0:
                raise InvalidExtendedKey(
                    f"private key data must start with 0x00, not 0x{key_data[0]:02x}"
                )
            secret = int.from_bytes(key_data[1:], "big")
            if not 1 <= secret < CURVE_ORDER:
                raise InvalidExtendedKey("private key is outside the range 1..n-1")
            return cls(secret=secret, **common)

        if key_data[0] == 0:
            raise InvalidExtendedKey("xpub version but the key data is a private key")
        if key_data[0] not in (2, 3):
            raise InvalidExtendedKey(
                f"public key must start with 0x02 or 0x03, not 0x{key_data[0]:02x}"
            )
        try:
            _decompress(key_data)
        except ValueError:
            raise InvalidExtendedKey("public key is not a point on secp256k1") from None
        return cls(public_key=key_data, **common)

    # properties ------------------------------------------------------------------------------

    @property
    def is_private(self) -> bool:
        return self._secret is not None

    @property
    def private_key(self) -> bytes | None:
        """The 32-byte private key (leading zeros kept), or None for a public-only key."""
        if self._secret is None:
            return None
        return self._secret.to_bytes(32, "big")

    @property
    def public_key(self) -> bytes:
        """The 33-byte compressed public key, computed once from the secret if needed."""
        if self._public_key is None:
            # __slots__ object, so no functools.cached_property; fill the slot lazily instead.
            self._public_key = _public_from_secret(self._secret)  # type: ignore[arg-type]
        return self._public_key

    @property
    def chain_code(self) -> bytes:
        return self._chain_code

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def parent_fingerprint(self) -> bytes:
        return self._parent_fingerprint

    @property
    def child_number(self) -> int:
        return self._child_number

    @property
    def identifier(self) -> bytes:
        """Hash160 of the public key: what BIP-32 calls the key identifier."""
        return hash160(self.public_key)

    @property
    def fingerprint(self) -> bytes:
        """First 4 bytes of the identifier; children record it as their parent fingerprint."""
        return self.identifier[:4]

    # derivation ------------------------------------------------------------------------------

    def neuter(self) -> ExtendedKey:
        """N(k, c): the same node without its private key."""
        if self._secret is None:
            return self
        return ExtendedKey(
            public_key=self.public_key,
            chain_code=self._chain_code,
            depth=self._depth,
            parent_fingerprint=self._parent_fingerprint,
            child_number=self._child_number,
        )

    def child(self, index: int) -> ExtendedKey:
        """CKDpriv or CKDpub at ``index`` (>= 2^31 is hardened).

        If ``index`` gives an invalid key (probability below 2^-127) the next index is used, as
        BIP-32 prescribes; the returned key's ``child_number`` says which index it really is.
        """
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
            raise DerivationError(f"child index must be an integer in [0, 2^32), not {index!r}")
        if index >= HARDENED and self._secret is None:
            raise DerivationError(
                f"cannot derive hardened child {index - HARDENED}' from a public key: "
                "hardened steps need the private key"
            )
        while True:
            child = self._child_or_none(index)
            if child is not None:
                return child
            if index in (HARDENED - 1, MAX_INDEX):
                raise DerivationError(f"child {index} is invalid and has no next index")
            index += 1

    def _child_or_none(self, index: int) -> ExtendedKey | None:
        """One CKD step; None when this index yields an invalid key."""
        if self._depth >= 255:
            raise DerivationError("BIP-32 keys are at most 255 levels deep")
        if index >= HARDENED:
            data = b"\0" + self._secret.to_bytes(32, "big")  # type: ignore[union-attr]
        else:
            data = self.public_key
        digest = _hmac_sha512(self._chain_code, data + index.to_bytes(4, "big"))
        tweak = int.from_bytes(digest[:32], "big")
        if tweak >= CURVE_ORDER:
            return None
        common = dict(
            chain_code=digest[32:],
            depth=self._depth + 1,
            parent_fingerprint=self.fingerprint,
            child_number=index,
        )
        if self._secret is not None:
            secret = (tweak + self._secret) % CURVE_ORDER
            if secret == 0:
                return None
            return ExtendedKey(secret=secret, **common)
        point = _GENERATOR * tweak + _decompress(self.public_key)
        if point.is_point_at_infinity():
            return None
        return ExtendedKey(public_key=_compress(point), **common)

    def derive(self, path: str) -> ExtendedKey:
        """Follow ``path``: ``m/44'/1'/0'/0/0`` from a depth-0 key, or ``0/7`` from any key.

        ``'``, ``h`` and ``H`` mark a hardened step.
        """
        key = self
        for index in parse_path(path, absolute_allowed=self._depth == 0):
            key = key.child(index)
        return key

    # serialisation ---------------------------------------------------------------------------

    def to_string(self) -> str:
        """``xprv…`` for a private key, ``xpub…`` for a public one (mainnet version bytes)."""
        if self._secret is not None:
            version, key_data = VERSION_XPRV, b"\0" + self._secret.to_bytes(32, "big")
        else:
            version, key_data = VERSION_XPUB, self.public_key
        return base58check_encode(
            version
            + bytes([self._depth])
            + self._parent_fingerprint
            + self._child_number.to_bytes(4, "big")
            + self._chain_code
            + key_data
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExtendedKey):
            return NotImplemented
        return self.to_string() == other.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())

    def __repr__(self) -> str:
        kind = "private" if self._secret is not None else "public"
        return (
            f"ExtendedKey({kind}, depth={self._depth}, "
            f"child_number={format_index(self._child_number)}, "
            f"fingerprint={self.fingerprint.hex()})"
        )


def parse_path(path: str, *, absolute_allowed: bool = True) -> list[int]:
    """Indices of a derivation path; raise :class:`DerivationError` naming the bad part."""
    if not isinstance(path, str):
        raise DerivationError("a derivation path must be a string such as m/44'/1'/0'/0/0")
    steps = path.strip().split("/")
    if steps[0] in ("m", "M"):
        if not absolute_allowed:
            raise DerivationError(
                f"path {path!r} starts at the master key m but this key is not a master key; "
                "give a relative path such as 0/7"
            )
        steps = steps[1:]
        if not steps:
            return []
    indices = []
    for step in steps:
        match = _PATH_STEP.fullmatch(step)
        if match is None:
            raise DerivationError(
                f"bad step {step!r} in path {path!r}: each step is a number, "
                "optionally followed by ' or h for hardened"
            )
        number = int(match.group(1))
        if number >= HARDENED:
            raise DerivationError(
                f"step {step!r} in path {path!r} is too large: indices are below 2^31 "
                "(mark hardened steps with ' instead of adding 2^31)"
            )
        indices.append(number + HARDENED if match.group(2) else number)
    return indices


def format_index(index: int) -> str:
    """``5`` or ``44'``: how a path shows one step."""
    return f"{index - HARDENED}'" if index >= HARDENED else str(index)
