"""Keystore: real files in temp directories, real scrypt (light parameters), real SIGKILLs."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from ledger.crypto.address import address_from_public_key
from ledger.crypto.secp256k1 import public_key_from_private
from wallet import bip39
from wallet.errors import (
    InvalidMnemonic,
    InvalidWalletName,
    KeystoreDamaged,
    WalletError,
    WalletExists,
    WalletNotFound,
    WrongPassword,
)
from wallet.hd import ExtendedKey
from wallet.keystore import Keystore
from wallet.wallet_file import STORED_ACCOUNTS, ScryptParams

REPO = Path(__file__).resolve().parents[1]
LIGHT = ScryptParams.light()
PASSWORD = "correct horse battery staple"
PHRASE_12 = "legal winner thank year wave sausage worth useful legal winner thank yellow"


@pytest.fixture
def keystore(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "home" / "wallets")


def _create(keystore: Keystore, name: str = "alice", **kwargs: Any) -> tuple[Any, str]:
    kwargs.setdefault("kdf", LIGHT)
    return keystore.create(name, PASSWORD, **kwargs)


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2))


# --- round trips -------------------------------------------------------------------------------


def test_create_load_unlock_round_trip(keystore: Keystore) -> None:
    created, phrase = _create(keystore)
    assert len(phrase.split()) == 24
    loaded = keystore.load("alice")
    assert loaded.accounts == created.accounts
    assert sorted(loaded.accounts) == list(range(STORED_ACCOUNTS))
    assert keystore.names() == ["alice"] and keystore.exists("alice")

    unlocked = keystore.unlock("alice", PASSWORD)
    assert unlocked.mnemonic() == phrase
    master = ExtendedKey.from_seed(bip39.mnemonic_to_seed(phrase))
    for account, index in [(0, 0), (0, 7), (3, 2), (9, 100)]:
        leaf = master.derive(f"m/44'/1'/{account}'/0/{index}")
        assert loaded.public_key(account, index) == leaf.public_key
        assert loaded.address(account, index) == address_from_public_key(leaf.public_key)
        assert unlocked.address(account, index) == loaded.address(account, index)
        private = unlocked.private_key(account, index)
        assert private == leaf.private_key
        assert public_key_from_private(private) == loaded.public_key(account, index)
        assert loaded.account_xpub(account) == unlocked.account_xpub(account)
    assert loaded.address().startswith("pos1")


def test_accounts_beyond_the_stored_ones_need_an_unlock(keystore: Keystore) -> None:
    _create(keystore)
    wallet = keystore.load("alice")
    with pytest.raises(WalletError, match="unlock"):
        wallet.address(STORED_ACCOUNTS, 0)
    unlocked = keystore.unlock("alice", PASSWORD)
    assert unlocked.address(STORED_ACCOUNTS, 0).startswith("pos1")
    assert unlocked.account_xpub(STORED_ACCOUNTS).startswith("xpub")


def test_recover_reproduces_the_wallet(keystore: Keystore) -> None:
    created, phrase = _create(keystore, "original", passphrase="extra words")
    messy = "  " + phrase.upper().replace(" ", " \n ") + " "
    recovered = keystore.recover("copy", messy, "another password", passphrase="extra words", kdf=LIGHT)
    assert recovered.accounts == created.accounts
    other = keystore.recover("no-passphrase", phrase, PASSWORD, kdf=LIGHT)
    assert other.address() != created.address()
    assert keystore.unlock("original", PASSWORD).has_passphrase()
    assert not keystore.unlock("no-passphrase", PASSWORD).has_passphrase()


def test_recover_known_phrase(keystore: Keystore) -> None:
    wallet = keystore.recover("known", PHRASE_12, PASSWORD, kdf=LIGHT)
    master = ExtendedKey.from_seed(bip39.mnemonic_to_seed(PHRASE_12))
    assert wallet.account_xpub(0) == master.derive("m/44'/1'/0'").neuter().to_string()


def test_recover_refuses_a_bad_phrase_without_writing(keystore: Keystore) -> None:
    with pytest.raises(InvalidMnemonic, match="word 3 of 12"):
        keystore.recover("bad", PHRASE_12.replace("thank", "thanks"), PASSWORD, kdf=LIGHT)
    assert keystore.names() == []


@pytest.mark.parametrize("words", [12, 15, 18, 21])
def test_create_word_counts(keystore: Keystore, words: int) -> None:
    _, phrase = _create(keystore, words=words)
    assert len(phrase.split()) == words


# --- passwords and damage ----------------------------------------------------------------------


def test_wrong_password(keystore: Keystore) -> None:
    _create(keystore)
    with pytest.raises(WrongPassword, match="wrong password"):
        keystore.unlock("alice", PASSWORD + "!")
    with pytest.raises(WrongPassword):
        keystore.unlock("alice", "")


def test_empty_password_is_refused_at_creation(keystore: Keystore) -> None:
    with pytest.raises(WalletError, match="password"):
        keystore.create("alice", "", kdf=LIGHT)


def _flip_hex(value: str, position: int = 0) -> str:
    flipped = "0" if value[position] != "0" else "1"
    return value[:position] + flipped + value[position + 1 :]


def test_flipped_ciphertext_byte_is_damage_not_wrong_password(keystore: Keystore) -> None:
    _create(keystore)
    path = keystore.path("alice")
    _edit(path, lambda d: d.update(ciphertext=_flip_hex(d["ciphertext"], 10)))
    keystore.load("alice")  # public data still readable
    with pytest.raises(KeystoreDamaged) as caught:
        keystore.unlock("alice", PASSWORD)
    assert str(path) in str(caught.value)
    assert "damaged" in str(caught.value) and "recover" in str(caught.value)


def test_flipped_tag_is_damage(keystore: Keystore) -> None:
    _create(keystore)
    _edit(keystore.path("alice"), lambda d: d["cipher"].update(tag=_flip_hex(d["cipher"]["tag"])))
    with pytest.raises(KeystoreDamaged):
        keystore.unlock("alice", PASSWORD)


def test_flipped_xpub_character_is_damage(keystore: Keystore) -> None:
    _create(keystore)
    path = keystore.path("alice")

    def flip(document: dict[str, Any]) -> None:
        xpub = document["accounts"]["3"]
        replacement = "A" if xpub[50] != "A" else "B"
        document["accounts"]["3"] = xpub[:50] + replacement + xpub[51:]

    _edit(path, flip)
    with pytest.raises(KeystoreDamaged, match="account 3") as caught:
        keystore.load("alice")
    assert str(path) in str(caught.value)


def test_substituted_valid_xpub_is_detected_on_unlock(keystore: Keystore) -> None:
    """An attacker's own (valid) account xpub passes load, but unlock catches it."""
    _create(keystore, "alice")
    mallory, _ = _create(keystore, "mallory")
    _edit(keystore.path("alice"), lambda d: d["accounts"].update({"0": mallory.account_xpub(0)}))
    assert keystore.load("alice").address() == mallory.address()
    with pytest.raises(KeystoreDamaged):
        keystore.unlock("alice", PASSWORD)


