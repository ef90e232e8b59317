"""Every transaction the wallet signs is accepted by the ledger; its high-S twin is not."""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.crypto.address import address_from_public_key
from ledger.crypto.secp256k1 import HALF_ORDER, SECP256K1_ORDER
from ledger.errors import InvalidAddress, InvalidSignature, InvalidTransaction, WrongChain
from ledger.params import Params
from ledger.consensus.transactions import (
    Transaction,
    check_stateless,
    validate_transaction,
    verify_signature,
)
from wallet import bip39
from wallet.hd import ExtendedKey
from wallet.signing import build_bpm, build_stake, build_transfer, build_unjail, build_unstake

PARAMS = Params()
MASTER = ExtendedKey.from_seed(
    bip39.mnemonic_to_seed(
        "legal winner thank year wave sausage worth useful legal winner thank yellow"
    )
)


def _private_key(index: int) -> bytes:
    key = MASTER.derive(f"m/44'/1'/0'/0/{index}").private_key
    assert key is not None
    return key


def _address(index: int) -> str:
    return address_from_public_key(MASTER.derive(f"m/44'/1'/0'/0/{index}").public_key)


BUILDERS: dict[str, Callable[[bytes, int], Transaction]] = {
    "transfer": lambda key, nonce: build_transfer(key, PARAMS.chain_id, nonce, _address(9), 25),
    "stake": lambda key, nonce: build_stake(key, PARAMS.chain_id, nonce, 100),
    "unstake": lambda key, nonce: build_unstake(key, PARAMS.chain_id, nonce, 40),
    "bpm": lambda key, nonce: build_bpm(key, PARAMS.chain_id, nonce, PARAMS.bpm_min, 1, SEED),
    "unjail": lambda key, nonce: build_unjail(key, PARAMS.chain_id, nonce),
}

SEED = bytes(32)
"""The seed a proposal for height 1 proves over in these chain-less tests."""


def _high_s_twin(tx: Transaction) -> Transaction:
    r, s = tx.signature[:32], int.from_bytes(tx.signature[32:], "big")
    return dataclasses.replace(tx, signature=r + (SECP256K1_ORDER - s).to_bytes(32, "big"))


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("index", range(6))
def test_built_transactions_are_accepted_and_high_s_is_not(kind: str, index: int) -> None:
    private_key = _private_key(index)
    tx = BUILDERS[kind](private_key, index)
    assert tx.kind == kind
    assert tx.nonce == index
    assert tx.sender == _address(index)
    check_stateless(tx, PARAMS)
    verify_signature(tx)
    validate_transaction(tx, PARAMS)
    assert int.from_bytes(tx.signature[32:], "big") <= HALF_ORDER

    twin = _high_s_twin(tx)
    assert twin.tx_id == tx.tx_id  # the id does not cover the signature...
    with pytest.raises(InvalidSignature, match="low-S"):  # ...and the twin is refused
        verify_signature(twin)
    with pytest.raises(InvalidSignature):
        validate_transaction(twin, PARAMS)


@settings(max_examples=25, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=2**31 - 1),
    nonce=st.integers(min_value=0, max_value=2**63 - 1),
    amount=st.integers(min_value=1, max_value=2**63 - 1),
)
def test_any_key_nonce_and_amount_sign_low_s(index: int, nonce: int, amount: int) -> None:
    private_key = MASTER.derive(f"m/44'/1'/3'/0/{index}").private_key
    assert private_key is not None
    tx = build_transfer(private_key, PARAMS.chain_id, nonce, _address(1), amount)
    validate_transaction(tx, PARAMS)
    assert int.from_bytes(tx.signature[32:], "big") <= HALF_ORDER


def test_tampered_transaction_fails_verification() -> None:
    tx = build_stake(_private_key(0), PARAMS.chain_id, 0, 100)
    with pytest.raises(InvalidSignature):
        verify_signature(dataclasses.replace(tx, amount=101))


def test_transfer_address_is_checked_before_signing() -> None:
    good = _address(2)
    typo = good[:-1] + ("q" if good[-1] != "q" else "p")
    with pytest.raises(InvalidAddress):
        build_transfer(_private_key(0), PARAMS.chain_id, 0, typo, 5)
    upper = build_transfer(_private_key(0), PARAMS.chain_id, 0, good.upper(), 5)
    assert upper.to == good
    validate_transaction(upper, PARAMS)


@pytest.mark.parametrize("amount", [0, -1, 2**63, 1.5, True])
def test_bad_amounts_are_refused_before_signing(amount: object) -> None:
    with pytest.raises(InvalidTransaction):
        build_stake(_private_key(0), PARAMS.chain_id, 0, amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("nonce", [-1, 1.0, None])
def test_bad_nonce_is_refused(nonce: object) -> None:
    with pytest.raises(InvalidTransaction):
        build_unstake(_private_key(0), PARAMS.chain_id, nonce, 5)  # type: ignore[arg-type]


def test_wrong_chain_is_refused_by_the_ledger() -> None:
    tx = build_bpm(_private_key(0), "another-chain", 0, PARAMS.bpm_min, 1, SEED)
    with pytest.raises(WrongChain):
        check_stateless(tx, PARAMS)
