"""Builders that turn a private key and a request into a signed transaction the ledger accepts.

The rules themselves live in :mod:`ledger.consensus.transactions`; the builders only check early what can
be checked without the chain (amount range, address checksum, nonce sign) so that a mistake is
reported before anything is signed, with the ledger's own error and message. Signing goes
through :func:`ledger.consensus.transactions.sign_transaction`, which always produces a low-S signature.
"""

from __future__ import annotations

from ledger.crypto.address import parse_address
from ledger.consensus.lottery import vrf_alpha
from ledger.crypto import ecvrf, secp256k1
from ledger.errors import InvalidTransaction
from ledger.consensus.transactions import (
    Bpm,
    Stake,
    Transaction,
    Transfer,
    Unjail,
    Unstake,
    check_amount,
    sign_transaction,
)


def build_transfer(
    private_key: bytes, chain_id: str, nonce: int, to: str, amount: int
) -> Transaction:
    """A signed transfer of ``amount`` liquid tokens to address ``to``."""
    recipient = parse_address(to).lower()
    common = _common(private_key, chain_id, nonce)
    return sign_transaction(Transfer(**common, to=recipient, amount=check_amount(amount)), private_key)


def build_stake(private_key: bytes, chain_id: str, nonce: int, amount: int) -> Transaction:
    """A signed stake: bond ``amount`` liquid tokens as validator collateral."""
    common = _common(private_key, chain_id, nonce)
    return sign_transaction(Stake(**common, amount=check_amount(amount)), private_key)


def build_unstake(private_key: bytes, chain_id: str, nonce: int, amount: int) -> Transaction:
    """A signed unstake: start unbonding ``amount`` bonded tokens."""
    common = _common(private_key, chain_id, nonce)
    return sign_transaction(Unstake(**common, amount=check_amount(amount)), private_key)


def build_bpm(private_key: bytes, chain_id: str, nonce: int, bpm: int, height: int, seed: bytes) -> Transaction:
    """A signed heart-rate proposal for block ``height``: the validator's entry into its lottery.

    ``seed`` is that height's seed (``Chain.next_seed``, or ``next_seed`` in ``chain status``);
    the proposal carries the VRF proof over it, whose output seeds the next block if this
    validator wins. The allowed BPM range is a chain parameter, so it is checked by the node.
    """
    if type(bpm) is not int:
        raise InvalidTransaction(f"bpm must be an integer, got {bpm!r}")
    if type(height) is not int or height < 1:
        raise InvalidTransaction(f"height must be a positive integer, got {height!r}")
    common = _common(private_key, chain_id, nonce)
    proof = ecvrf.prove(private_key, vrf_alpha(chain_id, height, seed))
    return sign_transaction(Bpm(**common, bpm=bpm, height=height, vrf_proof=proof), private_key)


def build_unjail(private_key: bytes, chain_id: str, nonce: int) -> Transaction:
    """A signed unjail: back into the draw after a jailing for missed turns."""
    return sign_transaction(Unjail(**_common(private_key, chain_id, nonce)), private_key)


def _common(private_key: bytes, chain_id: str, nonce: int) -> dict[str, object]:
    """The fields every kind shares, after the checks that need no chain."""
    if type(nonce) is not int or nonce < 0:
        raise InvalidTransaction(f"nonce must be a non-negative integer, got {nonce!r}")
    return {
        "chain_id": chain_id,
        "public_key": secp256k1.public_key_from_private(private_key),
        "nonce": nonce,
    }