def test_reformatted_file_still_unlocks(keystore: Keystore) -> None:
    _create(keystore)
    path = keystore.path("alice")
    document = json.loads(path.read_text())
    path.write_text(json.dumps(document, separators=(",", ":")))
    keystore.unlock("alice", PASSWORD)


def test_truncated_file_is_damage(keystore: Keystore) -> None:
    _create(keystore)
    path = keystore.path("alice")
    data = path.read_bytes()
    for size in (0, 1, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:size])
        with pytest.raises(KeystoreDamaged) as caught:
            keystore.load("alice")
        assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [b"not json at all", b"\xff\xfe\x00garbage", b"[1, 2, 3]", b"null", b"[" * 50000, b"{" * 20],
)
def test_non_json_is_damage(keystore: Keystore, content: bytes) -> None:
    _create(keystore)
    keystore.path("alice").write_bytes(content)
    with pytest.raises(KeystoreDamaged):
        keystore.load("alice")


@pytest.mark.parametrize(
    "field", ["version", "name", "kdf", "password_check", "cipher", "ciphertext", "accounts"]
)
def test_missing_field_is_damage(keystore: Keystore, field: str) -> None:
    _create(keystore)
    _edit(keystore.path("alice"), lambda d: d.pop(field))
    with pytest.raises(KeystoreDamaged, match=field):
        keystore.load("alice")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["kdf"].pop("salt"),
        lambda d: d["cipher"].update(nonce="00"),
        lambda d: d["cipher"].update(name="aes-128-cbc"),
        lambda d: d["kdf"].update(name="pbkdf2"),
        lambda d: d.update(ciphertext="XYZ"),
        lambda d: d.update(extra=1),
        lambda d: d.update(name="../alice"),
        lambda d: d.update(name=7),
        lambda d: d.update(accounts={}),
        lambda d: d["accounts"].pop("4"),
        lambda d: d["accounts"].update({"1": d["accounts"]["2"]}),
    ],
)
def test_malformed_fields_are_damage(keystore: Keystore, change: Callable[[dict[str, Any]], None]) -> None:
    _create(keystore)
    _edit(keystore.path("alice"), change)
    with pytest.raises(KeystoreDamaged):
        keystore.load("alice")


