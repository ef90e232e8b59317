import os

import pytest

from ledger.errors import InvalidKey
from ledger.crypto.address import address_from_public_key, hash160, is_valid_address, parse_address
from ledger.crypto import secp256k1
from ledger.errors import InvalidAddress, InvalidSignature

N = secp256k1.SECP256K1_ORDER


def flip_s(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "big")
    return signature[:32] + (N - s).to_bytes(32, "big")


def test_signatures_are_low_s_and_verify():
    for _ in range(40):  # pycryptodome emits high-S half the time; all must come out low
        private = os.urandom(32)
        public = secp256k1.public_key_from_private(private)
        message = os.urandom(40)
        signature = secp256k1.sign(private, message)
        assert int.from_bytes(signature[32:], "big") <= secp256k1.HALF_ORDER
        secp256k1.verify(public, message, signature)


# Published RFC 6979 secp256k1/SHA-256 vector (private key 1, "Satoshi Nakamoto"): nonce
# k = 8F8A276C…5D15, signature (r, s) as in bitcointalk topic 285142 and trezor-crypto's
# tests/test_check.c. posctl normalises to low-S, so its s is the order minus the published s.
RFC6979_R = 0x934B1EA10A4B3C1757E2B0C017D0B6143CE3C9A7E6A4A49860D7A6AB210EE3D8
RFC6979_S = 0xDBBD3162D46E9F9BEF7FEB87C16DC13B4F6568A87F4E83F728E2443BA586675C


def test_signing_matches_the_published_rfc6979_vector_after_low_s():
    private = (1).to_bytes(32, "big")
    signature = secp256k1.sign(private, b"Satoshi Nakamoto")
    assert int.from_bytes(signature[:32], "big") == RFC6979_R
    assert int.from_bytes(signature[32:], "big") == N - RFC6979_S  # the published s is high
    assert secp256k1.sign(private, b"Satoshi Nakamoto") == signature


def test_verify_rejects_high_s_wrong_key_wrong_message_and_ranges():
    private = os.urandom(32)
    public = secp256k1.public_key_from_private(private)
    signature = secp256k1.sign(private, b"msg")
    with pytest.raises(InvalidSignature, match="low-S"):
        secp256k1.verify(public, b"msg", flip_s(signature))
    other = secp256k1.public_key_from_private(os.urandom(32))
    with pytest.raises(InvalidSignature, match="does not verify"):
        secp256k1.verify(other, b"msg", signature)
    with pytest.raises(InvalidSignature, match="does not verify"):
        secp256k1.verify(public, b"msG", signature)
    with pytest.raises(InvalidSignature, match="outside"):
        secp256k1.verify(public, b"msg", bytes(32) + signature[32:])
    with pytest.raises(InvalidSignature, match="outside"):
        secp256k1.verify(public, b"msg", signature[:32] + N.to_bytes(32, "big"))
    with pytest.raises(InvalidSignature, match="64 bytes"):
        secp256k1.verify(public, b"msg", signature[:-1])


def test_invalid_public_keys_are_refused():
    with pytest.raises(InvalidSignature):
        secp256k1.verify(b"\x02" + bytes(32), b"m", b"\x01" * 64)
    with pytest.raises(InvalidKey):
        secp256k1.validate_public_key(b"\x04" + bytes(32))
    with pytest.raises(InvalidKey):
        secp256k1.public_key_from_private(bytes(32))
    with pytest.raises(InvalidKey):
        secp256k1.public_key_from_private(N.to_bytes(32, "big"))


def test_address_known_answer():
    # Private key 1: its public key is the generator G; hash160(G) is well known from Bitcoin
    # (751e76e8199196d454941c45d1b3a323f1433bd6, the payload of bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4).
    public = secp256k1.public_key_from_private((1).to_bytes(32, "big"))
    assert hash160(public).hex() == "751e76e8199196d454941c45d1b3a323f1433bd6"
    address = address_from_public_key(public)
    # The same 5-bit data as Bitcoin's (without its witness-version "q"), posctl's own checksum.
    assert address == "pos1w508d6qejxtdg4y5r3zarvary0c5xw7khf8qhm"
    assert parse_address(address) == address
    assert parse_address(address.upper()) == address


def test_address_typos_and_other_prefixes_are_refused():
    address = address_from_public_key(secp256k1.public_key_from_private(os.urandom(32)))
    typo = address[:-1] + ("q" if address[-1] != "q" else "p")
    with pytest.raises(InvalidAddress):
        parse_address(typo)
    with pytest.raises(InvalidAddress):
        parse_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
    with pytest.raises(InvalidAddress):
        parse_address(address[:6].upper() + address[6:])
    assert not is_valid_address("pos1")
