"""BIP-39: the trezor/python-mnemonic reference vectors through our seed -> master -> xprv path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wallet import bip39
from wallet.errors import InvalidMnemonic
from wallet.hd import ExtendedKey

VECTORS = json.loads((Path(__file__).parent / "vectors" / "bip39.json").read_text())
PASSPHRASE = VECTORS["passphrase"]
ENGLISH = VECTORS["english"]
VALID_12 = ENGLISH[0][1]  # "abandon … about"


def test_vector_file_is_complete() -> None:
    assert PASSPHRASE == "TREZOR"
    assert len(ENGLISH) == 24
    assert {len(row[1].split()) for row in ENGLISH} == {12, 18, 24}


@pytest.mark.parametrize("row", ENGLISH, ids=lambda row: row[0][:16])
def test_reference_vector(row: list[str]) -> None:
    entropy_hex, phrase, seed_hex, xprv = row
    entropy = bytes.fromhex(entropy_hex)
    assert bip39.entropy_to_mnemonic(entropy) == phrase
    assert bip39.mnemonic_to_entropy(phrase) == entropy
    seed = bip39.mnemonic_to_seed(phrase, PASSPHRASE)
    assert seed.hex() == seed_hex
    assert bip39.entropy_to_seed(entropy, PASSPHRASE) == seed
    assert ExtendedKey.from_seed(seed).to_string() == xprv


def test_passphrase_changes_the_seed() -> None:
    assert bip39.mnemonic_to_seed(VALID_12) != bip39.mnemonic_to_seed(VALID_12, PASSPHRASE)


@pytest.mark.parametrize("words", [12, 15, 18, 21, 24])
def test_generate_each_length(words: int) -> None:
    phrase = bip39.generate_mnemonic(words)
    assert len(phrase.split()) == words
    assert bip39.validate_mnemonic(phrase) == phrase


def test_default_is_24_words() -> None:
    assert len(bip39.generate_mnemonic().split()) == 24


@pytest.mark.parametrize("words", [0, 11, 13, 25])
def test_generate_refuses_other_lengths(words: int) -> None:
    with pytest.raises(InvalidMnemonic, match="12, 15, 18, 21 or 24"):
        bip39.generate_mnemonic(words)


def test_whitespace_and_case_are_normalised() -> None:
    messy = "  ABANDON\tabandon\n abandon  Abandon abandon abandon abandon abandon abandon "
    messy += "abandon abandon ABOUT \n"
    assert bip39.normalize_mnemonic(messy) == VALID_12
    assert bip39.mnemonic_to_seed(messy, PASSPHRASE) == bip39.mnemonic_to_seed(VALID_12, PASSPHRASE)


def test_unknown_word_is_named_by_position_without_echoing() -> None:
    words = VALID_12.split()
    words[4] = "abandonn"
    phrase = " ".join(words)
    with pytest.raises(InvalidMnemonic) as caught:
        bip39.mnemonic_to_seed(phrase)
    message = str(caught.value)
    assert "word 5 of 12" in message
    assert "abandonn" not in message
    assert "abandon" not in message


def test_bad_checksum_is_refused() -> None:
    swapped = VALID_12.replace("about", "abandon")
    with pytest.raises(InvalidMnemonic, match="checksum"):
        bip39.mnemonic_to_seed(swapped)
    with pytest.raises(InvalidMnemonic, match="checksum"):
        bip39.mnemonic_to_entropy(swapped)


@pytest.mark.parametrize("phrase", ["", "   ", "abandon " * 11, "zoo " * 25])
def test_wrong_word_count_is_refused(phrase: str) -> None:
    with pytest.raises(InvalidMnemonic, match="words"):
        bip39.validate_mnemonic(phrase)


@pytest.mark.parametrize("size", [0, 15, 17, 33])
def test_entropy_length_is_checked(size: int) -> None:
    with pytest.raises(InvalidMnemonic):
        bip39.entropy_to_mnemonic(b"\1" * size)