@pytest.mark.parametrize(
    "kdf",
    [
        {"n": 3},
        {"n": 2**30},
        {"n": 2**23},
        {"r": 10**6},
        {"p": 10**6},
        {"n": True},
        {"n": "4096"},
        {"n": -4096},
        {"n": 2**21, "r": 16},
    ],
)
def test_absurd_scrypt_parameters_are_damage_not_a_hang(keystore: Keystore, kdf: dict[str, Any]) -> None:
    _create(keystore)
    _edit(keystore.path("alice"), lambda d: d["kdf"].update(kdf))
    started = time.monotonic()
    with pytest.raises(KeystoreDamaged, match="scrypt"):
        keystore.unlock("alice", PASSWORD)
    assert time.monotonic() - started < 1


def test_duplicate_keys_are_damage(keystore: Keystore) -> None:
    _create(keystore)
    path = keystore.path("alice")
    text = path.read_text()
    path.write_text(text.replace('"version": 1', '"version": 1, "version": 1'))
    with pytest.raises(KeystoreDamaged, match="JSON"):
        keystore.load("alice")


def test_oversized_file_is_damage(keystore: Keystore) -> None:
    _create(keystore)
    keystore.path("alice").write_bytes(b" " * (1024 * 1024))
    with pytest.raises(KeystoreDamaged, match="larger"):
        keystore.load("alice")


def test_newer_format_version_says_upgrade(keystore: Keystore) -> None:
    _create(keystore)
    _edit(keystore.path("alice"), lambda d: d.update(version=2))
    with pytest.raises(WalletError, match="upgrade posctl"):
        keystore.load("alice")


def test_renamed_file_is_reported(keystore: Keystore) -> None:
    _create(keystore)
    keystore.path("alice").rename(keystore.path("bob"))
    with pytest.raises(KeystoreDamaged, match="rename it back to alice.json"):
        keystore.load("bob")


def test_missing_wallet(keystore: Keystore) -> None:
    with pytest.raises(WalletNotFound, match="nobody"):
        keystore.load("nobody")
    with pytest.raises(WalletNotFound):
        keystore.unlock("nobody", PASSWORD)
    assert keystore.names() == []


# --- names, files and permissions --------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "../evil", "a/b", "..", ".hidden", "a b", "x" * 65, "é", "a\0b", "name.json", None]
)
def test_invalid_names_are_refused(keystore: Keystore, name: Any) -> None:
    with pytest.raises(InvalidWalletName):
        keystore.path(name)
    with pytest.raises(InvalidWalletName):
        keystore.create(name, PASSWORD, kdf=LIGHT)
    assert not keystore.directory.exists() or keystore.names() == []


