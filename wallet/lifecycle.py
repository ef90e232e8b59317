"""Renaming a wallet: its file and its slashing-protection record move together.

Why a module of its own
    The keystore knows wallet files and :mod:`wallet.protection` knows signing records; the
    protection record is keyed by the wallet's *name*, so a rename that moved only the file
    would leave the validator behind it without its record, free to sign a second, conflicting
    proposal for a height it already signed and be slashed for it.

Order, so that a crash at any step leaves every key guarded (all under
:meth:`Keystore.changing`, after checking that OLD is still the file that was unlocked)
    1. copy ``OLD.protection.json`` to ``NEW.protection.json`` (refused if NEW has one);
    2. write ``NEW.json`` (never over an existing file);
    3. remove ``OLD.json``, then ``OLD.protection.json``.
    ``OLD.protection.json``'s lock is held from 1 to 3, so a validator still running under OLD
    cannot record a height between the copy and the removal (it would be in neither record).
    Stopped between 2 and 3, both names hold the same keys, each with its record, and
    ``posctl wallet list`` warns about the pair; ``posctl wallet delete OLD`` finishes the job.
"""

from __future__ import annotations

from wallet.errors import WalletExists
from wallet.keystore import Keystore
from wallet.wallet_file import WalletFile
from wallet.protection import SlashingProtection


def check_rename(store: Keystore, old: str, new: str) -> WalletFile:
    """Everything that can refuse a rename without the password: OLD readable, NEW free."""
    wallet = store.load(old)
    if new == old:
        raise WalletExists(f"wallet '{old}' already has that name: give a different new name")
    store.check_name_free(new, renaming=old)
    target = SlashingProtection(store.directory, new)
    if target.path.exists():
        raise WalletExists(
            f"a slashing-protection record for '{new}' already exists ({target.path}, left by a deleted "
            "wallet?): choose another name, or move that record aside if no key you use signed it"
        )
    return wallet


def rename_wallet(store: Keystore, old: str, new: str, password: str | None) -> WalletFile:
    """Rename wallet ``old`` to ``new`` (``password``: None only for a watch-only wallet).

    A wrong password is refused before anything is written.
    """
    wallet = check_rename(store, old, new)
    unlocked = None if wallet.watch_only else store.unlock(old, password if password is not None else "")
    # From here no other command replaces or removes a wallet file, and the one unlocked must
    # still be OLD's: a password changed meanwhile would otherwise come back under OLD's name.
    with store.changing():
        if unlocked is not None:
            store.check_unchanged(old, unlocked.file, f"run `posctl wallet rename {old} {new}` again")
        else:
            store.check_unchanged(old, wallet, f"run `posctl wallet rename {old} {new}` again")
        with SlashingProtection(store.directory, old).moving_to(new):
            renamed = store.copy_renamed(old, new, unlocked)
            store.delete(old)
        return renamed
