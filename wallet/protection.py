"""Slashing protection: the wallet remembers which proposal each key signed for each height.

Why
    Two different signed ``bpm`` proposals from one key for one height are equivocation
    (DESIGN decision 17): anyone holding both can submit them as evidence, and the validator is
    slashed and tombstoned for good. That can happen without malice: a proposal built twice
    because the nonce moved, a script started twice, two terminals racing. So, as Ethereum
    clients do with EIP-3076, the wallet keeps a record of what each key has signed and refuses
    to sign a conflicting proposal. Re-signing the identical proposal (same tx id) is harmless:
    it produces the same bytes, not evidence.

Scope: chain id, address, height
    Evidence needs both proposals to carry the same chain id, so the record is kept per chain
    id. A chain re-created under a *new* id starts from an empty history; one re-created under
    the *same* id shares it, which is right: the old proposals are still valid evidence there.

File format (version 1), ``$POSCTL_HOME/wallets/NAME.protection.json``, mode 0600::

    {"version": 1, "wallet": "alice",
     "chains": {"posctl-local-1": {
         "pos1…": {"floor": 0, "signed": {"17": "<tx id, 64 hex>", "18": "…"}}}}}

    Heights are decimal strings (JSON keys), listed in increasing order. The file sits next to
    the wallet; its name contains a dot, so it is never mistaken for a wallet.

Bounded size: the floor
    Only heights at most :data:`PRUNE_DISTANCE` below an address's highest signed height are
    kept, so one address costs at most about 850 KB however long it validates. Forgetting is
    made safe by ``floor``: every height below it may have been signed and is no longer listed,
    so a request to sign below the floor is refused as possible equivocation. Such a proposal
    would be useless anyway (a proposal is only valid in the block at its own height).

Durability and ordering
    :meth:`SlashingProtection.record` returns only after the new record is on disk (temp file,
    fsync, rename, fsync of the directory, the keystore's own writer). The caller releases the
    signed proposal only after that, so a crash at any moment leaves every released proposal
    recorded; at worst a proposal is recorded and never released, which costs nothing.

Concurrency
    Every read-check-write happens under an exclusive ``fcntl.flock`` on
    ``NAME.protection.lock``, and :meth:`~SlashingProtection.record` re-checks under that lock,
    so of two processes signing conflicting proposals for one height at once exactly one
    succeeds, even if both passed :meth:`~SlashingProtection.check` first. Recording also holds
    ``.protection-ADDRESS.lock`` (taken first), because one key can sit in two wallets (a phrase
    recovered under a second name) whose records have two locks; the check reads the other
    records too, and only the per-key lock orders it against their writers. Lock files are
    never deleted: deleting a lock file that others may have open defeats ``flock``.

A damaged record is never reset silently: an empty record would allow exactly the
equivocation it exists to prevent. It is refused with :class:`ProtectionRecordDamaged`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ledger.consensus.transactions import Bpm
from ledger.encoding import reject_duplicate_keys
from ledger.errors import EncodingError, InvalidAddress
from ledger.crypto.address import parse_address
from ledger.params import CHAIN_ID_PATTERN
from wallet.errors import InvalidWalletName, WalletError
from wallet.files import FILE_MODE, write_atomically
from wallet.keystore import Keystore
from wallet.wallet_file import WalletFile, check_wallet_name

FORMAT_VERSION = 1
"""Version of the record layout; another version is refused, never guessed at."""

RECORD_SUFFIX = ".protection.json"
LOCK_SUFFIX = ".protection.lock"
KEY_LOCK = ".protection-{address}.lock"
"""Held while any wallet records a proposal for the address (taken before the wallet's own
lock): one key under two names has two records, and only a lock per key orders their writers."""
VALIDATOR_LOCK = ".validator-{address}.lock"
"""Held by a running validator for its address, whatever the wallet's name (a key recovered
under a second name has a second record, but the same address)."""

PRUNE_DISTANCE = 10_000
"""Heights more than this far below an address's highest signed height are forgotten (and
refused from then on, via the floor): keeps the file bounded at ~10,001 heights per address."""

LOCK_TIMEOUT_SECONDS = 10.0
"""A record takes milliseconds to update; waiting far longer means a stuck process holds it."""

MAX_RECORD_BYTES = 64 * 1024 * 1024
"""Far beyond any honest record (~850 KB per address and chain): anything larger is not ours."""

TX_ID_SIZE = 32

_HEX_TX_ID = re.compile(r"[0-9a-f]{64}")
_HEIGHT_KEY = re.compile(r"[1-9][0-9]{0,18}")
_TOP_LEVEL_FIELDS = frozenset({"version", "wallet", "chains"})
_HISTORY_FIELDS = frozenset({"floor", "signed"})


class WouldEquivocate(WalletError):
    """Signing this proposal could give anyone evidence to slash and tombstone the validator."""

    def __init__(self, message: str, address: str, height: int, signed_tx_id: bytes | None) -> None:
        super().__init__(message)
        self.address = address
        self.height = height
        self.signed_tx_id = signed_tx_id  # None when the height is below the floor


class ProtectionRecordDamaged(WalletError):
    """A record file that cannot be read as ours; refusing is the only safe answer."""

    def __init__(self, path: Path, wallet_name: str, problem: str) -> None:
        super().__init__(
            f"slashing-protection record {path} is damaged ({problem}); wallet '{wallet_name}' "
            "will not sign proposals until it is fixed, since a lost record could let it sign a "
            "conflicting proposal and be slashed: restore the file from a backup, or move it "
            "aside only if no proposal this wallet signed is still within unbonding_blocks of "
            "the chain's height"
        )
        self.path = path
        self.problem = problem


@dataclass
class _History:
    """What one address signed on one chain: height -> tx id, and the pruning floor."""

    floor: int = 0
    signed: dict[int, bytes] = field(default_factory=dict)


_Record = dict[str, dict[str, _History]]
"""chain id -> address -> history."""


class SlashingProtection:
    """The signing record of one wallet (all its addresses, all chains)."""

    def __init__(self, wallets_dir: Path, wallet_name: str) -> None:
        """Nothing is read or created until the first check or record."""
        self.wallet_name = check_wallet_name(wallet_name)
        self.directory = Path(wallets_dir)
        self.path = self.directory / f"{wallet_name}{RECORD_SUFFIX}"
        self.lock_path = self.directory / f"{wallet_name}{LOCK_SUFFIX}"

    # reading ---------------------------------------------------------------------------------

    def check(self, address: str, height: int, tx_id: bytes, *, chain_id: str) -> None:
        """Raise :class:`WouldEquivocate` if signing ``tx_id`` for ``height`` could be evidence.

        Advisory on its own: another process may sign between this check and the caller's
        record, which is why :meth:`record` checks again under the lock.
        """
        address, height, tx_id, chain_id = _checked(address, height, tx_id, chain_id)
        history = self._load().get(chain_id, {}).get(address, _History())
        _refuse_conflict(history, address, height, tx_id)
        self._refuse_conflict_elsewhere(address, height, tx_id, chain_id)

    def signed_heights(self, address: str, *, chain_id: str) -> dict[int, bytes]:
        """Height -> tx id of every proposal ``address`` signed on ``chain_id`` still listed."""
        address = _checked_address(address)
        chain_id = _checked_chain_id(chain_id)
        history = self._load().get(chain_id, {}).get(address, _History())
        return dict(history.signed)

    def floor(self, address: str, *, chain_id: str) -> int:
        """Heights below this were pruned from the record and are refused (0: nothing pruned)."""
        address = _checked_address(address)
        chain_id = _checked_chain_id(chain_id)
        return self._load().get(chain_id, {}).get(address, _History()).floor

    # writing ---------------------------------------------------------------------------------

    def record(
        self, address: str, height: int, tx_id: bytes, *, chain_id: str, replace: bool = False
    ) -> None:
        """Durably record that ``address`` signed ``tx_id`` for ``height``; release after this.

        Re-checks under the lock and raises :class:`WouldEquivocate` on a conflict, so two
        processes cannot both record conflicting proposals. ``replace=True`` records anyway
        (the newest proposal wins): only for demonstrating slashing on purpose. Recording the
        same tx id again is a no-op.
        """
        address, height, tx_id, chain_id = _checked(address, height, tx_id, chain_id)
        with self._key_locked(address), self._locked():
            record = self._load()
            history = record.setdefault(chain_id, {}).setdefault(address, _History())
            if not replace:
                _refuse_conflict(history, address, height, tx_id)
                self._refuse_conflict_elsewhere(address, height, tx_id, chain_id)
                if history.signed.get(height) == tx_id:
                    return
            elif height < history.floor:
                return  # below the floor every height already counts as signed: nothing to add
            history.signed[height] = tx_id
            _prune(history)
            self._remove_stale_temp_files()
            self._save(record)

    def guard(self, proposal: Bpm, allow_equivocation: bool = False) -> None:
        """Check and durably record ``proposal`` before it is released; one call, one lock.

        With ``allow_equivocation`` a conflict does not raise but the proposal is still
        recorded, so the record always holds the newest proposal signed at each height.
        """
        if not isinstance(proposal, Bpm):
            raise WalletError(
                f"slashing protection guards bpm proposals, not {type(proposal).__name__}"
            )
        self.record(
            proposal.sender,
            proposal.height,
            proposal.tx_id,
            chain_id=proposal.chain_id,
            replace=allow_equivocation,
        )

    # renaming --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def moving_to(self, new_name: str) -> Iterator[bool]:
        """Move this record to wallet ``new_name`` (a rename) around the body, which moves the
        wallet file: the record is written again under the new name first (never over an
        existing record), and this one is deleted only after the body succeeded — so both names
        are guarded meanwhile, and a crash leaves both. Yields whether there was a record.

        This record's lock is held from the copy to the deletion. Why: a validator running under
        the old name records each height it signs into this file; recorded between a copy and a
        later deletion, a height was in neither record afterwards, and the new name could sign
        it again. Now such a record waits and lands after the move, in a new file under the old
        name, which the new name's checks read. A damaged record is refused, not dropped.
        """
        target = SlashingProtection(self.directory, new_name)
        with self._locked():
            copied = self.path.exists()
            if copied:
                target._save(self._load(), fresh=True)
            try:
                yield copied
            except BaseException:
                if copied and not Keystore(self.directory).exists(new_name):  # the keys never moved
                    target.remove()
                raise
            if copied:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()

    def remove(self) -> None:
        """Delete this record (a rename undone); the lock file stays."""
        with self._locked():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _refuse_conflict_elsewhere(self, address: str, height: int, tx_id: bytes, chain_id: str) -> None:
        """Apply the rule to the records of the other wallets in the directory as well.

        A recovery phrase restored under a second name holds the same keys but gets a record of
        its own; without this, a validator run as the second name after the first signed a height
        would sign it again and be slashed (a test did exactly that). Each record is replaced
        atomically by its writer, so reading it without its lock sees a whole version; a damaged
        one is refused, as this wallet's own would be. Records of wallets from another seed are
        skipped unread (their account 0 differs), so the cost stays small with many validators.
        """
        keystore = Keystore(self.directory)
        mine = _public_wallet(keystore, self.wallet_name)
        for path in sorted(self.directory.glob(f"*{RECORD_SUFFIX}")):
            if path == self.path or path.name.startswith("."):
                continue
            try:
                other = SlashingProtection(self.directory, path.name[: -len(RECORD_SUFFIX)])
            except InvalidWalletName:  # not a record this program wrote
                continue
            theirs = _public_wallet(keystore, other.wallet_name)
            if mine is not None and theirs is not None and _other_seed(mine, theirs):
                continue
            history = other._load(mentioning=address).get(chain_id, {}).get(address)
            if history is not None:
                _refuse_conflict(history, address, height, tx_id,
                                 f" in the record of wallet '{other.wallet_name}', which holds the same key")

    # one validator per key ----------------------------------------------------------------------

    @contextlib.contextmanager
    def sole_validator(self, address: str) -> Iterator[None]:
        """Held while a validator proposes as ``address``; a second one for the key is refused.

        Two processes with one key never equivocate (:meth:`record` decides between them), but
        they race: each skips the heights the other signed, and which one proposes is chance.
        Validator clients refuse to share a key for this reason. The lock is an ``flock``, so a
        validator that was killed leaves nothing to clean up; the file (holding the last
        holder's pid, for the message) is never deleted, as for the record's lock.
        """
        address = _checked_address(address)
        path = self.directory / VALIDATOR_LOCK.format(address=address)
        fd = self._open_lock(path, "validator lock")
        try:
            if not _try_lock(fd, path):
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                pid = f" (pid {holder})" if holder.isdigit() else ""
                raise WalletError(
                    f"a validator for {address} is already running{pid}: two processes proposing with "
                    "one key race each other for every height; stop that one first"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    # files -----------------------------------------------------------------------------------

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the wallet's protection lock (its record file's writers)."""
        return self._holding(self.lock_path, f"the slashing-protection lock of wallet '{self.wallet_name}'")

    def _key_locked(self, address: str) -> contextlib.AbstractContextManager[None]:
        """Hold the lock of ``address`` (every record that may list it), whatever the wallet's name.

        Without it, two names holding one key (a phrase recovered twice) lock two different
        files, and two processes can each check the other's record before either writes: both
        sign one height (a test saw that at most heights of a race). Always taken before the
        wallet's own lock, so the two can never be taken in opposite orders.
        """
        return self._holding(self.directory / KEY_LOCK.format(address=address),
                             f"the slashing-protection lock of {address}")

    @contextlib.contextmanager
    def _holding(self, path: Path, what: str) -> Iterator[None]:
        """Hold the ``flock`` of ``path``; bounded wait, then a message naming the cause."""
        fd = self._open_lock(path, "slashing-protection lock")
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
            while not _try_lock(fd, path):
                if time.monotonic() >= deadline:
                    raise WalletError(
                        f"another process has held {what} ({path}) for over "
                        f"{LOCK_TIMEOUT_SECONDS:.0f} s: wait for it to finish or stop it"
                    )
                time.sleep(0.005)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _open_lock(self, path: Path, what: str) -> int:
        """A descriptor of the lock file ``path`` in the wallets directory (created if need be)."""
        try:
            Keystore(self.directory).ensure_directory()
            return os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise WalletError(
                f"cannot open {what} {path}: {exc.strerror or exc}; "
                "check that the wallets directory exists and is writable"
            ) from None

    def _load(self, mentioning: str | None = None) -> _Record:
        """The record on disk; an absent file is an empty record, a damaged one is refused.

        With ``mentioning``, a whole-looking record (ending as this module writes one) whose
        bytes do not contain that address is not parsed (an empty record is returned): another
        wallet's record is read for every proposal, and parsing ~1 MB of JSON per record costs
        far more than the search. A record cut short is parsed, and so refused as damaged.
        """
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return {}
        except IsADirectoryError:
            raise self._damaged("it is a directory, not a file") from None
        except OSError as exc:
            raise WalletError(
                f"cannot read slashing-protection record {self.path}: {exc.strerror or exc}; "
                "no proposal is signed without it"
            ) from None
        if mentioning is not None and raw.endswith(b"}\n") and mentioning.encode("ascii") not in raw:
            return {}
        return self._parse(raw)

    def _save(self, record: _Record, *, fresh: bool = False) -> None:
        """Write ``record`` as this wallet's (``fresh``: a copy for a rename, never over a record)."""
        data = (json.dumps(_to_document(self.wallet_name, record), indent=2) + "\n").encode("ascii")
        try:
            write_atomically(self.path, data, overwrite=not fresh)
        except OSError as exc:
            consequence = "" if fresh else "; the proposal was not recorded, so do not release it"
            raise WalletError(
                f"cannot write slashing-protection record {self.path}: {exc.strerror or exc}{consequence}"
            ) from None

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files left by a writer killed mid-write; call only under the lock.

        Only a writer holding the lock creates them (``.NAME.protection.<random>.tmp``, from the
        keystore's atomic writer), so while we hold it any that exist are dead. Without this
        every crash mid-write would leave up to a whole record on disk, for good.
        """
        prefix, suffix = f".{self.path.stem}.", ".tmp"
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return  # the write that follows reports the directory's problem
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(suffix):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def _damaged(self, problem: str) -> ProtectionRecordDamaged:
        return ProtectionRecordDamaged(self.path, self.wallet_name, problem)

    def _parse(self, raw: bytes) -> _Record:
        """Strictly parse the record: any deviation is damage, never a reason to start over."""
        if len(raw) > MAX_RECORD_BYTES:
            raise self._damaged("it is far larger than any record")
        try:
            document = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicate_keys)
        except (UnicodeDecodeError, ValueError, RecursionError, EncodingError):
            raise self._damaged("it is not valid JSON (truncated or overwritten?)") from None
        if not isinstance(document, dict):
            raise self._damaged("it is not a JSON object")
        version = document.get("version")
        if type(version) is int and version != FORMAT_VERSION:
            raise WalletError(
                f"slashing-protection record {self.path} has format version {version}, which "
                "this posctl cannot read; upgrade posctl"
            )
        if document.keys() != _TOP_LEVEL_FIELDS or type(version) is not int:
            raise self._damaged(f"its fields must be exactly {', '.join(sorted(_TOP_LEVEL_FIELDS))}")
        if document["wallet"] != self.wallet_name:
            raise self._damaged(
                f"it belongs to wallet {document['wallet']!r}, not {self.wallet_name!r}"
            )
        chains = document["chains"]
        if not isinstance(chains, dict):
            raise self._damaged("field chains is not an object")
        record: _Record = {}
        for chain_id, addresses in chains.items():
            if not CHAIN_ID_PATTERN.fullmatch(chain_id):
                raise self._damaged(f"{chain_id!r} is not a chain id")
            if not isinstance(addresses, dict):
                raise self._damaged(f"chain {chain_id} is not an object")
            record[chain_id] = {
                address: self._parse_history(chain_id, address, history)
                for address, history in addresses.items()
            }
        return record

    def _parse_history(self, chain_id: str, address: str, value: Any) -> _History:
        where = f"chain {chain_id}, address {address}"
        try:
            canonical = parse_address(address)
        except InvalidAddress:
            raise self._damaged(f"{address!r} under chain {chain_id} is not an address") from None
        if canonical != address:
            raise self._damaged(f"{where} is not in lowercase")
        if not isinstance(value, dict) or value.keys() != _HISTORY_FIELDS:
            raise self._damaged(f"{where} must be an object with floor and signed")
        floor, signed = value["floor"], value["signed"]
        if type(floor) is not int or floor < 0:
            raise self._damaged(f"{where}: floor is not a non-negative integer")
        if not isinstance(signed, dict):
            raise self._damaged(f"{where}: signed is not an object")
        history = _History(floor=floor)
        for key, tx_hex in signed.items():
            if not _HEIGHT_KEY.fullmatch(key):
                raise self._damaged(f"{where}: {key!r} is not a height")
            if not isinstance(tx_hex, str) or not _HEX_TX_ID.fullmatch(tx_hex):
                raise self._damaged(f"{where}, height {key}: not a 64-digit lowercase hex tx id")
            height = int(key)
            if height < floor:
                raise self._damaged(f"{where}: height {height} is below the floor {floor}")
            history.signed[height] = bytes.fromhex(tx_hex)
        return history


# --- helpers -----------------------------------------------------------------------------------


def _try_lock(fd: int, path: Path) -> bool:
    """Take the exclusive ``flock`` on ``fd`` without waiting: whether it was free."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WalletError(f"cannot lock {path}: {exc.strerror or exc}") from None
        return False


def _public_wallet(keystore: Keystore, name: str) -> WalletFile | None:
    """The wallet's public data, or None if it is gone (a record outlives its wallet) or unreadable."""
    try:
        return keystore.load(name)
    except WalletError:
        return None


def _other_seed(mine: WalletFile, theirs: WalletFile) -> bool:
    """Whether two wallets surely hold no key in common: both store account 0 and it differs
    (another seed or passphrase). Anything less certain counts as possibly the same keys."""
    return 0 in mine.accounts and 0 in theirs.accounts and mine.accounts[0] != theirs.accounts[0]


def _refuse_conflict(history: _History, address: str, height: int, tx_id: bytes, where: str = "") -> None:
    """The one rule: a height is signed for at most one tx id, and pruned heights are closed.
    ``where`` names the record when it is another wallet's."""
    signed = history.signed.get(height)
    if signed is not None and signed != tx_id:
        raise WouldEquivocate(
            f"this would be equivocation and would be slashed: {address} already signed a "
            f"different proposal for height {height} (tx {signed.hex()}){where}; pass "
            "--allow-equivocation only to demonstrate slashing",
            address, height, signed,
        )
    if height < history.floor:
        raise WouldEquivocate(
            f"this could be equivocation and would be slashed: the record of {address}{where} no "
            f"longer lists heights below {history.floor} (it keeps {PRUNE_DISTANCE} below the "
            f"highest signed), so it cannot tell whether height {height} was signed; pass "
            "--allow-equivocation only to demonstrate slashing",
            address, height, None,
        )


def _prune(history: _History) -> None:
    """Forget heights more than PRUNE_DISTANCE below the highest; raise the floor to match."""
    floor = max(history.signed) - PRUNE_DISTANCE
    if floor > history.floor:
        history.floor = floor
        history.signed = {h: t for h, t in history.signed.items() if h >= floor}


def _to_document(wallet_name: str, record: _Record) -> dict[str, Any]:
    """The file's JSON, in a stable order: chains and addresses sorted, heights increasing."""
    return {
        "version": FORMAT_VERSION,
        "wallet": wallet_name,
        "chains": {
            chain_id: {
                address: {
                    "floor": history.floor,
                    "signed": {str(h): history.signed[h].hex() for h in sorted(history.signed)},
                }
                for address, history in sorted(record[chain_id].items())
            }
            for chain_id in sorted(record)
        },
    }


def _checked(address: str, height: int, tx_id: bytes, chain_id: str) -> tuple[str, int, bytes, str]:
    """Arguments validated and canonical, so one proposal always maps to one entry."""
    if type(height) is not int or height < 1:
        raise WalletError(f"height must be a positive integer, got {height!r}")
    if not isinstance(tx_id, bytes) or len(tx_id) != TX_ID_SIZE:
        raise WalletError(f"a tx id is {TX_ID_SIZE} bytes, got {tx_id!r}")
    return _checked_address(address), height, tx_id, _checked_chain_id(chain_id)


def _checked_address(address: str) -> str:
    try:
        return parse_address(address)
    except InvalidAddress as exc:
        raise WalletError(str(exc)) from None


def _checked_chain_id(chain_id: str) -> str:
    if not isinstance(chain_id, str) or not CHAIN_ID_PATTERN.fullmatch(chain_id):
        raise WalletError(
            f"chain id {chain_id!r} is not valid: use 1-48 lowercase letters, digits and '-'"
        )
    return chain_id