def test_a_name_that_is_an_address_is_refused(keystore: Keystore) -> None:
    """Where a name or an address is accepted (a recipient, `chain account`, `--alloc`) the
    address wins: a wallet named like one could never be reached by its name, and a transfer "to
    it" went to that other address."""
    address = address_from_public_key(public_key_from_private((7).to_bytes(32, "big")))
    with pytest.raises(InvalidWalletName, match="is a valid address"):
        keystore.create(address, PASSWORD, kdf=LIGHT)
    created, _ = keystore.create("alice", PASSWORD, kdf=LIGHT)
    with pytest.raises(InvalidWalletName, match="is a valid address"):
        keystore.import_xpub(address, created.account_xpub(0))
    with pytest.raises(InvalidWalletName, match="is a valid address"):
        keystore.copy_renamed("alice", address, keystore.unlock("alice", PASSWORD))
    assert keystore.names() == ["alice"]
    keystore.create("pos1-not-an-address", PASSWORD, kdf=LIGHT)  # only a valid address is taken


def test_valid_names(keystore: Keystore) -> None:
    for name in ["a", "A-1_b", "x" * 64]:
        assert keystore.path(name).parent == keystore.directory


def test_names_ignore_temp_and_stray_files(keystore: Keystore) -> None:
    _create(keystore, "bob")
    _create(keystore, "alice")
    (keystore.directory / ".alice.abc123.tmp").write_text("partial")
    (keystore.directory / "notes.txt").write_text("hello")
    (keystore.directory / "bad name.json").write_text("{}")
    assert keystore.names() == ["alice", "bob"]


def test_unwritable_location_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    keystore = Keystore(blocker / "wallets")
    with pytest.raises(WalletError, match="cannot write wallet file"):
        keystore.create("alice", PASSWORD, kdf=LIGHT)
    assert keystore.names() == []
    with pytest.raises(WalletNotFound):
        keystore.load("alice")


