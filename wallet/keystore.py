"""Encrypted wallet files: ``$POSCTL_HOME/wallets/NAME.json`` (DESIGN decision 13).

What is secret and what is not
    The secret is the BIP-39 entropy (from which the words are recomputed) and the optional
    BIP-39 passphrase. They are encrypted with AES-256-GCM under a key stretched from the
    password by scrypt. The account xpubs of accounts ``0..STORED_ACCOUNTS-1`` are stored in the
    clear so that addresses can be listed without the password.

File format (version 1)::

    {"version": 1, "name": "alice",
     "kdf": {"name": "scrypt", "n": 262144, "r": 8, "p": 1, "salt": "<hex>"},
     "password_check": "<hex, 32 bytes>",
     "cipher": {"name": "aes-256-gcm", "nonce": "<hex, 12 bytes>", "tag": "<hex, 16 bytes>"},
     "ciphertext": "<hex>",
     "accounts": {"0": "xpub…", …, "9": "xpub…"}}

Binding the public fields to the secret
    Every field except the ciphertext and the tag is fed to GCM as associated data (in a
    canonical JSON form, so re-indenting the file changes nothing). Editing an xpub, the name,
    the KDF parameters or anything else therefore makes decryption fail. After decryption the
    stored xpubs are also re-derived from the entropy and compared, so even a file written by a
    buggy version cannot show addresses the wallet does not own once it has been unlocked.

Telling a wrong password from a damaged file
    A GCM failure alone cannot distinguish the two: both surface as "tag mismatch". scrypt
    therefore produces 64 bytes; the first 32 are the AES key and the last 32 key an HMAC of a
    fixed string, stored as ``password_check``. On unlock the check is computed first: if it
    differs, the password is wrong (:class:`WrongPassword`); if it matches and GCM still
    fails, the password was right and the file was changed (:class:`KeystoreDamaged`). The
    check gives an attacker nothing the GCM tag does not already give (a way to test a password
    guess), and each guess still costs a full scrypt. The one blind spot: a change to the
    salt, the scrypt parameters or ``password_check`` itself looks like a wrong password, since
    those fields decide what the check compares. The two halves of scrypt's output are
    independent PBKDF2 blocks, so publishing a MAC under one says nothing about the other.

Watch-only wallets
    ``wallet import-xpub`` writes a file with no secret at all: ``{"version": 1, "kind":
    "watch-only", "name": …, "accounts": {"A": "xpub…"}, "public_mac": …}``, holding the one
    account xpub it was given under that account's number. It lists addresses and balances;
    :meth:`Keystore.unlock` refuses it with :class:`WatchOnlyWallet`, so nothing can try to sign
    with it. Its tag is written at import, since there is no secret to check it against later.

Addresses shown without the password are only as trustworthy as the file: someone who can
write to it can substitute a valid xpub of their own, and only an unlock detects that.

Writing
    A temp file in the same directory (created 0600 by ``mkstemp``), written, fsynced, then
    renamed over the target (or hard-linked, when overwriting is not allowed, so that even a
    race cannot replace an existing wallet), then the directory is fsynced. A process killed at
    any moment leaves either the old file or the new one, never a mix; an abandoned temp file is
    a hidden ``.NAME.*.tmp`` that :meth:`Keystore.names` ignores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterator, Mapping

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from ledger.encoding import reject_duplicate_keys
from ledger.errors import EncodingError
from wallet import accounts, bip39
from wallet.errors import (
    InvalidExtendedKey,
    InvalidMnemonic,
    InvalidWalletName,
    KeystoreDamaged,
    WalletChanged,
    WalletError,
    WalletExists,
    WalletNotFound,
    WalletTampered,
    WatchOnlyWallet,
    WrongPassword,
)
from wallet.hd import HARDENED, ExtendedKey

FORMAT_VERSION = 1
"""Version of the file layout; a file with another version is refused, never guessed at."""

STORED_ACCOUNTS = 10
"""Accounts 0..9 have their xpub stored in the clear at creation."""

WALLET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Names are file names: letters, digits, ``-`` and ``_`` only (never a path), starting with a
letter or digit so a name never reads as a command-line option."""

FILE_SUFFIX = ".json"
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
MAX_FILE_BYTES = 64 * 1024
"""A version-1 wallet is about 2 KiB; anything far larger is not one of ours."""

KDF_NAME = "scrypt"
CIPHER_NAME = "aes-256-gcm"
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32
CHECK_BYTES = 32

MIN_SCRYPT_N = 2**10
MAX_SCRYPT_N = 2**22
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY = 2**30
"""scrypt needs 128·r·n bytes: more than 1 GiB is refused rather than risking the OOM killer."""
MAX_SCRYPT_WORK = 2**25
"""n·r·p above 16× the default would take minutes: refused rather than looking like a hang."""

_AAD_TAG = b"posctl-keystore-v1\n"
_PASSWORD_CHECK_MESSAGE = b"posctl keystore password check v1"
_HEX = re.compile(r"^(?:[0-9a-f]{2})*$")
KEY_FILE = ".keystore-key"
"""A per-home secret (32 random bytes, 0600) keying each wallet file's ``public_mac``: an HMAC
over every public field, so a recipient's address is checked without its password."""

