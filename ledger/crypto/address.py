"""``pos1…`` addresses: bech32 (BIP-173) over RIPEMD160(SHA256(compressed public key)).

A typo in an address fails its checksum, so tokens are never sent into the void.
"""

from __future__ import annotations

import functools

from Crypto.Hash import RIPEMD160, SHA256

from ledger.crypto import bech32
from ledger.crypto.secp256k1 import validate_public_key
from ledger.errors import InvalidAddress

ADDRESS_PREFIX = bech32.ADDRESS_HRP + "1"
"""What every address starts with (``pos1``): text that starts so is read as an address."""

ADDRESS_PAYLOAD_SIZE = 20
"""Bytes of key hash an address carries."""

Address = str
"""A bech32 ``pos1…`` string."""


def starts_like_address(text: str) -> bool:
    """Whether ``text`` begins as an address does (``pos1``, in either case): a wallet name never
    does, so such text is an address to check, never a name to look up."""
    return text[:len(ADDRESS_PREFIX)].lower() == ADDRESS_PREFIX


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data)), as Bitcoin derives its key hashes."""
    return RIPEMD160.new(SHA256.new(data).digest()).digest()


@functools.lru_cache(maxsize=65536)
def address_from_public_key(public_key: bytes) -> Address:
    """bech32 ``pos1…`` over RIPEMD160(SHA256(compressed public key))."""
    validate_public_key(public_key)
    return bech32.encode(bech32.ADDRESS_HRP, hash160(public_key))


def parse_address(address: str) -> Address:
    """Return the canonical (lowercase) form of a valid address; a typo fails its checksum."""
    if not isinstance(address, str):
        raise InvalidAddress("an address must be a string like pos1…")
    if bech32.is_canonical_address(address):
        return address
    payload = bech32.decode(address, bech32.ADDRESS_HRP)
    if len(payload) != ADDRESS_PAYLOAD_SIZE:
        raise InvalidAddress(
            f"address {address!r} carries {len(payload)} bytes, not {ADDRESS_PAYLOAD_SIZE}"
        )
    return address.lower()


def is_valid_address(address: str) -> bool:
    try:
        parse_address(address)
    except InvalidAddress:
        return False
    return True
