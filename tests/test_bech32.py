"""Bech32 (BIP-173): the BIP's own vectors, round trips, and every single-character typo caught."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.crypto import bech32
from ledger.crypto.bech32 import (
    ADDRESS_HRP,
    CHARSET,
    bech32_decode,
    bech32_encode,
    convertbits,
    decode,
    decode_address,
    encode,
    encode_address,
)
from ledger.errors import InvalidAddress, LedgerError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "bip173.json").read_text(encoding="utf-8")
)


def _message(excinfo: pytest.ExceptionInfo[InvalidAddress]) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


# --- BIP-173 vectors --------------------------------------------------------------------------


@pytest.mark.parametrize("string", VECTORS["valid"])
def test_valid_vector_decodes_and_reencodes(string: str) -> None:
    hrp, data = bech32_decode(string)
    assert bech32_encode(hrp, data) == string.lower()


@pytest.mark.parametrize(
    "case", VECTORS["invalid"], ids=[case["reason"] for case in VECTORS["invalid"]]
)
def test_invalid_vector_rejected(case: dict[str, str]) -> None:
    with pytest.raises(InvalidAddress):
        bech32_decode(case["string"])


@pytest.mark.parametrize("case", VECTORS["segwit_valid"], ids=lambda case: case["address"][:14])
def test_segwit_valid_vector_payload(case: dict[str, Any]) -> None:
    hrp, data = bech32_decode(case["address"])
    assert hrp == case["hrp"]
    assert data[0] == case["version"]
    assert bytes(convertbits(data[1:], 5, 8, False)).hex() == case["program"]


@pytest.mark.parametrize(
    "case", VECTORS["segwit_invalid"], ids=[case["reason"] for case in VECTORS["segwit_invalid"]]
)
def test_segwit_invalid_vector_rejected_at_bech32_layer(case: dict[str, str]) -> None:
    with pytest.raises(InvalidAddress):
        _, data = bech32_decode(case["address"])
        convertbits(data[1:], 5, 8, False)


def test_uppercase_valid_vector_equals_lowercase() -> None:
    assert bech32_decode("A12UEL5L") == bech32_decode("a12uel5l") == ("a", [])


# --- convertbits ------------------------------------------------------------------------------


def test_convertbits_pads_and_regroups() -> None:
    assert convertbits(b"\xff", 8, 5, True) == [31, 28]
    assert convertbits([31, 28], 5, 8, False) == [0xFF]
    assert convertbits(b"", 8, 5, True) == []


def test_convertbits_rejects_nonzero_padding() -> None:
    with pytest.raises(InvalidAddress, match="invalid padding"):
        convertbits([31, 29], 5, 8, False)


def test_convertbits_rejects_overlong_padding() -> None:
    with pytest.raises(InvalidAddress, match="invalid padding"):
        convertbits([31, 28, 0], 5, 8, False)


def test_convertbits_rejects_out_of_range_value() -> None:
    with pytest.raises(ValueError):
        convertbits([32], 5, 8, False)


# --- round trips ------------------------------------------------------------------------------


@given(st.binary(min_size=20, max_size=20))
def test_address_round_trip(payload: bytes) -> None:
    address = encode_address(payload)
    assert address.startswith("pos1")
    assert address == address.lower()
    assert len(address) == 42
    assert decode_address(address) == payload
    assert decode(address.upper(), ADDRESS_HRP) == payload


@given(st.binary(min_size=1, max_size=50), st.sampled_from(["pos", "a", "tb", "x?y"]))
def test_generic_round_trip(payload: bytes, hrp: str) -> None:
    assert decode(encode(hrp, payload), hrp) == payload


def test_address_hrp_constant() -> None:
    assert ADDRESS_HRP == "pos"
    assert bech32.ADDRESS_PAYLOAD_LENGTH == 20


# --- typos ------------------------------------------------------------------------------------

_SUBSTITUTES = sorted(set(CHARSET + "1bio" + "pos" + "qz0"))


def test_every_single_character_typo_is_caught() -> None:
    rng = random.Random(173)
    for _ in range(25):
        address = encode_address(rng.randbytes(20))
        for position, original in enumerate(address):
            for substitute in _SUBSTITUTES + [original.upper()]:
                if substitute == original:
                    continue
                typo = address[:position] + substitute + address[position + 1 :]
                with pytest.raises(InvalidAddress):
                    decode_address(typo)


def test_dropped_or_doubled_character_is_caught() -> None:
    rng = random.Random(3)
    for _ in range(10):
        address = encode_address(rng.randbytes(20))
        for position in range(len(address)):
            for typo in (
                address[:position] + address[position + 1 :],
                address[:position] + address[position] + address[position:],
            ):
                with pytest.raises(InvalidAddress):
                    decode_address(typo)


# --- messages ---------------------------------------------------------------------------------


def _address() -> str:
    return encode_address(bytes(range(20)))


def test_bad_checksum_message() -> None:
    address = _address()
    typo = address[:-1] + ("q" if address[-1] != "q" else "p")
    with pytest.raises(InvalidAddress) as excinfo:
        decode(typo, ADDRESS_HRP)
    assert "checksum does not match: check for a typo" in _message(excinfo)
    assert typo in _message(excinfo)


def test_wrong_prefix_names_both() -> None:
    other = encode("tb", bytes(range(20)))
    with pytest.raises(InvalidAddress) as excinfo:
        decode(other, ADDRESS_HRP)
    message = _message(excinfo)
    assert "'pos'" in message and "'tb'" in message and "expected" in message


def test_mixed_case_message() -> None:
    address = _address()
    mixed = address[:5] + address[5:].upper()
    with pytest.raises(InvalidAddress) as excinfo:
        decode(mixed, ADDRESS_HRP)
    assert "case" in _message(excinfo)


def test_invalid_character_message() -> None:
    address = _address()
    bad = address[:10] + "b" + address[11:]
    with pytest.raises(InvalidAddress) as excinfo:
        decode(bad, ADDRESS_HRP)
    assert "invalid character 'b' at position 11" in _message(excinfo)


def test_control_character_is_escaped() -> None:
    address = _address() + "\n"
    with pytest.raises(InvalidAddress) as excinfo:
        decode(address, ADDRESS_HRP)
    assert "invalid character" in _message(excinfo)


def test_too_long_message_does_not_echo_more_than_the_limit() -> None:
    huge = "pos1" + "q" * 10_000
    with pytest.raises(InvalidAddress) as excinfo:
        decode(huge, ADDRESS_HRP)
    message = _message(excinfo)
    assert "above the bech32 limit of 90" in message
    assert len(message) < 250


def test_no_separator_message() -> None:
    with pytest.raises(InvalidAddress) as excinfo:
        decode("posqqqqqqqqqq", ADDRESS_HRP)
    assert "separator" in _message(excinfo)


def test_empty_data_message() -> None:
    empty = bech32_encode(ADDRESS_HRP, [])
    with pytest.raises(InvalidAddress) as excinfo:
        decode(empty, ADDRESS_HRP)
    assert "no data" in _message(excinfo)


def test_invalid_padding_message() -> None:
    # 21 five-bit values carry 105 bits: 13 bytes and 1 leftover bit, here set to 1.
    corrupt = bech32_encode(ADDRESS_HRP, [0] * 20 + [1])
    with pytest.raises(InvalidAddress) as excinfo:
        decode(corrupt, ADDRESS_HRP)
    assert "invalid padding" in _message(excinfo)
    assert corrupt in _message(excinfo)


def test_wrong_payload_length_for_posctl_address() -> None:
    short = encode(ADDRESS_HRP, bytes(19))
    with pytest.raises(InvalidAddress, match="19 bytes, not 20"):
        decode_address(short)
    with pytest.raises(ValueError):
        encode_address(bytes(21))


def test_invalid_address_is_a_ledger_error() -> None:
    with pytest.raises(InvalidAddress) as info:
        decode_address("pos1")
    assert isinstance(info.value, LedgerError)


def test_encoder_refuses_bad_prefix() -> None:
    for hrp in ("", "POS", "p s"):
        with pytest.raises(ValueError):
            bech32_encode(hrp, [])