CHANGE_LOCK_FILE = ".keystore.lock"
"""``flock``-ed while a wallet file is replaced or removed (:meth:`Keystore.changing`); never
deleted, as deleting a lock file that others may have open defeats ``flock``."""

_CHANGE_REGISTRY = threading.Lock()
_CHANGE_LOCKS: dict[Path, threading.RLock] = {}
_CHANGE_DEPTH: dict[Path, int] = {}
"""Per wallets directory: the lock its threads take before the ``flock``, and how deep the
holding thread is (only that thread reads or writes its entry)."""

_OPTIONAL_FIELDS = frozenset({"public_mac"})
"""Absent from wallets written before the tag existed; added at their next unlock."""

_TOP_LEVEL_FIELDS = frozenset(
    {"version", "name", "kdf", "password_check", "cipher", "ciphertext", "accounts"}
)

WATCH_ONLY_KIND = "watch-only"
"""The ``kind`` of a wallet file holding only an imported account xpub (no secret)."""
_WATCH_ONLY_FIELDS = frozenset({"version", "kind", "name", "accounts", "public_mac"})


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters, stored in each file so they can be raised later."""

    n: int
    r: int
    p: int

    @classmethod
    def default(cls) -> ScryptParams:
        """Strong: about 1 s and 256 MiB per unlock on a laptop."""
        return cls(n=2**18, r=8, p=1)

    @classmethod
    def light(cls) -> ScryptParams:
        """INSECURE, for tests and demos only: about 10 ms, so passwords are cheap to guess."""
        return cls(n=2**12, r=8, p=1)

    def problem(self) -> str | None:
        """Why these parameters are unusable, or None if they are fine."""
        for field in ("n", "r", "p"):
            value = getattr(self, field)
            if type(value) is not int or value < 1:
                return f"scrypt {field} must be a positive integer, not {value!r}"
        if self.n & (self.n - 1):
            return f"scrypt n must be a power of two, not {self.n}"
        if not MIN_SCRYPT_N <= self.n <= MAX_SCRYPT_N:
            return f"scrypt n must be between 2^10 and 2^22, not {self.n}"
        if self.r > MAX_SCRYPT_R or self.p > MAX_SCRYPT_P:
            return f"scrypt r must be at most {MAX_SCRYPT_R} and p at most {MAX_SCRYPT_P}"
        if 128 * self.r * self.n > MAX_SCRYPT_MEMORY:
            return "scrypt parameters need more than 1 GiB of memory"
        if self.n * self.r * self.p > MAX_SCRYPT_WORK:
            return "scrypt parameters would take minutes to evaluate"
        return None


@dataclass(frozen=True)
class _Sealed:
    """The encrypted part of a wallet file and what is needed to open it."""

    kdf: ScryptParams
    salt: bytes
    password_check: bytes
    nonce: bytes
    tag: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class _Stretched:
    """A password after scrypt: what sealing needs, so a rename re-seals without asking again
    (same password, salt and parameters; a fresh nonce)."""

    kdf: ScryptParams
    salt: bytes
    aes_key: bytes = dataclasses.field(repr=False)
    password_check: bytes = dataclasses.field(repr=False)


@dataclass(frozen=True)
class WalletFile:
    """A wallet as read from disk without its password: name, path and public account data."""

    name: str
    path: Path
    accounts: Mapping[int, str] = dataclasses.field(repr=False)
    """Stored account number -> account xpub."""
    _sealed: _Sealed | None = dataclasses.field(repr=False, compare=False)
    """None for a watch-only wallet: it has no secret."""
    public_mac: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def watch_only(self) -> bool:
        """Imported from an xpub: addresses and balances only, it can never sign."""
        return self._sealed is None

    @property
    def default_account(self) -> int:
        """The account shown when none is asked for: 0, or a watch-only wallet's one account."""
        return min(self.accounts)

    @property
    def light_kdf(self) -> bool:
        """Made with ``POSCTL_KDF=light``: its password is cheap to guess (tests and demos only)."""
        return self._sealed is not None and self._sealed.kdf.n < ScryptParams.default().n

    @property
    def kdf_label(self) -> str:
        if self._sealed is None:
            return "none (watch-only: no secret stored)"
        kdf = self._sealed.kdf
        return f"scrypt n=2^{kdf.n.bit_length() - 1}" + (" (LIGHT: tests and demos only)" if self.light_kdf else "")

    def public_fields(self) -> dict[str, Any]:
        sealed = self._sealed
        if sealed is None:
            return _watch_only_public_fields(self.name, self.accounts)
        return _public_fields(self.name, sealed.kdf, sealed.salt, sealed.password_check, sealed.nonce, self.accounts)

    def shares_keys_with(self, other: WalletFile) -> bool:
        """Whether the two wallets hold some account in common (the same account xpub)."""
        return bool(set(self.accounts.values()) & set(other.accounts.values()))

    def account_xpub(self, account: int = 0) -> str:
        """The stored xpub of ``account``; accounts beyond the stored ones need an unlock."""
        accounts.check_account(account)
        xpub = self.accounts.get(account)
        if xpub is None and self.watch_only:
            raise WalletError(
                f"watch-only wallet '{self.name}' holds only account {_describe_accounts(self.accounts)}'s "
                f"xpub: use --account {self.default_account} (other accounts need the recovery phrase)"
            )
        if xpub is None:
            raise WalletError(
                f"account {account} of wallet '{self.name}' is not stored in the clear "
                f"(only accounts {_describe_accounts(self.accounts)} are): "
                "unlock the wallet to derive it"
            )
        return xpub

    def public_key(self, account: int = 0, index: int = 0) -> bytes:
        """Compressed public key of address ``index`` of ``account``, without the password."""
        return accounts.public_key_from_account_xpub(self.account_xpub(account), index)

    def address(self, account: int = 0, index: int = 0) -> str:
        """``pos1…`` address ``index`` of ``account``, without the password."""
        return accounts.address_from_account_xpub(self.account_xpub(account), index)


