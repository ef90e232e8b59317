"""Bech32 (BIP-173) addresses: ``pos1…`` strings whose checksum catches typos.

Why bech32: an address mistyped by one character must be refused, never turned into a valid
address of nobody (design decision 3). BIP-173's BCH checksum detects every error touching at most
four characters, its alphabet avoids look-alike characters, and the string is single-case. This is
the original bech32 constant (1), not bech32m: posctl addresses carry no witness version and no
variable-length payload, so the length-extension weakness bech32m fixes does not arise (every
address is the same length, which :func:`decode_address` enforces).

Written from the text of BIP-173. Layers:

* :func:`bech32_encode` / :func:`bech32_decode` work on 5-bit groups and check the string format
  and checksum, as the BIP's test vectors do;
* :func:`convertbits` regroups bits (8 to 5 with padding, 5 to 8 strictly);
* :func:`encode` / :func:`decode` take and return 8-bit payloads for a given prefix;
* :func:`encode_address` / :func:`decode_address` fix the prefix to :data:`ADDRESS_HRP` and the
  payload to :data:`ADDRESS_PAYLOAD_LENGTH` bytes (RIPEMD160(SHA256(compressed pubkey))).

Every rejection raises :class:`ledger.errors.InvalidAddress` with a one-line message naming the
address, the problem and what to do. Messages quote the address itself and nothing longer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ledger.errors import InvalidAddress

__all__ = [
    "ADDRESS_HRP",
    "ADDRESS_PAYLOAD_LENGTH",
    "CHARSET",
    "MAX_LENGTH",
    "bech32_decode",
    "bech32_encode",
    "convertbits",
    "decode",
    "decode_address",
    "encode",
    "encode_address",
    "is_canonical_address",
]

ADDRESS_HRP = "pos"
"""Human-readable prefix of every posctl address."""

ADDRESS_PAYLOAD_LENGTH = 20
"""Bytes in an address payload: a RIPEMD160 digest."""

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
"""The 32 data characters of BIP-173, indexed by their 5-bit value."""

MAX_LENGTH = 90
"""BIP-173's limit on a whole bech32 string; beyond it the checksum's guarantees weaken."""

_CHECKSUM_LENGTH = 6
_SEPARATOR = "1"
_CHARSET_INDEX: dict[str, int] = {char: value for value, char in enumerate(CHARSET)}
# The generator coefficients of BIP-173's BCH code, one per bit shifted out of the top.
_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BECH32_CONSTANT = 1  # bech32m would use 0x2BC830A3 here; posctl uses bech32


def _generator_mix(top: int) -> int:
    """The generators selected by the five bits shifted out of the checksum, XORed together."""
    mixed = 0
    for bit, generator in enumerate(_GENERATORS):
        if (top >> bit) & 1:
            mixed ^= generator
    return mixed


_GENERATOR_TABLE = tuple(_generator_mix(top) for top in range(32))
"""BIP-173's inner loop over the five generators, precomputed for each value of the top bits:
the same remainder in one lookup per character (a million-account genesis checks a million
addresses)."""


def _polymod(values: Iterable[int], checksum: int = 1) -> int:
    """Remainder of the BCH code polynomial over GF(32), as a 30-bit integer."""
    table = _GENERATOR_TABLE
    for value in values:
        checksum = ((checksum & 0x1FFFFFF) << 5) ^ value ^ table[checksum >> 25]
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    """The prefix as the checksum sees it: high bits of each character, a zero, then low bits."""
    codes = [ord(char) for char in hrp]
    return [code >> 5 for code in codes] + [0] + [code & 31 for code in codes]


def _create_checksum(hrp: str, data: Sequence[int]) -> list[int]:
    remainder = _polymod(_expand_hrp(hrp) + list(data) + [0] * _CHECKSUM_LENGTH)
    remainder ^= _BECH32_CONSTANT
    return [(remainder >> (5 * (_CHECKSUM_LENGTH - 1 - i))) & 31 for i in range(_CHECKSUM_LENGTH)]


def _shown(text: str) -> str:
    """The address as quoted in a message: escaped so it stays on one line, never longer."""
    if len(text) > MAX_LENGTH:
        return ascii(text[:MAX_LENGTH]) + "..."
    return ascii(text)


def _check_hrp(hrp: str) -> None:
    """Refuse a prefix that no valid bech32 string could carry (caller error when encoding)."""
    if not hrp:
        raise ValueError("bech32 prefix must not be empty")
    for char in hrp:
        if not 33 <= ord(char) <= 126:
            raise ValueError(f"bech32 prefix {hrp!r} has a character outside ASCII 33-126")
    if hrp != hrp.lower():
        raise ValueError(f"bech32 prefix {hrp!r} must be lowercase")


def bech32_encode(hrp: str, data: list[int]) -> str:
    """Encode a prefix and 5-bit values as a lowercase bech32 string with its checksum.

    Raises :class:`ValueError` (a programming error, not bad user input) for a prefix that is
    empty, not lowercase or outside ASCII 33-126, a value outside 0..31, or a result longer than
    :data:`MAX_LENGTH`.
    """
    _check_hrp(hrp)
    for value in data:
        if not 0 <= value < 32:
            raise ValueError(f"bech32 data value {value} is outside 0..31")
    text = hrp + _SEPARATOR + "".join(CHARSET[v] for v in list(data) + _create_checksum(hrp, data))
    if len(text) > MAX_LENGTH:
        raise ValueError(f"bech32 string would be {len(text)} characters, above {MAX_LENGTH}")
    return text


def bech32_decode(s: str) -> tuple[str, list[int]]:
    """Split a bech32 string into its lowercase prefix and 5-bit data values (checksum removed).

    Checks everything BIP-173 asks of a bech32 string: length at most 90, characters in ASCII
    33-126, a single case, a separator with a non-empty prefix before it and at least six data
    characters after it, data characters from the bech32 alphabet, and a valid checksum.
    Raises :class:`InvalidAddress` otherwise.
    """
    shown = _shown(s)
    if len(s) > MAX_LENGTH:
        raise InvalidAddress(
            f"address {shown} is {len(s)} characters long, above the bech32 limit of {MAX_LENGTH}:"
            " paste just the address"
        )
    for position, char in enumerate(s):
        if not 33 <= ord(char) <= 126:
            raise InvalidAddress(
                f"address {shown} has an invalid character {ascii(char)} at position {position + 1}:"
                " an address holds only printable ASCII, check for stray spaces or symbols"
            )
    if s.lower() != s and s.upper() != s:
        raise InvalidAddress(
            f"address {shown} mixes upper and lower case: write it all in one case"
        )
    s = s.lower()
    separator = s.rfind(_SEPARATOR)
    if separator == -1:
        raise InvalidAddress(
            f"address {shown} has no '1' separator after its prefix: check that it is complete"
        )
    if separator == 0:
        raise InvalidAddress(
            f"address {shown} has nothing before its '1' separator: it is missing its prefix"
        )
    hrp, data_part = s[:separator], s[separator + 1 :]
    if len(data_part) < _CHECKSUM_LENGTH:
        raise InvalidAddress(
            f"address {shown} is too short to hold a checksum: check that it is complete"
        )
    data: list[int] = []
    for offset, char in enumerate(data_part):
        value = _CHARSET_INDEX.get(char)
        if value is None:
            raise InvalidAddress(
                f"address {shown} has an invalid character {ascii(char)} at position"
                f" {separator + offset + 2}: bech32 uses no '1', 'b', 'i' or 'o' after the"
                " separator, check for a typo"
            )
        data.append(value)
    if _polymod(_expand_hrp(hrp) + data) != _BECH32_CONSTANT:
        raise InvalidAddress(f"address {shown}: checksum does not match: check for a typo")
    return hrp, data[:-_CHECKSUM_LENGTH]


def convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    """Regroup a sequence of ``frombits``-bit values into ``tobits``-bit values, high bits first.

    With ``pad`` the last group is filled with zero bits (encoding 8 to 5). Without it, leftover
    bits must be fewer than ``frombits`` and all zero, else :class:`InvalidAddress` (decoding 5 to
    8, where anything else means the string was not produced by an encoder). A value that does not
    fit in ``frombits`` bits raises :class:`ValueError`.
    """
    accumulator = 0
    bits = 0
    result: list[int] = []
    out_mask = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise ValueError(f"value {value} does not fit in {frombits} bits")
        accumulator = (accumulator << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            result.append((accumulator >> bits) & out_mask)
        accumulator &= (1 << bits) - 1  # keep only the bits not yet emitted
    if pad:
        if bits:
            result.append((accumulator << (tobits - bits)) & out_mask)
    elif bits >= frombits:
        raise InvalidAddress(
            f"invalid padding: {bits} leftover bits when regrouping {frombits}-bit values into"
            f" {tobits}-bit values (at most {frombits - 1} allowed): the address is corrupt,"
            " check for a typo"
        )
    elif accumulator:
        raise InvalidAddress(
            "invalid padding: the leftover bits are not zero: the address is corrupt,"
            " check for a typo"
        )
    return result


def encode(hrp: str, payload: bytes) -> str:
    """Encode an 8-bit payload under prefix ``hrp`` as a lowercase bech32 string."""
    return bech32_encode(hrp, convertbits(payload, 8, 5, True))


def decode(address: str, hrp: str) -> bytes:
    """Return the 8-bit payload of ``address``, which must be a valid bech32 string for ``hrp``.

    Raises :class:`InvalidAddress` naming the problem: format, case, characters, length,
    checksum, a prefix other than ``hrp``, an empty data part or invalid padding.
    """
    found_hrp, data = bech32_decode(address)
    shown = _shown(address)
    if found_hrp != hrp:
        raise InvalidAddress(
            f"address {shown} has prefix {found_hrp!r} but {hrp!r} was expected:"
            f" use an address that starts with {hrp + _SEPARATOR!r}"
        )
    if not data:
        raise InvalidAddress(f"address {shown} carries no data: check that it is complete")
    try:
        return bytes(convertbits(data, 5, 8, False))
    except InvalidAddress as error:
        raise InvalidAddress(f"address {shown} has {error}") from None


_ADDRESS_DATA_LENGTH = 32 + _CHECKSUM_LENGTH
"""Characters after ``pos1``: 20 bytes are exactly 32 five-bit groups (no padding), then the checksum."""


def _shift(checksum: int, steps: int) -> int:
    """The checksum after ``steps`` more zero values: the linear part of one polymod step."""
    return _polymod([0] * steps, checksum)


def _position_tables() -> tuple[int, list[list[int]]]:
    """The checksum is linear over GF(2) in the prefix and in each data value, so the checksum
    of a fixed-length address is the prefix's part XOR one looked-up part per character."""
    last = _ADDRESS_DATA_LENGTH - 1
    tables = []
    for position in range(_ADDRESS_DATA_LENGTH):
        table = [0] * 128
        for value, char in enumerate(CHARSET):
            table[ord(char)] = _shift(value, last - position)
        tables.append(table)
    return _shift(_polymod(_expand_hrp(ADDRESS_HRP)), _ADDRESS_DATA_LENGTH), tables