def test_permissions(keystore: Keystore) -> None:
    old_umask = os.umask(0)
    try:
        _create(keystore)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(keystore.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(keystore.path("alice").stat().st_mode) == 0o600


def test_no_overwrite_without_force(keystore: Keystore) -> None:
    first, _ = _create(keystore)
    before = keystore.path("alice").read_bytes()
    with pytest.raises(WalletExists, match="alice"):
        _create(keystore)
    with pytest.raises(WalletExists):
        keystore.recover("alice", PHRASE_12, PASSWORD, kdf=LIGHT)
    assert keystore.path("alice").read_bytes() == before
    second, _ = _create(keystore, force=True)
    assert second.address() != first.address()
    assert keystore.unlock("alice", PASSWORD).address() == second.address()
    assert [p.name for p in keystore.directory.iterdir() if p.name != ".keystore-key"] == ["alice.json"]


def test_no_secret_in_the_file(keystore: Keystore) -> None:
    _, phrase = _create(keystore, passphrase="my secret passphrase")
    text = keystore.path("alice").read_text()
    entropy = bip39.mnemonic_to_entropy(phrase)
    seed = bip39.mnemonic_to_seed(phrase, "my secret passphrase")
    master = ExtendedKey.from_seed(seed)
    unlocked = keystore.unlock("alice", PASSWORD)
    secrets = [
        phrase,
        " ".join(phrase.split()[:3]),
        entropy.hex(),
        seed.hex(),
        master.to_string(),
        "my secret passphrase",
        PASSWORD,
        unlocked.private_key().hex(),
        unlocked.key(0, 0).to_string(),
    ]
    for secret in secrets:
        assert secret not in text
    assert "xprv" not in text


def test_unlocked_wallet_does_not_leak_in_repr_or_pickle(keystore: Keystore) -> None:
    _, phrase = _create(keystore)
    unlocked = keystore.unlock("alice", PASSWORD)
    for text in (repr(unlocked), str(unlocked), repr(keystore.load("alice"))):
        assert phrase.split()[0] not in text.split("'")  # no words as a quoted value
        assert unlocked.private_key().hex() not in text
        assert bip39.mnemonic_to_entropy(phrase).hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(unlocked)


def test_weak_parameters_refused_at_creation(keystore: Keystore) -> None:
    with pytest.raises(WalletError, match="power of two"):
        keystore.create("alice", PASSWORD, kdf=ScryptParams(n=1000, r=8, p=1))
    assert keystore.names() == []


def test_default_parameters_are_strong() -> None:
    default = ScryptParams.default()
    assert (default.n, default.r, default.p) == (2**18, 8, 1)
    assert default.problem() is None and ScryptParams.light().problem() is None


# --- crash safety --------------------------------------------------------------------------------

_SAVER = textwrap.dedent(
    """
    import os, stat, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from wallet.keystore import Keystore
    from wallet.wallet_file import ScryptParams

    # A slow disk that announces itself: after the temp file's data is synced and before it is
    # renamed into place, say so and dawdle, so the parent can kill exactly mid-save.
    real_fsync = os.fsync
    def slow_fsync(fd):
        real_fsync(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            print("temp-synced", flush=True)
            time.sleep(0.1)
    os.fsync = slow_fsync

    keystore = Keystore(Path({directory!r}))
    print("ready", flush=True)
    while True:
        keystore.create("victim", {password!r}, force=True, kdf=ScryptParams.light())
    """
)


def test_sigkill_while_saving_leaves_a_readable_wallet(keystore: Keystore) -> None:
    """SIGKILL a process that overwrites the wallet in a loop; every time, the file still opens.

    Odd rounds kill right after the temp file is synced and before the rename (the moment a
    non-atomic save would leave a half-written wallet); even rounds kill at a random moment.
    """
    _create(keystore, "victim")
    script = _SAVER.format(repo=str(REPO), directory=str(keystore.directory), password=PASSWORD)
    rng = random.Random(20240607)
    addresses = set()
    rounds = 10
    for round_number in range(rounds):
        child = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == b"ready"
            if round_number % 2:
                for _ in range(rng.randint(1, 3)):
                    assert child.stdout.readline().strip() == b"temp-synced"
            else:
                time.sleep(rng.uniform(0.02, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        assert keystore.names() == ["victim"]
        wallet = keystore.load("victim")
        unlocked = keystore.unlock("victim", PASSWORD)
        assert unlocked.address() == wallet.address()
        assert stat.S_IMODE(keystore.path("victim").stat().st_mode) == 0o600
        addresses.add(wallet.address())
    abandoned = [p for p in keystore.directory.iterdir() if p.suffix == ".tmp"]
    assert len(abandoned) >= rounds // 2, "no kill landed between write and rename"
    assert len(addresses) > 1, "the saver never completed a save: the test proved nothing"


def test_the_change_lock_is_reentrant_in_a_thread_and_exclusive_between_threads_and_processes(tmp_path: Path) -> None:
    """`Keystore.changing` nests in one thread whatever the Keystore object (a rename deletes the
    old file from inside its own hold: a second flock there would wait for itself forever), and
    excludes another thread and another process until it is released."""
    import threading

    directory = tmp_path / "wallets"
    first, second = Keystore(directory), Keystore(directory)
    entered: list[str] = []

    def enter() -> None:
        with second.changing():
            entered.append("thread")

    with first.changing(), second.changing(), first.changing():
        other = threading.Thread(target=enter)
        other.start()
        other.join(0.3)
        assert entered == [] and other.is_alive()  # waits while this thread holds it
        probe = subprocess.run(
            [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
             "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(directory / ".keystore.lock")],
            capture_output=True, text=True)
        assert probe.returncode == 1 and "BlockingIOError" in probe.stderr  # and another process
    other.join(5)
    assert entered == ["thread"]
