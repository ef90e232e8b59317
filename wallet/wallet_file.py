"""The wallet file's format: what ``$POSCTL_HOME/wallets/NAME.json`` holds, and its strict parser.

What is secret and what is not
    The secret is the BIP-39 entropy (from which the words are recomputed) and the optional
    BIP-39 passphrase. They are encrypted with AES-256-GCM under a key stretched from the
    password by scrypt (:mod:`wallet.keystore` seals and unlocks). The account xpubs of accounts
    ``0..STORED_ACCOUNTS-1`` are stored in the clear so that addresses can be listed without
    the password.

File format (version 1)::

    {"version": 1, "name": "alice",
     "kdf": {"name": "scrypt", "n": 262144, "r": 8, "p": 1, "salt": "<hex>"},
     "password_check": "<hex, 32 bytes>",
     "cipher": {"name": "aes-256-gcm", "nonce": "<hex, 12 bytes>", "tag": "<hex, 16 bytes>"},
     "ciphertext": "<hex>",
     "accounts": {"0": "xpub…", …, "9": "xpub…"},
     "public_mac": "<hex, 32 bytes>"}

Binding the public fields to the secret
    Every field except the ciphertext, the tag and ``public_mac`` is fed to GCM as associated
    data (:func:`associated_data`, a canonical JSON form, so re-indenting the file changes
    nothing). Editing an xpub, the name, the KDF parameters or anything else therefore makes
    decryption fail. ``public_mac`` tags the same bytes with a per-home key
    (:func:`public_tag`), so a name resolves to an address without the password.

Watch-only wallets
    ``wallet import-xpub`` writes a file with no secret at all: ``{"version": 1, "kind":
    "watch-only", "name": …, "accounts": {"A": "xpub…"}, "public_mac": …}``, holding the one
    account xpub it was given under that account's number (:attr:`WalletFile.sealed` is None).

Parsing is strict: any deviation from the format is damage (:class:`KeystoreDamaged`, naming
the field), reported without a traceback, never guessed at.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ledger.encoding import reject_duplicate_keys
from ledger.errors import EncodingError
from wallet import accounts
from wallet.errors import InvalidExtendedKey, InvalidWalletName, KeystoreDamaged, WalletError
from wallet.hd import HARDENED, ExtendedKey

FORMAT_VERSION = 1
"""Version of the file layout; a file with another version is refused, never guessed at."""

STORED_ACCOUNTS = 10
"""Accounts 0..9 have their xpub stored in the clear at creation."""

WALLET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Names are file names: letters, digits, ``-`` and ``_`` only (never a path), starting with a
letter or digit so a name never reads as a command-line option."""

FILE_SUFFIX = ".json"
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
_HEX = re.compile(r"^(?:[0-9a-f]{2})*$")

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
class Sealed:
    """The encrypted part of a wallet file and what is needed to open it."""

    kdf: ScryptParams
    salt: bytes
    password_check: bytes
    nonce: bytes
    tag: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class WalletFile:
    """A wallet as read from disk without its password: name, path and public account data."""

    name: str
    path: Path
    accounts: Mapping[int, str] = dataclasses.field(repr=False)
    """Stored account number -> account xpub."""
    sealed: Sealed | None = dataclasses.field(repr=False, compare=False)
    """None for a watch-only wallet: it has no secret."""
    public_mac: bytes | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def watch_only(self) -> bool:
        """Imported from an xpub: addresses and balances only, it can never sign."""
        return self.sealed is None

    @property
    def default_account(self) -> int:
        """The account shown when none is asked for: 0, or a watch-only wallet's one account."""
        return min(self.accounts)

    @property
    def light_kdf(self) -> bool:
        """Made with ``POSCTL_KDF=light``: its password is cheap to guess (tests and demos only)."""
        return self.sealed is not None and self.sealed.kdf.n < ScryptParams.default().n

    @property
    def kdf_label(self) -> str:
        if self.sealed is None:
            return "none (watch-only: no secret stored)"
        kdf = self.sealed.kdf
        return f"scrypt n=2^{kdf.n.bit_length() - 1}" + (" (LIGHT: tests and demos only)" if self.light_kdf else "")

    def public_fields(self) -> dict[str, Any]:
        sealed = self.sealed
        if sealed is None:
            return watch_only_public_fields(self.name, self.accounts)
        return sealed_public_fields(self.name, sealed.kdf, sealed.salt, sealed.password_check, sealed.nonce, self.accounts)

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


def check_wallet_name(name: str) -> str:
    """Return ``name`` if it is a valid wallet name, else raise :class:`InvalidWalletName`."""
    if not isinstance(name, str) or not WALLET_NAME_PATTERN.fullmatch(name):
        raise InvalidWalletName(
            f"invalid wallet name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def sealed_public_fields(
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


def watch_only_public_fields(name: str, stored: Mapping[int, str]) -> dict[str, Any]:
    """Every field of a watch-only file but its tag: all of it is public, all of it is tagged."""
    return {
        "version": FORMAT_VERSION,
        "kind": WATCH_ONLY_KIND,
        "name": name,
        "accounts": {str(account): xpub for account, xpub in sorted(stored.items())},
    }


def public_tag(key: bytes, public: Mapping[str, Any]) -> bytes:
    """HMAC-SHA256 over the same canonical public fields GCM authenticates."""
    return hmac.new(key, associated_data(public), hashlib.sha256).digest()


def associated_data(public: Mapping[str, Any]) -> bytes:
    """Canonical bytes of the public fields: reformatting the file does not change them."""
    return _AAD_TAG + json.dumps(
        public, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def parse_wallet_file(name: str, path: Path, raw: bytes) -> WalletFile:
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
    sealed = Sealed(kdf, salt, password_check, nonce, tag, ciphertext)
    return WalletFile(name=name, path=path, accounts=MappingProxyType(stored), sealed=sealed, public_mac=mac)


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
    return WalletFile(name=name, path=path, accounts=MappingProxyType(stored), sealed=None, public_mac=mac)


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


def _describe_accounts(stored: Mapping[int, str]) -> str:
    numbers = sorted(stored)
    if not numbers:
        return "none"
    return f"{numbers[0]}-{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])

