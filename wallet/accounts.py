"""The BIP-44 layout posctl uses: ``m/44'/1'/{account}'/0/{index}``.

Accounts are hardened, so an account's private keys cannot be reached from another account's
leaked key. Below the account everything is normal (non-hardened) derivation, which is what
lets the keystore list addresses from the stored account xpub without the password.
"""

from __future__ import annotations

import functools

from ledger.crypto.address import address_from_public_key

from wallet.errors import DerivationError, InvalidExtendedKey
from wallet.hd import HARDENED, ExtendedKey

PURPOSE = 44
"""BIP-44."""
COIN_TYPE = 1
"""SLIP-44 coin type 1: "testnet, all coins", since posctl is not a registered coin."""
EXTERNAL_CHAIN = 0
"""BIP-44's receiving chain; posctl has no change addresses, so it uses only this one."""

ACCOUNT_PATH = "m/44'/1'/{account}'"
"""Path of an account node; its neutered form is the account xpub stored in the clear."""
ADDRESS_PATH = "m/44'/1'/{account}'/0/{index}"
"""Full path of address ``index`` of ``account``."""
RELATIVE_ADDRESS_PATH = "0/{index}"
"""Path of an address below its account node (derivable from the account xpub alone)."""

ACCOUNT_DEPTH = 3
"""m / purpose' / coin_type' / account' : an account xpub is at depth 3."""


def check_account(account: int) -> int:
    """Return ``account`` if it is a valid account number, else raise DerivationError."""
    if isinstance(account, bool) or not isinstance(account, int) or not 0 <= account < HARDENED:
        raise DerivationError(f"account must be an integer in [0, 2^31), not {account!r}")
    return account


def check_index(index: int) -> int:
    """Return ``index`` if it is a valid address index, else raise DerivationError."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < HARDENED:
        raise DerivationError(f"address index must be an integer in [0, 2^31), not {index!r}")
    return index


def coin_key(master: ExtendedKey) -> ExtendedKey:
    """m/44'/1': the common parent of every account (derived once when listing many accounts)."""
    _require_master(master)
    return master.derive(f"m/{PURPOSE}'/{COIN_TYPE}'")


def account_key(master: ExtendedKey, account: int) -> ExtendedKey:
    """The private account node ``m/44'/1'/{account}'``."""
    _require_master(master)
    return master.derive(ACCOUNT_PATH.format(account=check_account(account)))


def account_xpub(master: ExtendedKey, account: int) -> str:
    """The account xpub: enough to derive every address of the account, and no private key."""
    return account_key(master, account).neuter().to_string()


def account_xpubs(master: ExtendedKey, accounts: range) -> dict[int, str]:
    """xpubs of several accounts, sharing the m/44'/1' derivation."""
    parent = coin_key(master)
    return {
        account: parent.child(check_account(account) + HARDENED).neuter().to_string()
        for account in accounts
    }


def address_key(account_node: ExtendedKey, index: int) -> ExtendedKey:
    """Key ``0/{index}`` below an account node: private if the node is, public otherwise."""
    if account_node.depth != ACCOUNT_DEPTH:
        raise DerivationError(
            f"expected an account key at depth {ACCOUNT_DEPTH}, got depth {account_node.depth}"
        )
    return account_node.derive(RELATIVE_ADDRESS_PATH.format(index=check_index(index)))


def public_key_from_account_xpub(xpub: str, index: int) -> bytes:
    """Compressed public key of address ``index``, from the account xpub alone."""
    return address_key(_parse_account_xpub(xpub), index).public_key


def address_from_account_xpub(xpub: str, index: int) -> str:
    """``pos1…`` address ``index`` of an account, from its xpub alone (no password needed)."""
    return address_from_public_key(public_key_from_account_xpub(xpub, index))


def parse_account_xpub(text: str) -> ExtendedKey:
    """An account-level xpub as a user pastes it (``wallet import-xpub``), or
    :class:`InvalidExtendedKey` with one line saying which rule it breaks and what to give.

    Base58check, length and version bytes are BIP-32's rules (:meth:`ExtendedKey.from_string`);
    on top, the key must be public and sit where an account node sits: depth 3, hardened.
    Whether it really is ``m/44'/1'/A'`` (and not another coin's account) cannot be told from
    the key itself.
    """
    wanted = "the account xpub that `posctl wallet export NAME` prints"
    if not isinstance(text, str) or not text.strip():
        raise InvalidExtendedKey(f"the xpub is empty: give {wanted}")
    try:
        key = ExtendedKey.from_string(text.strip())
    except InvalidExtendedKey as exc:
        raise InvalidExtendedKey(f"not a valid xpub ({exc}): give {wanted}") from None
    if key.is_private:
        raise InvalidExtendedKey(
            "that is an extended PRIVATE key (xprv), which can spend: keep it secret; "
            f"a watch-only wallet takes the public one, {wanted}"
        )
    if key.depth != ACCOUNT_DEPTH:
        raise InvalidExtendedKey(
            f"the xpub is at depth {key.depth}, not {ACCOUNT_DEPTH}: an account xpub (m/44'/1'/ACCOUNT') "
            f"is needed, {wanted}"
        )
    if key.child_number < HARDENED:
        raise InvalidExtendedKey(
            f"the xpub is non-hardened child {key.child_number}, not an account node "
            f"(m/44'/1'/ACCOUNT' is hardened): give {wanted}"
        )
    return key


@functools.lru_cache(maxsize=64)
def _parse_account_xpub(xpub: str) -> ExtendedKey:
    """Parse (and cache) an account xpub; public data only, so caching it leaks nothing."""
    key = ExtendedKey.from_string(xpub)
    if key.is_private:
        raise DerivationError("expected an account xpub, got an xprv")
    return key


def _require_master(master: ExtendedKey) -> None:
    if not master.is_private or master.depth != 0:
        raise DerivationError("account keys are derived from the private master key m")