class UnlockedWallet:
    """A wallet whose secrets are in memory: it can hand out private keys and sign.

    Secrets never appear in ``repr``/``str``. Python cannot wipe memory reliably, so drop the
    object as soon as the signing is done.
    """

    __slots__ = ("file", "_entropy", "_passphrase", "_master", "_account_keys", "_key")

    def __init__(self, file: WalletFile, entropy: bytes, passphrase: str, master: ExtendedKey,
                 key: _Stretched) -> None:
        self.file = file
        self._entropy = entropy
        self._passphrase = passphrase
        self._master = master
        self._key = key
        self._account_keys: dict[int, ExtendedKey] = {}

    @property
    def name(self) -> str:
        return self.file.name

    def _account_key(self, account: int) -> ExtendedKey:
        key = self._account_keys.get(account)
        if key is None:
            key = accounts.account_key(self._master, account)
            self._account_keys[account] = key
        return key

    def key(self, account: int = 0, index: int = 0) -> ExtendedKey:
        """The private extended key at ``m/44'/1'/{account}'/0/{index}``."""
        return accounts.address_key(self._account_key(account), index)

    def private_key(self, account: int = 0, index: int = 0) -> bytes:
        """The 32-byte private key of address ``index`` of ``account``."""
        private_key = self.key(account, index).private_key
        if private_key is None:  # pragma: no cover - derived from a private master
            raise WalletError("internal error: derived key has no private part")
        return private_key

    def public_key(self, account: int = 0, index: int = 0) -> bytes:
        return self.key(account, index).public_key

    def account_xpub(self, account: int = 0) -> str:
        """Any account's xpub, stored or not."""
        return self._account_key(account).neuter().to_string()

    def address(self, account: int = 0, index: int = 0) -> str:
        return accounts.address_from_account_xpub(self.account_xpub(account), index)

    def mnemonic(self) -> str:
        """The recovery phrase, recomputed from the stored entropy (for an explicit backup)."""
        return bip39.entropy_to_mnemonic(self._entropy)

    def has_passphrase(self) -> bool:
        """Whether a BIP-39 passphrase is part of the wallet (recovery needs it too)."""
        return self._passphrase != ""

    def __repr__(self) -> str:
        return f"UnlockedWallet(name={self.name!r}, path={str(self.file.path)!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an unlocked wallet holds secrets and cannot be pickled")


