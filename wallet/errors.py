"""One error tree for the wallet, so the CLI can turn any of them into one actionable line.

Every message is a single line a person can act on: it names the wallet, file, word position
or rule involved, and never contains a secret (no mnemonic, no private key, no password).
"""

from __future__ import annotations


class WalletError(Exception):
    """Root of every error the wallet raises on purpose."""


class WalletNotFound(WalletError):
    """No wallet file under that name."""


class InvalidWalletName(WalletError):
    """A wallet name outside letters, digits, ``-`` and ``_`` (1-64 characters)."""


class WalletExists(WalletError):
    """A wallet of that name exists and the caller did not ask to overwrite it."""


class WalletChanged(WalletError):
    """The wallet file changed under a command between its reading and its writing."""


class WrongPassword(WalletError):
    """The password does not open this wallet (the file itself looks intact)."""


class KeystoreDamaged(WalletError):
    """A wallet file that cannot be trusted: unreadable, truncated, edited or corrupted.

    The message names the file; the remedy is always the same, restoring from the mnemonic.
    """

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(
            f"wallet file {path} is damaged ({problem}); move it aside "
            "(e.g. add .damaged to its name) and restore it from your mnemonic with `posctl wallet recover NAME`"
        )
        self.path = path
        self.problem = problem


class WalletTampered(WalletError):
    """A wallet file whose public keys cannot be trusted without its password: edited, copied
    from another home, or without the integrity tag older versions did not write. ``integrity``
    says which: ``untagged``, ``no-key`` (the home's keystore key is missing) or ``mismatch``."""

    def __init__(self, message: str, integrity: str = "mismatch") -> None:
        super().__init__(message)
        self.integrity = integrity


class InvalidMnemonic(WalletError):
    """A mnemonic phrase that is not valid BIP-39 (unknown word, wrong count, bad checksum)."""


class InvalidExtendedKey(WalletError):
    """An xprv/xpub string that breaks a BIP-32 serialisation rule; the message names the rule."""


class DerivationError(WalletError):
    """A derivation that cannot be done: bad path, hardened step from a public key, bad index."""


class WatchOnlyWallet(WalletError):
    """A wallet imported from an xpub: it shows addresses and balances but holds no private key.

    Raised before any password prompt, so a watch-only wallet never looks like it could sign.
    """

    def __init__(self, name: str, what: str = "sign") -> None:
        super().__init__(
            f"wallet '{name}' is watch-only (imported from an xpub) and cannot {what}: to sign, recover "
            "the wallet from its recovery phrase (`posctl wallet recover NEWNAME`) and use that one"
        )
        self.name = name