_ADDRESS_PREFIX_PART, _ADDRESS_POSITION_TABLES = _position_tables()


def is_canonical_address(text: str) -> bool:
    """Whether ``text`` is a valid address in canonical (lowercase) form, quickly.

    The fast path of :func:`decode_address` for what nearly every address is: a lowercase
    ``pos1`` prefix, 38 bech32 characters and a good checksum, checked with table lookups
    rather than BIP-173's loop (a million-account genesis checks a million addresses).
    ``False`` says only "not by the fast path": :func:`decode_address` then says precisely
    what is wrong, or accepts an uppercase address.
    """
    if (
        len(text) != len(ADDRESS_HRP) + 1 + _ADDRESS_DATA_LENGTH
        or not text.startswith(ADDRESS_HRP + _SEPARATOR)
    ):
        return False
    data = text[len(ADDRESS_HRP) + 1:]
    if data.strip(CHARSET):
        return False
    checksum = _ADDRESS_PREFIX_PART
    for part in map(list.__getitem__, _ADDRESS_POSITION_TABLES, data.encode("ascii")):
        checksum ^= part
    return checksum == _BECH32_CONSTANT


def encode_address(payload: bytes) -> str:
    """Encode a 20-byte account hash as a ``pos1…`` address."""
    if len(payload) != ADDRESS_PAYLOAD_LENGTH:
        raise ValueError(
            f"address payload must be {ADDRESS_PAYLOAD_LENGTH} bytes, got {len(payload)}"
        )
    return encode(ADDRESS_HRP, payload)


def decode_address(address: str) -> bytes:
    """Return the 20-byte account hash of a ``pos1…`` address, or raise :class:`InvalidAddress`."""
    payload = decode(address, ADDRESS_HRP)
    if len(payload) != ADDRESS_PAYLOAD_LENGTH:
        raise InvalidAddress(
            f"address {_shown(address)} holds {len(payload)} bytes, not"
            f" {ADDRESS_PAYLOAD_LENGTH}: check that it is complete and was copied whole"
        )
    return payload