class Keystore:
    """The wallets of one home directory (``$POSCTL_HOME/wallets``)."""

    def __init__(self, directory: Path) -> None:
        """Nothing is created until the first wallet is written."""
        self.directory = Path(directory)

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Within, no other process or thread replaces or removes a wallet file of this
        directory (an ``flock`` on ``.keystore.lock``, and a lock per directory for the threads
        of this process; re-entrant in the thread holding it, whatever the Keystore object).
        Why: a command that unlocked a wallet and then took seconds (a new password typed twice,
        scrypt) wrote it back blindly — after a `wallet rename` it brought the old name back
        beside the new one, after `wallet delete` the deleted wallet. Changes check, under this
        lock, that the file is still the one they read."""
        key = self.directory.resolve()
        with _CHANGE_REGISTRY:
            in_process = _CHANGE_LOCKS.setdefault(key, threading.RLock())
        with in_process:
            if _CHANGE_DEPTH.get(key, 0):  # this thread holds it already
                _CHANGE_DEPTH[key] += 1
                try:
                    yield
                finally:
                    _CHANGE_DEPTH[key] -= 1
                return
            try:
                self._ensure_directory()
                fd = os.open(self.directory / CHANGE_LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
            except OSError as exc:
                raise WalletError(f"cannot lock the wallets in {self.directory} for a change: "
                                  f"{exc.strerror or exc}; check that the directory is writable") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                _CHANGE_DEPTH[key] = 1
                try:
                    yield
                finally:
                    _CHANGE_DEPTH[key] = 0
            finally:
                os.close(fd)  # and with it the flock

    def check_unchanged(self, name: str, read: WalletFile, doing: str) -> None:
        """Refuse ``doing`` if wallet ``name`` is no longer the file ``read`` (call while
        :meth:`changing`): another command renamed, deleted or rewrote it meanwhile."""
        try:
            current = self.load(name)
        except WalletNotFound:
            current = None
        # (a WalletFile compares its public keys only: a new password keeps them, its sealed part not)
        if current is None or current != read or current._sealed != read._sealed:
            what = "is gone (renamed or deleted" if current is None else "was rewritten (its password changed"
            raise WalletChanged(f"wallet '{name}' {what} by another posctl command) since this one read it: "
                                f"nothing was changed; {doing}")

    # names -----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Names of the wallets present, sorted; temp files and stray files are ignored."""
        if not self.directory.is_dir():
            return []
        try:
            entries = list(self.directory.iterdir())
        except OSError as exc:
            raise WalletError(f"cannot list wallets in {self.directory}: {exc.strerror}") from None
        found = [
            entry.stem
            for entry in entries
            if entry.suffix == FILE_SUFFIX
            and WALLET_NAME_PATTERN.fullmatch(entry.stem)
            and entry.is_file()
        ]
        return sorted(found)

    def path(self, name: str) -> Path:
        """Where wallet ``name`` lives; the name is validated so it can never leave the directory."""
        return self.directory / f"{check_wallet_name(name)}{FILE_SUFFIX}"

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    # create / recover ------------------------------------------------------------------------

    def create(
        self,
        name: str,
        password: str,
        *,
        words: int = bip39.DEFAULT_WORDS,
        passphrase: str = "",
        force: bool = False,
        kdf: ScryptParams = ScryptParams.default(),
    ) -> tuple[WalletFile, str]:
        """Create a new wallet; returns it and its mnemonic phrase, to be shown exactly once."""
        self._check_can_write(name, password, kdf, force)
        phrase = bip39.generate_mnemonic(words)
        entropy = bip39.mnemonic_to_entropy(phrase)
        wallet = self._save(name, entropy, passphrase, password, kdf=kdf, force=force)
        return wallet, phrase

    def recover(
        self,
        name: str,
        phrase: str,
        password: str,
        *,
        passphrase: str = "",
        force: bool = False,
        kdf: ScryptParams = ScryptParams.default(),
    ) -> WalletFile:
        """Rebuild a wallet file from its mnemonic (and BIP-39 passphrase, if it had one)."""
        self._check_can_write(name, password, kdf, force)
        entropy = bip39.mnemonic_to_entropy(phrase)
        return self._save(name, entropy, passphrase, password, kdf=kdf, force=force)

    def import_xpub(self, name: str, xpub: str) -> WalletFile:
        """A watch-only wallet from an account xpub (see the module docstring); no password."""
        self.check_name_free(name)
        key = accounts.parse_account_xpub(xpub)
        account = key.child_number - HARDENED
        public = _watch_only_public_fields(name, {account: key.to_string()})
        self._write_document(self.path(name), public, dict(public), overwrite=False)
        return self.load(name)

    def change_password(self, unlocked: UnlockedWallet, new_password: str, *, kdf: ScryptParams) -> WalletFile:
        """Re-seal an unlocked wallet under a new password (fresh salt and nonce), replacing its
        file atomically: a crash leaves the old file, openable with the old password, or the new
        one, never a mix. Unlocking first is what proves the old password."""
        self._check_password_and_kdf(new_password, kdf)
        salt = secrets.token_bytes(SALT_BYTES)
        aes_key, password_check = _stretch(new_password, salt, kdf)  # the slow part, outside the lock
        with self.changing():
            self.check_unchanged(unlocked.name, unlocked.file, f"check `posctl wallet list`, then run "
                                                               "`posctl wallet passwd` again")
            return self._seal(unlocked.name, unlocked._entropy, unlocked._passphrase,
                              _Stretched(kdf, salt, aes_key, password_check), force=True)

    def copy_renamed(self, old: str, new: str, unlocked: UnlockedWallet | None) -> WalletFile:
        """Write wallet ``old`` again as ``new`` (never over an existing file); ``old`` stays.

        The name is part of what the cipher authenticates, so a sealed wallet must be unlocked
        (``unlocked``) to be re-sealed under the new name, keeping its scrypt parameters; a
        watch-only wallet (``unlocked`` None) is simply re-tagged. The caller removes ``old``
        once ``new`` is safe.
        """
        self.check_name_free(new, renaming=old)
        wallet = self.load(old)
        if wallet.watch_only:
            self.load_verified(old)  # a tampered watch-only file is not carried over
            public = _watch_only_public_fields(new, wallet.accounts)
            self._write_document(self.path(new), public, dict(public), overwrite=False)
            return self.load(new)
        if unlocked is None or unlocked.file != wallet:
            raise WalletError(f"renaming wallet '{old}' needs it unlocked with its password")
        return self._seal(new, unlocked._entropy, unlocked._passphrase, unlocked._key, force=False)

    def delete(self, name: str) -> Path:
        """Remove wallet ``name``'s file (damaged or not); only its recovery phrase can bring it back."""
        path = self.path(name)
        if not path.exists():
            raise WalletNotFound(f"no wallet named '{name}' in {self.directory}")
        if path.is_dir():
            raise KeystoreDamaged(path, "it is a directory, not a file")
        with self.changing():
            path.unlink()
            _fsync_directory(self.directory)
        return path

    def same_keys(self, name: str) -> list[str]:
        """Other wallets holding some of ``name``'s keys (an account xpub in common); damaged
        files are skipped, ``wallet list`` reports them."""
        wallet = self.load(name)
        twins = []
        for other in self.names():
            if other == name:
                continue
            try:
                if wallet.shares_keys_with(self.load(other)):
                    twins.append(other)
            except WalletError:
                continue
        return twins

    def check_name_free(self, name: str, *, renaming: str | None = None, force: bool = False) -> None:
        """``name`` is valid and no wallet has it, even up to case. ``renaming``: the wallet being
        renamed, which may differ from ``name`` only in case; ``force``: ``name`` itself may exist."""
        path = self.path(name)
        if self.directory.exists() and not self.directory.is_dir():
            raise WalletError(f"{self.directory} is a file, not a directory: move it aside so wallets can be stored")
        if path.exists() and not force and renaming != name:
            raise WalletExists(
                f"wallet '{name}' already exists at {path}: choose another name "
                "(posctl never overwrites a wallet)"
            )
        twins = [other for other in self.names() if other.lower() == name.lower() and other not in (name, renaming)]
        if twins:
            raise WalletExists(
                f"wallet '{twins[0]}' already exists and differs from '{name}' only in case: "
                "choose another name (the two files would collide on case-insensitive disks)"
            )

    @staticmethod
    def _check_password_and_kdf(password: str, kdf: ScryptParams) -> None:
        if not isinstance(password, str) or password == "":
            raise WalletError("a wallet password must be a non-empty string")
        problem = kdf.problem()
        if problem is not None:
            raise WalletError(problem)

    def _check_can_write(self, name: str, password: str, kdf: ScryptParams, force: bool) -> None:
        """Cheap checks first, so a refused create never costs a scrypt run."""
        check_wallet_name(name)
        self._check_password_and_kdf(password, kdf)
        self.check_name_free(name, force=force)

    def _save(
        self,
        name: str,
        entropy: bytes,
        passphrase: str,
        password: str,
        *,
        kdf: ScryptParams,
        force: bool,
    ) -> WalletFile:
        salt = secrets.token_bytes(SALT_BYTES)
        aes_key, password_check = _stretch(password, salt, kdf)
        return self._seal(name, entropy, passphrase, _Stretched(kdf, salt, aes_key, password_check), force=force)

    def _seal(self, name: str, entropy: bytes, passphrase: str, key: _Stretched, *, force: bool) -> WalletFile:
        """Encrypt under an already stretched password (fresh nonce) and write the file."""
        seed = bip39.entropy_to_seed(entropy, passphrase)
        master = ExtendedKey.from_seed(seed)
        stored = accounts.account_xpubs(master, range(STORED_ACCOUNTS))
        kdf, salt, aes_key, password_check = key.kdf, key.salt, key.aes_key, key.password_check
        nonce = secrets.token_bytes(NONCE_BYTES)
        public = _public_fields(name, kdf, salt, password_check, nonce, stored)
        plaintext = json.dumps(
            {"entropy": entropy.hex(), "passphrase": passphrase}, sort_keys=True
        ).encode("utf-8")
        cipher = AES.new(aes_key, AES.MODE_GCM, nonce=nonce)
        cipher.update(_associated_data(public))
        ciphertext, tag = cipher.encrypt_and_digest(plaintext)

        document = dict(public)
        document["cipher"] = {**public["cipher"], "tag": tag.hex()}
        document["ciphertext"] = ciphertext.hex()
        self._write_document(self.path(name), public, document, overwrite=force)
        return self.load(name)

    def _write_document(self, path: Path, public: Mapping[str, Any], document: dict[str, Any], *,
                        overwrite: bool) -> None:
        """Tag ``document`` with this home's key over ``public`` and write it atomically, 0600."""
        try:
            self._ensure_directory()
            document["public_mac"] = _public_mac(self._key(create=True), public).hex()
            data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
            _write_atomically(path, data, overwrite=overwrite)
        except WalletError:
            raise
        except OSError as exc:
            raise WalletError(
                f"cannot write wallet file {path}: {exc.strerror or exc}; "
                "check that the directory exists, is a directory and is writable"
            ) from None

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
        if not self.directory.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(self.directory))
        if stat.S_IMODE(self.directory.stat().st_mode) != DIRECTORY_MODE:
            os.chmod(self.directory, DIRECTORY_MODE)

    # integrity tag -------------------------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    def _key(self, *, create: bool) -> bytes | None:
        """The per-home tag key; made (0600, exclusively) on first need when ``create``."""
        path = self.key_path
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            if not create:
                return None
            key = secrets.token_bytes(KEY_BYTES)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:  # another process made it first: use theirs
                return self._key(create=False)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key)
                handle.flush()
                os.fsync(handle.fileno())
            _fsync_directory(self.directory)
            return key
        if len(key) != KEY_BYTES:
            raise WalletError(f"the keystore key {path} is damaged ({len(key)} bytes, not {KEY_BYTES}): "
                              "move it aside, then run `posctl wallet verify NAME` for each wallet")
        return key

    def load_verified(self, name: str) -> WalletFile:
        """Like :meth:`load`, but only if the public keys carry this home's valid tag: for
        resolving a name to an address (a recipient) without the password."""
        wallet = self.load(name)
        fix = f"run `posctl wallet verify {name}` (it asks for the wallet's password, checks the keys against the secret, and tags the file)"
        if wallet.public_mac is None:
            raise WalletTampered(
                f"wallet file {wallet.path} has no integrity tag (written by an older posctl, or the tag was "
                f"removed), so its address cannot be trusted without the password: {fix}"
            )
        key = self._key(create=False)
        if key is None:
            raise WalletTampered(
                f"the keystore key {self.key_path} is missing, so wallet file {wallet.path} cannot be checked: {fix}"
            )
        if not hmac.compare_digest(_public_mac(key, wallet.public_fields()), wallet.public_mac):
            raise WalletTampered(
                f"wallet file {wallet.path} was changed: its public keys do not match its integrity tag "
                "(edited, or copied from another home), so its address is not used; restore the file from a "
                f"backup or your mnemonic (`posctl wallet recover`), or, if you copied it here yourself, {fix}"
            )
        return wallet

    def _retag(self, wallet: WalletFile) -> WalletFile:
        """After an unlock proved the public keys match the secret: (re)write the tag. Returns
        the wallet as it is now on disk (with its tag), for a later :meth:`check_unchanged`."""
        try:
            key = self._key(create=True)
            if key is None:
                return wallet
            mac = _public_mac(key, wallet.public_fields())
            if wallet.public_mac is not None and hmac.compare_digest(mac, wallet.public_mac):
                return wallet
            with self.changing():
                try:
                    self.check_unchanged(wallet.name, wallet, "")
                except WalletChanged:
                    return wallet  # renamed or rewritten meanwhile: never write it back
                document = json.loads(wallet.path.read_bytes())
                document["public_mac"] = mac.hex()
                data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
                _write_atomically(wallet.path, data, overwrite=True)
                return self.load(wallet.name)
        except (OSError, ValueError, WalletError):
            return wallet  # a read-only home: the wallet still works, it stays untagged

    # load / unlock ---------------------------------------------------------------------------

    def load(self, name: str) -> WalletFile:
        """Read a wallet's public data; no password needed."""
        path = self.path(name)
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except (FileNotFoundError, NotADirectoryError):
            raise WalletNotFound(
                f"no wallet named '{name}' in {self.directory}; create or recover it first"
            ) from None
        except IsADirectoryError:
            raise KeystoreDamaged(path, "it is a directory, not a file") from None
        except OSError as exc:
            raise WalletError(f"cannot read wallet file {path}: {exc.strerror}") from None
        return _parse_wallet_file(name, path, raw)

    def unlock(self, name: str, password: str) -> UnlockedWallet:
        """Decrypt a wallet; :class:`WrongPassword` and :class:`KeystoreDamaged` are distinct."""
        wallet = self.load(name)
        sealed = wallet._sealed
        if sealed is None:
            raise WatchOnlyWallet(name)
        if not isinstance(password, str):
            raise WrongPassword("the password must be a string")
        aes_key, password_check = _stretch(password, sealed.salt, sealed.kdf)
        if not hmac.compare_digest(password_check, sealed.password_check):
            raise WrongPassword(f"wrong password for wallet '{name}'")

        public = _public_fields(
            wallet.name, sealed.kdf, sealed.salt, sealed.password_check, sealed.nonce,
            wallet.accounts,
        )
        cipher = AES.new(aes_key, AES.MODE_GCM, nonce=sealed.nonce)
        cipher.update(_associated_data(public))
        try:
            plaintext = cipher.decrypt_and_verify(sealed.ciphertext, sealed.tag)
        except ValueError:
            raise KeystoreDamaged(
                wallet.path,
                "the password is right but the contents fail authentication: "
                "edited or corrupted",
            ) from None

        entropy, passphrase = _parse_plaintext(wallet.path, plaintext)
        master = ExtendedKey.from_seed(bip39.entropy_to_seed(entropy, passphrase))
        derived = accounts.account_xpubs(master, range(len(wallet.accounts)))
        for account, xpub in wallet.accounts.items():
            if derived.get(account) != xpub:
                raise KeystoreDamaged(
                    wallet.path, f"stored xpub of account {account} does not match the secret"
                )
        wallet = self._retag(wallet)
        stretched = _Stretched(sealed.kdf, sealed.salt, aes_key, sealed.password_check)
        return UnlockedWallet(wallet, entropy, passphrase, master, stretched)


