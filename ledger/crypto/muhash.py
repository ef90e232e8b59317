"""MuHash3072: the multiset hash behind each block header's state root (design decision 9).

Why MuHash: the state root must commit to the whole state, yet a block touches only a few
entries. MuHash maps each entry to a number modulo a 3072-bit prime and multiplies them together,
so the hash of a set is independent of order, and adding or removing one entry is one modular
multiplication. Updating the root therefore costs time proportional to the entries a block
touches, never to the size of the state, and no tree has to be stored. Bitcoin Core uses the
same construction for its UTXO-set hash (``gettxoutsetinfo hash_type=muhash``, coinstatsindex).

This module reproduces Bitcoin Core's ``src/crypto/muhash.cpp`` bit for bit:

* an element ``data`` becomes ``SHA256(data)``, used as a ChaCha20 key with an all-zero nonce and
  block counter starting at 0; the first 384 keystream bytes, read as a little-endian integer, are
  the element's number (Core: ``ChaCha20Aligned(key).Keystream``, RFC 8439 layout with a 96-bit
  nonce of zeros; with a zero nonce and six blocks, the 64-bit-nonce layout gives the same bytes);
* the modulus is ``p = 2**3072 - 1103717``, the largest 3072-bit safe prime;
* insertions multiply a numerator, removals multiply a denominator (no inverse per removal);
* the digest is ``SHA256(numerator * denominator**-1 mod p)`` with the number written as 384
  bytes little-endian. Core prints that digest through ``uint256``, i.e. byte-reversed.

Python's integers do the arithmetic; ``pow(x, -1, p)`` is the one modular inverse, paid only by
:meth:`MuHash3072.digest` and :meth:`MuHash3072.to_bytes`.

Security note: MuHash is only collision-resistant over *sets* of distinct elements hashed with
SHA256 first; callers must hash each (key, value) entry with an unambiguous encoding, and must
remove exactly the bytes they inserted.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

from Crypto.Cipher import ChaCha20

try:  # optional (the ``fast`` extra): GMP's multiplication, for hashing many elements at once
    import gmpy2
except ImportError:  # pragma: no cover - depends on the installation
    gmpy2 = None

from ledger.errors import EncodingError

__all__ = ["BYTE_SIZE", "MODULUS", "MuHash3072"]

MODULUS = 2**3072 - 1103717
"""The prime modulus ``2**3072 - 1103717``, as in Bitcoin Core."""

BYTE_SIZE = 384
"""Bytes in one serialised 3072-bit number (little-endian)."""

_NONCE = bytes(12)  # all-zero 96-bit nonce; the block counter starts at 0
_ZERO_BLOCKS = bytes(BYTE_SIZE)  # encrypting zeros yields the raw keystream


def _element(data: bytes) -> int:
    """Map ``data`` to its number modulo :data:`MODULUS` (Core's ``MuHash3072::ToNum3072``)."""
    key = hashlib.sha256(data).digest()
    keystream = ChaCha20.new(key=key, nonce=_NONCE).encrypt(_ZERO_BLOCKS)
    return int.from_bytes(keystream, "little") % MODULUS


_MODULUS_GAP = 2**3072 - MODULUS  # 1103717
_LOW_MASK = (1 << 3072) - 1


_GMP_MODULUS = gmpy2.mpz(MODULUS) if gmpy2 is not None else None


def _mulmod(a: int, b: int) -> int:
    """``a * b mod p``. With gmpy2 (the ``fast`` extra), GMP's product and remainder (about 2x
    faster again). Without it, p = 2^3072 - c with c small lets the high half fold back as
    ``high * c``: a few linear-time steps instead of a long division (about 3x faster than ``%``).
    Every block and every replayed block pays several, so both paths matter."""
    if _GMP_MODULUS is not None:
        return int(gmpy2.mpz(a) * b % _GMP_MODULUS)
    return _mulmod_folded(a, b)


def _mulmod_folded(a: int, b: int) -> int:
    """The pure-Python ``a * b mod p`` (tests compare it with GMP's)."""
    x = a * b
    while x >> 3072:
        x = (x >> 3072) * _MODULUS_GAP + (x & _LOW_MASK)
    return x - MODULUS if x >= MODULUS else x


def _inverse(number: int) -> int:
    """``number**-1 mod p``: paid once per digest, so once per block by forging and by replay;
    GMP's inverse is about twenty times faster than ``pow(x, -1, p)`` at 3072 bits."""
    if gmpy2 is not None:
        return int(gmpy2.invert(number, MODULUS))
    return pow(number, -1, MODULUS)


def _number_from_bytes(blob: bytes) -> int:
    return int.from_bytes(blob, "little")


def _number_to_bytes(number: int) -> bytes:
    return number.to_bytes(BYTE_SIZE, "little")


class MuHash3072:
    """A running MuHash3072 over a multiset of byte strings; starts as the empty set.

    The state is a fraction numerator/denominator modulo :data:`MODULUS`. Inserting and removing
    are each one SHA256, one 384-byte ChaCha20 keystream and one modular multiplication; the same
    element may be inserted more than once (multiset semantics), and removing an element not in
    the set is not detected (it leaves the element with a negative count).
    """

    __slots__ = ("_numerator", "_denominator")

    def __init__(self) -> None:
        self._numerator: int = 1
        self._denominator: int = 1

    def insert(self, data: bytes) -> None:
        """Add one occurrence of ``data`` to the set."""
        self._numerator = _mulmod(self._numerator, _element(data))

    def insert_many(self, items: Iterable[bytes], *, use_gmp: bool = True) -> None:
        """Insert every element of ``items``: the same set as inserting them one by one.

        A genesis inserts a million elements; their product is computed with GMP when gmpy2 is
        installed (several times faster than Python's multiplication at 3072 bits), else with
        :func:`_mulmod_folded`. ``use_gmp=False`` forces the latter (tests compare the two)."""
        if _GMP_MODULUS is not None and use_gmp:
            product = gmpy2.mpz(self._numerator)
            for data in items:
                product = product * _element(data) % _GMP_MODULUS
            self._numerator = int(product)
        else:
            numerator = self._numerator
            for data in items:
                numerator = _mulmod_folded(numerator, _element(data))
            self._numerator = numerator

    def remove(self, data: bytes) -> None:
        """Take one occurrence of ``data`` out of the set.

        Multiplies the denominator rather than the inverse into the numerator, so a removal costs
        no more than an insertion; the single inverse is deferred to :meth:`digest`.
        """
        self._denominator = _mulmod(self._denominator, _element(data))

    def _value(self) -> int:
        """The set's number, numerator / denominator reduced to one residue in [1, p).

        The reduced form is kept (numerator = value, denominator = 1): the same set then needs
        no second inverse when both ``digest`` and ``to_bytes`` are asked for, as each block is.
        """
        if self._denominator != 1:
            self._numerator = _mulmod(self._numerator, _inverse(self._denominator))
            self._denominator = 1
        return self._numerator

    def digest(self) -> bytes:
        """The 32-byte hash of the current set (raw SHA256 output, not Core's reversed display).

        Does not change the set (only how it is held), so it can be called after every block and
        updates continue.
        """
        return hashlib.sha256(_number_to_bytes(self._value())).digest()

    def to_bytes(self) -> bytes:
        """The running state as 384 bytes: the set's single residue, little-endian.

        Folding the denominator in costs one modular inverse but halves the persisted size and
        gives each set exactly one serialisation; :meth:`from_bytes` restores a state that keeps
        accepting inserts and removals with identical results.
        """
        return _number_to_bytes(self._value())

    @classmethod
    def from_bytes(cls, blob: bytes) -> MuHash3072:
        """Restore a state written by :meth:`to_bytes`.

        Raises :class:`EncodingError` for a length other than 384 or a number that is not a
        canonical non-zero residue (zero or at least the modulus), which :meth:`to_bytes` never
        writes.
        """
        if len(blob) != BYTE_SIZE:
            raise EncodingError(
                f"MuHash state is {len(blob)} bytes, expected {BYTE_SIZE}: the stored state root"
                " is truncated or corrupt"
            )
        number = _number_from_bytes(blob)
        if not 0 < number < MODULUS:
            raise EncodingError(
                "MuHash state is not a canonical residue (zero, or not below 2**3072 - 1103717):"
                " the stored state root is corrupt"
            )
        state = cls()
        state._numerator = number
        return state

    def core_serialization(self) -> bytes:
        """Bitcoin Core's serialisation: numerator then denominator, 384 bytes each, little-endian.

        Kept for checking against Core's test vectors; posctl persists :meth:`to_bytes`.
        """
        return _number_to_bytes(self._numerator) + _number_to_bytes(self._denominator)

    @classmethod
    def from_core_serialization(cls, blob: bytes) -> MuHash3072:
        """Read Core's 768-byte serialisation; like Core, numbers at or above the modulus are
        accepted and reduced. A denominator that is zero modulo p is refused
        (:class:`EncodingError`), since it has no inverse.
        """
        if len(blob) != 2 * BYTE_SIZE:
            raise EncodingError(
                f"Core MuHash serialisation is {len(blob)} bytes, expected {2 * BYTE_SIZE}"
            )
        numerator = _number_from_bytes(blob[:BYTE_SIZE]) % MODULUS
        denominator = _number_from_bytes(blob[BYTE_SIZE:]) % MODULUS
        if denominator == 0:
            raise EncodingError("Core MuHash serialisation has a zero denominator")
        state = cls()
        state._numerator = numerator
        state._denominator = denominator
        return state

    def combine(self, other: MuHash3072) -> None:
        """Add every element of ``other`` to this set: the product of the two.

        The hash is a product, so a large set can be hashed in parts (on several cores) and
        the parts combined, in any order, into the hash of the whole."""
        self._numerator = _mulmod(self._numerator, other._numerator)
        self._denominator = _mulmod(self._denominator, other._denominator)

    def copy(self) -> MuHash3072:
        """An independent copy: updating either leaves the other unchanged."""
        twin = MuHash3072()
        twin._numerator = self._numerator
        twin._denominator = self._denominator
        return twin

    def __eq__(self, other: object) -> bool:
        """Two states are equal when they represent the same multiset (cross-multiplied)."""
        if not isinstance(other, MuHash3072):
            return NotImplemented
        left = self._numerator * other._denominator
        right = other._numerator * self._denominator
        return (left - right) % MODULUS == 0

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"MuHash3072(digest={self.digest().hex()})"
