"""The wallets of one home (``$POSCTL_HOME/wallets``): create, recover, seal, unlock, rename,
delete (DESIGN decision 13). The file format and its parser are :mod:`wallet.wallet_file`; the
crash-safe writes :mod:`wallet.files`.

Sealing
    The BIP-39 entropy and passphrase are encrypted with AES-256-GCM under a key stretched from
    the password by scrypt, the public fields fed to GCM as associated data. After decryption
    the stored xpubs are also re-derived from the entropy and compared, so even a file written
    by a buggy version cannot show addresses the wallet does not own once it has been unlocked.

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
    :meth:`Keystore.import_xpub` writes a file with no secret; :meth:`Keystore.unlock` refuses it
    with :class:`WatchOnlyWallet`, so nothing can try to sign with it. Its tag is written at
    import, since there is no secret to check it against later.

Addresses shown without the password are only as trustworthy as the file: someone who can
write to it can substitute a valid xpub of their own, and only an unlock (or the per-home tag,
:meth:`Keystore.load_verified`) detects that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt

from ledger.crypto.address import is_valid_address
from wallet import accounts, bip39
from wallet.errors import (
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
from wallet.files import DIRECTORY_MODE, FILE_MODE, fsync_directory, write_atomically
from wallet.hd import HARDENED, ExtendedKey
from wallet.wallet_file import (
    CHECK_BYTES,
    FILE_SUFFIX,
    KEY_BYTES,
    MAX_FILE_BYTES,
    NONCE_BYTES,
    SALT_BYTES,
    STORED_ACCOUNTS,
    WALLET_NAME_PATTERN,
    ScryptParams,
    WalletFile,
    associated_data,
    check_wallet_name,
    parse_wallet_file,
    public_tag,
    sealed_public_fields,
    watch_only_public_fields,
)

_PASSWORD_CHECK_MESSAGE = b"posctl keystore password check v1"
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


@dataclass(frozen=True)
class _Stretched:
    """A password after scrypt: what sealing needs, so a rename re-seals without asking again
    (same password, salt and parameters; a fresh nonce)."""

    kdf: ScryptParams
    salt: bytes
    aes_key: bytes = dataclasses.field(repr=False)
    password_check: bytes = dataclasses.field(repr=False)


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
                self.ensure_directory()
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
        if current is None or current != read or current.sealed != read.sealed:
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
        public = watch_only_public_fields(name, {account: key.to_string()})
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
            self.check_unchanged(unlocked.name, unlocked.file, "check `posctl wallet list`, then run "
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
            public = watch_only_public_fields(new, wallet.accounts)
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
            fsync_directory(self.directory)
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
        renamed, which may differ from ``name`` only in case; ``force``: ``name`` itself may exist.
        A name that is also a valid address is refused: wherever a wallet name or an address is
        accepted (a recipient, ``chain account``, ``--alloc``) the address would win, and the
        wallet's own address would be silently ignored."""
        path = self.path(name)
        if is_valid_address(name):
            raise InvalidWalletName(f"wallet name {name!r} is a valid address, so it could never name this wallet "
                                    "where an address is also accepted: choose another name")
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
        public = sealed_public_fields(name, kdf, salt, password_check, nonce, stored)
        plaintext = json.dumps(
            {"entropy": entropy.hex(), "passphrase": passphrase}, sort_keys=True
        ).encode("utf-8")
        cipher = AES.new(aes_key, AES.MODE_GCM, nonce=nonce)
        cipher.update(associated_data(public))
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
            self.ensure_directory()
            document["public_mac"] = public_tag(self._key(create=True), public).hex()
            data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
            write_atomically(path, data, overwrite=overwrite)
        except WalletError:
            raise
        except OSError as exc:
            raise WalletError(
                f"cannot write wallet file {path}: {exc.strerror or exc}; "
                "check that the directory exists, is a directory and is writable"
            ) from None

    def ensure_directory(self) -> None:
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
            fsync_directory(self.directory)
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
                f"removed), so its address cannot be trusted without the password: {fix}", "untagged"
            )
        key = self._key(create=False)
        if key is None:
            raise WalletTampered(
                f"the keystore key {self.key_path} is missing, so wallet file {wallet.path} cannot be checked: {fix}",
                "no-key"
            )
        if not hmac.compare_digest(public_tag(key, wallet.public_fields()), wallet.public_mac):
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
            mac = public_tag(key, wallet.public_fields())
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
                write_atomically(wallet.path, data, overwrite=True)
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
        return parse_wallet_file(name, path, raw)

    def unlock(self, name: str, password: str) -> UnlockedWallet:
        """Decrypt a wallet; :class:`WrongPassword` and :class:`KeystoreDamaged` are distinct."""
        wallet = self.load(name)
        sealed = wallet.sealed
        if sealed is None:
            raise WatchOnlyWallet(name)
        if not isinstance(password, str):
            raise WrongPassword("the password must be a string")
        aes_key, password_check = _stretch(password, sealed.salt, sealed.kdf)
        if not hmac.compare_digest(password_check, sealed.password_check):
            raise WrongPassword(f"wrong password for wallet '{name}'")

        public = sealed_public_fields(
            wallet.name, sealed.kdf, sealed.salt, sealed.password_check, sealed.nonce,
            wallet.accounts,
        )
        cipher = AES.new(aes_key, AES.MODE_GCM, nonce=sealed.nonce)
        cipher.update(associated_data(public))
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


def _stretch(password: str, salt: bytes, kdf: ScryptParams) -> tuple[bytes, bytes]:
    """(AES key, password check) from one scrypt run; see the module docstring for why two."""
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    derived = scrypt(secret, salt, KEY_BYTES + CHECK_BYTES, N=kdf.n, r=kdf.r, p=kdf.p)
    aes_key, check_key = derived[:KEY_BYTES], derived[KEY_BYTES:]
    return aes_key, hmac.new(check_key, _PASSWORD_CHECK_MESSAGE, hashlib.sha256).digest()


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