# --- helpers -----------------------------------------------------------------------------------


def check_wallet_name(name: str) -> str:
    """Return ``name`` if it is a valid wallet name, else raise :class:`InvalidWalletName`."""
    if not isinstance(name, str) or not WALLET_NAME_PATTERN.fullmatch(name):
        raise InvalidWalletName(
            f"invalid wallet name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def _stretch(password: str, salt: bytes, kdf: ScryptParams) -> tuple[bytes, bytes]:
    """(AES key, password check) from one scrypt run; see the module docstring for why two."""
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    derived = scrypt(secret, salt, KEY_BYTES + CHECK_BYTES, N=kdf.n, r=kdf.r, p=kdf.p)
    aes_key, check_key = derived[:KEY_BYTES], derived[KEY_BYTES:]
    return aes_key, hmac.new(check_key, _PASSWORD_CHECK_MESSAGE, hashlib.sha256).digest()


def _public_fields(
    name: str,
    kdf: ScryptParams,
    salt: bytes,
    password_check: bytes,
    nonce: bytes,
    stored: Mapping[int, str],
) -> dict[str, Any]:
    """Every field of the file except the ciphertext and the tag."""
    return {
        "version": FORMAT_VERSION,
        "name": name,
        "kdf": {"name": KDF_NAME, "n": kdf.n, "r": kdf.r, "p": kdf.p, "salt": salt.hex()},
        "password_check": password_check.hex(),
        "cipher": {"name": CIPHER_NAME, "nonce": nonce.hex()},
        "accounts": {str(account): xpub for account, xpub in sorted(stored.items())},
    }


def _watch_only_public_fields(name: str, stored: Mapping[int, str]) -> dict[str, Any]:
    """Every field of a watch-only file but its tag: all of it is public, all of it is tagged."""
    return {
        "version": FORMAT_VERSION,
        "kind": WATCH_ONLY_KIND,
        "name": name,
        "accounts": {str(account): xpub for account, xpub in sorted(stored.items())},
    }


def _public_mac(key: bytes, public: Mapping[str, Any]) -> bytes:
    """HMAC-SHA256 over the same canonical public fields GCM authenticates."""
    return hmac.new(key, _associated_data(public), hashlib.sha256).digest()


def _associated_data(public: Mapping[str, Any]) -> bytes:
    """Canonical bytes of the public fields: reformatting the file does not change them."""
    return _AAD_TAG + json.dumps(
        public, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def _write_atomically(path: Path, data: bytes, *, overwrite: bool) -> None:
    """temp file (0600) -> write -> fsync -> rename/link -> fsync directory."""
    directory = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            _link_without_overwrite(temp, path)
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _link_without_overwrite(temp: Path, path: Path) -> None:
    """Publish ``temp`` as ``path`` only if ``path`` does not exist, atomically where possible."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise WalletExists(
            f"wallet file {path} appeared while saving; it was left untouched"
        ) from None
    except OSError:
        # Filesystems without hard links: check then rename (a narrow race, still never a mix).
        if path.exists():
            raise WalletExists(f"wallet file {path} already exists; it was left untouched") from None
        os.replace(temp, path)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_wallet_file(name: str, path: Path, raw: bytes) -> WalletFile:
    """Strictly parse a wallet file; any deviation is damage, reported without a traceback."""
    if len(raw) > MAX_FILE_BYTES:
        raise KeystoreDamaged(path, "it is far larger than a wallet file")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
    except (UnicodeDecodeError, ValueError, RecursionError, EncodingError):
        raise KeystoreDamaged(path, "it is not valid JSON (truncated or overwritten?)") from None
    if not isinstance(document, dict):
        raise KeystoreDamaged(path, "it is not a JSON object")
    version = document.get("version")
    if type(version) is int and version != FORMAT_VERSION:
        raise WalletError(
            f"wallet file {path} has format version {version}, which this posctl cannot read; "
            "upgrade posctl"
        )
    if "kind" in document:
        return _parse_watch_only(name, path, document)
    missing = sorted(_TOP_LEVEL_FIELDS - document.keys())
    if missing:
        raise KeystoreDamaged(path, f"missing field(s) {', '.join(missing)}")
    extra = sorted(document.keys() - _TOP_LEVEL_FIELDS - _OPTIONAL_FIELDS)
    if extra:
        raise KeystoreDamaged(path, f"unexpected field(s) {', '.join(extra)}")
    if type(version) is not int:
        raise KeystoreDamaged(path, "version is not an integer")
    _check_stored_name(name, path, document["name"])

    kdf_fields = _object(path, document["kdf"], "kdf", {"name", "n", "r", "p", "salt"})
    if kdf_fields["name"] != KDF_NAME:
        raise KeystoreDamaged(path, f"unknown key derivation {kdf_fields['name']!r}")
    kdf = ScryptParams(n=kdf_fields["n"], r=kdf_fields["r"], p=kdf_fields["p"])
    problem = kdf.problem()
    if problem is not None:
        raise KeystoreDamaged(path, problem)
    salt = _hex_field(path, kdf_fields["salt"], "kdf.salt", min_size=SALT_BYTES, max_size=64)

    cipher = _object(path, document["cipher"], "cipher", {"name", "nonce", "tag"})
    if cipher["name"] != CIPHER_NAME:
        raise KeystoreDamaged(path, f"unknown cipher {cipher['name']!r}")
    nonce = _hex_field(path, cipher["nonce"], "cipher.nonce", NONCE_BYTES, NONCE_BYTES)
    tag = _hex_field(path, cipher["tag"], "cipher.tag", TAG_BYTES, TAG_BYTES)
    password_check = _hex_field(
        path, document["password_check"], "password_check", CHECK_BYTES, CHECK_BYTES
    )
    ciphertext = _hex_field(path, document["ciphertext"], "ciphertext", 1, MAX_FILE_BYTES)

    stored = _parse_accounts(path, document["accounts"])
    mac = None
    if "public_mac" in document:
        mac = _hex_field(path, document["public_mac"], "public_mac", KEY_BYTES, KEY_BYTES)
    sealed = _Sealed(kdf, salt, password_check, nonce, tag, ciphertext)
    return WalletFile(name=name, path=path, accounts=MappingProxyType(stored), _sealed=sealed, public_mac=mac)


def _parse_watch_only(name: str, path: Path, document: dict[str, Any]) -> WalletFile:
    """A watch-only file: one or more account xpubs, each under its own account number."""
    if document["kind"] != WATCH_ONLY_KIND:
        raise KeystoreDamaged(path, f"unknown wallet kind {document['kind']!r}")
    if document.keys() != _WATCH_ONLY_FIELDS:
        raise KeystoreDamaged(path, f"a watch-only file has exactly the fields {', '.join(sorted(_WATCH_ONLY_FIELDS))}")
    if type(document["version"]) is not int:
        raise KeystoreDamaged(path, "version is not an integer")
    _check_stored_name(name, path, document["name"])
    value = document["accounts"]
    if not isinstance(value, dict) or not value:
        raise KeystoreDamaged(path, "field accounts must be a non-empty object")
    stored: dict[int, str] = {}
    for key, xpub in value.items():
        if not isinstance(key, str) or not key.isdigit() or str(int(key)) != key:
            raise KeystoreDamaged(path, f"account number {key!r} is not a decimal number")
        stored[int(key)] = _checked_account_xpub(path, int(key), xpub)
    mac = _hex_field(path, document["public_mac"], "public_mac", KEY_BYTES, KEY_BYTES)
    return WalletFile(name=name, path=path, accounts=MappingProxyType(stored), _sealed=None, public_mac=mac)


def _check_stored_name(name: str, path: Path, stored_name: Any) -> None:
    if not isinstance(stored_name, str) or not WALLET_NAME_PATTERN.fullmatch(stored_name):
        raise KeystoreDamaged(path, "field name is not a valid wallet name")
    if stored_name != name:
        raise KeystoreDamaged(
            path,
            f"it holds wallet {stored_name!r}, not {name!r}; "
            f"rename it back to {stored_name}{FILE_SUFFIX} if it was renamed "
            "(`posctl wallet rename` renames a wallet properly)",
        )


def _object(path: Path, value: Any, field: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or value.keys() != keys:
        raise KeystoreDamaged(path, f"field {field} must be an object with {', '.join(sorted(keys))}")
    return value


def _hex_field(path: Path, value: Any, field: str, min_size: int, max_size: int) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise KeystoreDamaged(path, f"field {field} is not lowercase hex")
    data = bytes.fromhex(value)
    if not min_size <= len(data) <= max_size:
        raise KeystoreDamaged(path, f"field {field} has the wrong length")
    return data


def _parse_accounts(path: Path, value: Any) -> dict[int, str]:
    """Account xpubs: public keys at depth 3 whose child number is their hardened account."""
    if not isinstance(value, dict) or not value:
        raise KeystoreDamaged(path, "field accounts must be a non-empty object")
    expected = [str(account) for account in range(len(value))]
    if sorted(value, key=lambda k: (len(k), k)) != expected:
        raise KeystoreDamaged(path, "field accounts must list accounts 0, 1, 2, … in order")
    return {int(key): _checked_account_xpub(path, int(key), xpub) for key, xpub in value.items()}


def _checked_account_xpub(path: Path, account: int, xpub: Any) -> str:
    """``xpub`` if it is the public key of account node ``account``, else the file is damaged."""
    try:
        parsed = ExtendedKey.from_string(xpub) if isinstance(xpub, str) else None
    except InvalidExtendedKey as exc:
        raise KeystoreDamaged(path, f"xpub of account {account} is invalid: {exc}") from None
    if (
        parsed is None
        or parsed.is_private
        or parsed.depth != accounts.ACCOUNT_DEPTH
        or parsed.child_number != HARDENED + account
    ):
        raise KeystoreDamaged(path, f"xpub of account {account} is not an account xpub")
    return xpub


def _parse_plaintext(path: Path, plaintext: bytes) -> tuple[bytes, str]:
    """(entropy, passphrase) from the decrypted payload."""
    try:
        payload = json.loads(plaintext.decode("utf-8"))
        entropy = bytes.fromhex(payload["entropy"])
        passphrase = payload["passphrase"]
        if not isinstance(passphrase, str):
            raise TypeError("passphrase is not a string")
        bip39.entropy_to_mnemonic(entropy)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, InvalidMnemonic):
        raise KeystoreDamaged(path, "its decrypted contents are malformed") from None
    return entropy, passphrase


def _describe_accounts(stored: Mapping[int, str]) -> str:
    numbers = sorted(stored)
    if not numbers:
        return "none"
    return f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])

