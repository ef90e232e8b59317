"""``posctl wallet`` management commands: import-xpub (watch-only), addresses, export, rename,
passwd, delete, the transfer confirmation, and the same-keys warning.

Through click's ``CliRunner`` (stdin is never a terminal there), through the installed
``posctl`` in a subprocess, and, for every prompt, in a subprocess whose stdin, stdout and
stderr are a pseudo-terminal, so the terminal-only paths really run. Every refused command is
checked to leave the wallet directory byte for byte as it was. Wallets use ``POSCTL_KDF=light``.
"""

from __future__ import annotations

import json
import os
import re
import pty
import select
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from ledger.chain.facade import Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.params import Params
from tests.test_cli_wallet import ok, run
from wallet import bip39
from wallet.hd import ExtendedKey, base58check_decode, base58check_encode
from wallet.errors import WatchOnlyWallet, WrongPassword
from wallet.keystore import Keystore
from wallet.protection import SlashingProtection, WouldEquivocate

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "another horse, another battery"
PARAMS = Params(min_stake=100, unbonding_blocks=3, block_reward=10, bpm_min=20, bpm_max=250)
POSCTL = shutil.which("posctl", path=str(Path(sys.executable).parent)) or "posctl"


# ---- helpers -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def wallet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSCTL_KDF", "light")
    monkeypatch.setenv("POSCTL_PASSWORD", PASSWORD)
    for name in ("POSCTL_PASSWORD_FILE", "POSCTL_HOME", "POSCTL_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def ok_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json").stdout)


def error_line(result: Result | subprocess.CompletedProcess[str], status: int = 1) -> str:
    """The one ``error: …`` line of a refused command: nothing on stdout, no traceback."""
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert result.stdout == ""
    return lines[0]


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes: what a refused command must not change."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def address_of(home: Path, name: str, account: int = 0, index: int = 0) -> str:
    return Keystore(home / "wallets").load(name).address(account, index)


def xpub_of(home: Path, name: str, account: int = 0) -> str:
    return Keystore(home / "wallets").load(name).account_xpub(account)


def master_of(phrase: str) -> ExtendedKey:
    return ExtendedKey.from_seed(bip39.mnemonic_to_seed(phrase))


@pytest.fixture(scope="session")
def wallets_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A home with wallets alice, bob and val, and their phrases (made once; tests copy it)."""
    home = tmp_path_factory.mktemp("template") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("POSCTL_KDF", "light")
    mp.setenv("POSCTL_PASSWORD", PASSWORD)
    phrases = {}
    try:
        for name in ("alice", "bob", "val"):
            phrases[name] = ok_json(home, "wallet", "new", name, "--words", "12")["mnemonic"]
    finally:
        mp.undo()
    return home, phrases


@pytest.fixture
def phrases(wallets_template: tuple[Path, dict[str, str]]) -> dict[str, str]:
    return wallets_template[1]


@pytest.fixture
def home(tmp_path: Path, wallets_template: tuple[Path, dict[str, str]]) -> Path:
    target = tmp_path / "home"
    shutil.copytree(wallets_template[0], target)
    return target


@pytest.fixture
def chain_home(home: Path) -> Path:
    """Wallets plus a chain: alice has 1000 liquid, val 500 bonded."""
    config = GenesisConfig(params=PARAMS, allocations={address_of(home, "alice"): 1000},
                           bonds={address_of(home, "val"): 500})
    Chain.create(home, config).close()
    return home


def posctl_process(home: Path, *args: str, input: str | None = None,
                   **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "POSCTL_HOME": str(home), "POSCTL_KDF": "light", "POSCTL_PASSWORD": PASSWORD, **env}
    return subprocess.run([POSCTL, *args], env=full_env, input=input, capture_output=True, text=True, timeout=60)


class Terminal:
    """``posctl`` with stdin, stdout and stderr on a pseudo-terminal: prompts really appear,
    hidden ones really hide, and each answer is typed only once its prompt is shown (a hidden
    prompt flushes what was typed ahead, as a real terminal does)."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:
        # NO_COLOR: these tests read the words; the red "error:" on a terminal is test_cli_node_commands'
        full_env = {**os.environ, "POSCTL_HOME": str(home), "POSCTL_KDF": "light", "NO_COLOR": "1", **env}
        full_env.pop("POSCTL_PASSWORD", None)
        full_env.update(env)
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [POSCTL, *args], stdin=slave, stdout=slave, stderr=slave, env=full_env, start_new_session=True,
        )
        os.close(slave)
        self.output = ""
        self.position = 0

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def answer(self, prompt: str, text: str) -> None:
        """Wait for ``prompt`` (after the previous one), then type ``text`` and Enter."""
        deadline = time.monotonic() + 30
        while prompt not in self.output[self.position:]:
            if time.monotonic() > deadline or (not self._read(0.2) and self.process.poll() is not None):
                raise AssertionError(f"prompt {prompt!r} never came; output so far:\n{self.output}")
        self.position = self.output.index(prompt, self.position) + len(prompt)
        os.write(self.master, text.encode() + b"\n")

    def finish(self) -> tuple[int, str]:
        deadline = time.monotonic() + 60
        while self.process.poll() is None or self._read(0.05):
            self._read(0.1)
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"posctl did not finish; output:\n{self.output}")
        while self._read(0.05):
            pass
        os.close(self.master)
        return self.process.returncode, self.output


def account_xpub_string(phrase: str, path: str) -> str:
    return master_of(phrase).derive(path).neuter().to_string()


def with_version(xpub: str, version: bytes) -> str:
    return base58check_encode(version + base58check_decode(xpub)[4:])


# ---- import-xpub: watch-only wallets -------------------------------------------------------------


def test_import_xpub_lists_the_same_addresses_and_warns_about_the_twin(home: Path) -> None:
    xpub = ok(home, "wallet", "export", "alice").stdout.strip()
    assert xpub == xpub_of(home, "alice")
    result = ok(home, "wallet", "import-xpub", "cold", xpub)
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "'alice'" in warning[0]
    path = home / "wallets" / "cold.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "xprv" not in path.read_text() and "ciphertext" not in path.read_text()
    ours = ok_json(home, "wallet", "addresses", "cold", "--count", "5")
    theirs = ok_json(home, "wallet", "addresses", "alice", "--count", "5")
    assert ours["addresses"] == theirs["addresses"] and ours["watch_only"] is True
    Keystore(home / "wallets").load_verified("cold")  # tagged like every other wallet
    listed = run(home, "wallet", "list")
    assert "cold" in listed.stdout and "[watch-only]" in listed.stdout
    assert listed.stderr.count("warning: ") == 1 and "'alice', 'cold'" in listed.stderr


def test_a_watch_only_copy_never_takes_over_the_signing_wallets_label(chain_home: Path) -> None:
    """Output labels each address with a wallet name: a watch-only copy of val's xpub, sorting
    after or before it, named val's blocks and txs as its own."""
    xpub = ok(chain_home, "wallet", "export", "val").stdout.strip()
    ok(chain_home, "wallet", "import-xpub", "zcold", xpub)
    ok(chain_home, "wallet", "import-xpub", "a-cold", xpub)
    text = ok(chain_home, "chain", "validators").stdout
    assert f"{address_of(chain_home, 'val')} (val)" in text and "cold" not in text


def test_import_xpub_of_another_account_shows_that_account(home: Path, phrases: dict[str, str]) -> None:
    xpub = account_xpub_string(phrases["bob"], "m/44'/1'/3'")
    data = ok_json(home, "wallet", "import-xpub", "bob3", xpub)
    assert data["account"] == 3 and data["address"] == address_of(home, "bob", 3, 0)
    shown = ok_json(home, "wallet", "show", "bob3", "--index", "2")
    assert shown["account"] == 3 and shown["address"] == address_of(home, "bob", 3, 2)
    line = error_line(run(home, "wallet", "show", "bob3", "--account", "0"))
    assert "watch-only" in line and "--account 3" in line


def _bad_xpubs(phrase: str, xpub: str) -> dict[str, tuple[str, str]]:
    master = master_of(phrase)
    flipped = xpub[:-1] + ("A" if xpub[-1] != "A" else "B")
    return {
        "garbage": ("hello", "not a valid xpub"),
        "checksum": (flipped, "checksum"),
        "testnet version": (with_version(xpub, bytes.fromhex("043587CF")), "version"),
        "xprv": (master.derive("m/44'/1'/0'").to_string(), "PRIVATE"),
        "master": (master.neuter().to_string(), "depth 0"),
        "address level": (master.derive("m/44'/1'/0'/0/0").neuter().to_string(), "depth 5"),
        "not hardened": (master.derive("m/44'/1'/0").neuter().to_string(), "non-hardened"),
        "empty": (" ", "empty"),
    }


@pytest.mark.parametrize("case", ["garbage", "checksum", "testnet version", "xprv", "master", "address level",
                                  "not hardened", "empty"])
def test_bad_xpubs_are_one_line_and_write_nothing(home: Path, phrases: dict[str, str], case: str) -> None:
    bad, fragment = _bad_xpubs(phrases["alice"], xpub_of(home, "alice"))[case]
    before = files(home)
    line = error_line(run(home, "wallet", "import-xpub", "cold", bad))
    assert fragment in line
    assert bad.strip() == "" or bad not in line  # an xprv pasted by mistake is never echoed back
    assert files(home) == before


def test_import_xpub_refuses_an_existing_name(home: Path) -> None:
    before = files(home)
    line = error_line(run(home, "wallet", "import-xpub", "bob", xpub_of(home, "alice")))
    assert "already exists" in line
    assert files(home) == before


@pytest.mark.parametrize("args", [
    ["send", "cold", "alice", "5"], ["stake", "cold", "100"], ["unstake", "cold", "10"],
    ["propose", "cold", "--bpm", "70"], ["unjail", "cold"],
    ["send", "cold", "alice", "5", "--out", "tx.json"],
])
def test_watch_only_wallets_refuse_every_signing_command(chain_home: Path, args: list[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ok(chain_home, "wallet", "import-xpub", "cold", xpub_of(chain_home, "val"))
    monkeypatch.delenv("POSCTL_PASSWORD")  # refused before any password is needed
    before = files(chain_home / "wallets")
    with Chain.open(chain_home) as chain:
        pending = chain.mempool.count
    line = error_line(run(chain_home, "wallet", *args))
    assert "watch-only" in line and "cannot sign" in line and "recover" in line
    assert files(chain_home / "wallets") == before
    assert not (chain_home / "tx.json").exists()
    with Chain.open(chain_home) as chain:
        assert chain.mempool.count == pending


@pytest.mark.parametrize("args", [["verify", "cold"], ["passwd", "cold"], ["export", "cold", "--phrase"]])
def test_watch_only_wallets_have_no_secret_to_use(home: Path, args: list[str]) -> None:
    ok(home, "wallet", "import-xpub", "cold", xpub_of(home, "bob"))
    before = files(home)
    assert "watch-only" in error_line(run(home, "wallet", *args))
    assert files(home) == before


def test_watch_only_wallet_receives_by_name_and_shows_its_balance(chain_home: Path) -> None:
    ok(chain_home, "wallet", "import-xpub", "cold", xpub_of(chain_home, "bob"))
    sent = ok_json(chain_home, "wallet", "send", "alice", "cold", "25")
    assert sent["tx"]["to"] == address_of(chain_home, "bob")
    ok(chain_home, "wallet", "propose", "val", "--bpm", "60")  # a block includes txs once someone proposed
    with Chain.open(chain_home) as chain:
        chain.forge()
    assert ok_json(chain_home, "wallet", "show", "cold")["balance"] == 25


def test_a_watch_only_wallet_of_another_account_receives_at_that_account(chain_home: Path, phrases: dict[str, str]) -> None:
    ok(chain_home, "wallet", "import-xpub", "bob3", account_xpub_string(phrases["bob"], "m/44'/1'/3'"))
    sent = ok_json(chain_home, "wallet", "send", "alice", "bob3", "7")
    assert sent["tx"]["to"] == address_of(chain_home, "bob", 3, 0)


def test_a_tampered_watch_only_file_is_not_a_recipient(chain_home: Path) -> None:
    ok(chain_home, "wallet", "import-xpub", "cold", xpub_of(chain_home, "bob"))
    path = chain_home / "wallets" / "cold.json"
    document = json.loads(path.read_text())
    document["accounts"]["0"] = xpub_of(chain_home, "alice")  # someone swaps in their own key
    path.write_text(json.dumps(document))
    line = error_line(run(chain_home, "wallet", "send", "alice", "cold", "5"))
    assert "was changed" in line
    assert "[TAMPERED" in run(chain_home, "wallet", "list").stdout


def test_keystore_refuses_to_unlock_a_watch_only_wallet(home: Path) -> None:
    store = Keystore(home / "wallets")
    store.import_xpub("cold", xpub_of(home, "bob"))
    with pytest.raises(WatchOnlyWallet, match="watch-only"):
        store.unlock("cold", PASSWORD)
    assert store.load("cold").watch_only and not store.load("bob").watch_only
    assert store.same_keys("cold") == ["bob"] and store.same_keys("alice") == []


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.update(extra=1), "exactly the fields"),
    (lambda d: d.update(kind="cold-storage"), "unknown wallet kind"),
    (lambda d: d.update(accounts={"1": d["accounts"]["0"]}), "not an account xpub"),
    (lambda d: d.update(accounts={}), "non-empty"),
    (lambda d: d.update(name="other"), "holds wallet 'other'"),
    (lambda d: d.update(public_mac="zz"), "public_mac"),
])
def test_a_damaged_watch_only_file_is_reported_and_list_survives(home: Path, edit: Any, fragment: str) -> None:
    ok(home, "wallet", "import-xpub", "cold", xpub_of(home, "bob"))
    path = home / "wallets" / "cold.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    line = error_line(run(home, "wallet", "show", "cold"))
    assert "is damaged" in line and fragment in line
    rows = {row["name"]: row for row in ok_json(home, "wallet", "list")}
    assert rows["cold"]["address"] is None and rows["bob"]["address"] == address_of(home, "bob")


def test_subprocess_import_xpub_and_refused_signing(chain_home: Path) -> None:
    xpub = posctl_process(chain_home, "wallet", "export", "bob").stdout.strip()
    made = posctl_process(chain_home, "wallet", "import-xpub", "cold", xpub, "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["address"] == address_of(chain_home, "bob")
    before = files(chain_home / "wallets")
    refused = posctl_process(chain_home, "wallet", "send", "cold", "alice", "1")
    assert "watch-only" in error_line(refused)
    bad = posctl_process(chain_home, "wallet", "import-xpub", "cold2", xpub[:-2])
    assert "not a valid xpub" in error_line(bad)
    assert files(chain_home / "wallets") == before


# ---- addresses ---------------------------------------------------------------------------------


def test_addresses_match_the_private_derivation(home: Path, phrases: dict[str, str]) -> None:
    master = master_of(phrases["alice"])
    data = ok_json(home, "wallet", "addresses", "alice", "--count", "4", "--account", "2")
    assert [row["index"] for row in data["addresses"]] == [0, 1, 2, 3]
    for row in data["addresses"]:
        assert row["path"] == f"m/44'/1'/2'/0/{row['index']}"
        assert row["address"] == address_of(home, "alice", 2, row["index"])
    assert data["xpub"] == master.derive("m/44'/1'/2'").neuter().to_string()
    text = ok(home, "wallet", "addresses", "alice", "--count", "2").stdout.splitlines()
    assert text[0] == "Wallet alice, account 0"
    assert text[2].split() == ["1", "m/44'/1'/0'/0/1", address_of(home, "alice", 0, 1)]


def test_addresses_of_an_unstored_account_need_the_password(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = ok_json(home, "wallet", "addresses", "bob", "--account", "12", "--count", "2")
    unlocked = Keystore(home / "wallets").unlock("bob", PASSWORD)
    assert [row["address"] for row in data["addresses"]] == [unlocked.address(12, 0), unlocked.address(12, 1)]
    monkeypatch.delenv("POSCTL_PASSWORD")
    assert "password is needed" in error_line(run(home, "wallet", "addresses", "bob", "--account", "12"))


@pytest.mark.parametrize("count", ["0", "1001", "x"])
def test_addresses_bad_count_is_a_usage_error(home: Path, count: str) -> None:
    result = run(home, "wallet", "addresses", "alice", "--count", count)
    assert result.exit_code == 2 and "--count" in result.stderr and result.stdout == ""


def test_subprocess_addresses(home: Path) -> None:
    result = posctl_process(home, "wallet", "addresses", "val", "--count", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert [row["address"] for row in json.loads(result.stdout)["addresses"]] == \
        [address_of(home, "val", 0, index) for index in range(3)]
    assert "no wallet named" in error_line(posctl_process(home, "wallet", "addresses", "nobody"))


# ---- export ------------------------------------------------------------------------------------


def test_export_prints_the_account_xpub(home: Path) -> None:
    assert ok(home, "wallet", "export", "bob", "--account", "3").stdout == xpub_of(home, "bob", 3) + "\n"
    data = ok_json(home, "wallet", "export", "bob")
    assert data == {"name": "bob", "account": 0, "path": "m/44'/1'/0'", "xpub": xpub_of(home, "bob"),
                    "watch_only": False}


def test_export_phrase_is_refused_when_not_at_a_terminal(home: Path, phrases: dict[str, str]) -> None:
    result = run(home, "wallet", "export", "alice", "--phrase")
    line = error_line(result)
    assert "only at a terminal" in line and "--yes-show-phrase" in line
    assert result.stdout == ""  # nothing of the phrase


def test_export_phrase_with_the_explicit_flag_still_needs_the_password(
        home: Path, phrases: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    shown = ok_json(home, "wallet", "export", "alice", "--phrase", "--yes-show-phrase")
    assert shown == {"name": "alice", "mnemonic": phrases["alice"], "passphrase": False}
    monkeypatch.setenv("POSCTL_PASSWORD", "wrong")
    result = run(home, "wallet", "export", "alice", "--phrase", "--yes-show-phrase")
    assert "wrong password" in error_line(result)
    usage = run(home, "wallet", "export", "alice", "--yes-show-phrase")
    assert usage.exit_code == 2 and "--phrase" in usage.stderr and usage.stdout == ""


def test_export_phrase_at_a_terminal_needs_password_and_the_typed_name(home: Path, phrases: dict[str, str]) -> None:
    words = phrases["alice"].split()
    warning = "Anyone who sees the recovery phrase controls this wallet's tokens."
    session = Terminal(home, "wallet", "export", "alice", "--phrase")
    session.answer("Password for wallet 'alice': ", PASSWORD)
    session.answer("Type the wallet name (alice) to show its recovery phrase: ", "alicf")
    status, output = session.finish()
    # the whole transcript: no phrase word (prose holds BIP-39 words too, so compare it all), and
    # the password not echoed by its hidden prompt
    assert status == 1
    assert output == ("Password for wallet 'alice': \n" + warning + "\n"
                      "Type the wallet name (alice) to show its recovery phrase: alicf\n"
                      "error: what was typed is not 'alice': nothing was done\n")

    session = Terminal(home, "wallet", "export", "alice", "--phrase")
    session.answer("Password for wallet 'alice': ", PASSWORD)
    session.answer("Type the wallet name (alice) to show its recovery phrase: ", "alice")
    status, output = session.finish()
    assert status == 0, output
    assert PASSWORD not in output
    numbered = [(int(number), word) for number, word in re.findall(r"\b(\d+)\. (\S+)", output)]
    assert [number for number, _ in numbered] == [1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12]  # four columns
    assert [word for _, word in sorted(numbered)] == words


def test_subprocess_export(home: Path, phrases: dict[str, str]) -> None:
    xpub = posctl_process(home, "wallet", "export", "val")
    assert xpub.returncode == 0 and xpub.stdout.strip() == xpub_of(home, "val")
    refused = posctl_process(home, "wallet", "export", "val", "--phrase")
    assert "only at a terminal" in error_line(refused)
    piped = posctl_process(home, "wallet", "export", "val", "--phrase", "--yes-show-phrase", "--json")
    assert json.loads(piped.stdout)["mnemonic"] == phrases["val"]
    assert piped.stderr.startswith("warning: writing wallet 'val''s recovery phrase to a pipe")


# ---- rename ------------------------------------------------------------------------------------


def test_rename_keeps_keys_tag_and_password(home: Path) -> None:
    address = address_of(home, "alice")
    data = ok_json(home, "wallet", "rename", "alice", "carol")
    assert data["address"] == address and data["name"] == "carol"
    store = Keystore(home / "wallets")
    assert store.names() == ["bob", "carol", "val"]
    assert store.load_verified("carol").address(0, 0) == address
    assert store.unlock("carol", PASSWORD).address(0, 0) == address
    assert stat.S_IMODE((home / "wallets" / "carol.json").stat().st_mode) == 0o600


def test_rename_moves_the_slashing_protection_record(home: Path) -> None:
    wallets = home / "wallets"
    address = address_of(home, "val")
    SlashingProtection(wallets, "val").record(address, 7, b"\x01" * 32, chain_id="posctl-test")
    ok(home, "wallet", "rename", "val", "validator")
    assert not (wallets / "val.protection.json").exists()
    moved = SlashingProtection(wallets, "validator")
    with pytest.raises(WouldEquivocate):
        moved.check(address, 7, b"\x02" * 32, chain_id="posctl-test")


def test_rename_refuses_a_name_with_a_leftover_protection_record(home: Path) -> None:
    SlashingProtection(home / "wallets", "gone").record(address_of(home, "bob"), 3, b"\x05" * 32, chain_id="c-1")
    before = files(home)
    assert "slashing-protection record" in error_line(run(home, "wallet", "rename", "alice", "gone"))
    assert files(home) == before


@pytest.mark.parametrize("new, fragment", [("bob", "already exists"), ("BOB", "only in case"),
                                           ("alice", "already has that name"), ("../x", "invalid wallet name")])
def test_rename_onto_an_existing_or_bad_name_changes_nothing(home: Path, new: str, fragment: str) -> None:
    before = files(home)
    assert fragment in error_line(run(home, "wallet", "rename", "alice", new))
    assert files(home) == before


def test_a_ctrl_c_inside_a_rename_says_where_it_stopped(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted before the new file exists: nothing changed (and the line says so); after it
    exists but before the old one is gone: both names hold the keys, which "aborted: nothing was
    changed" used to hide, and the line names the command that finishes the rename."""
    wallets = home / "wallets"
    SlashingProtection(wallets, "val").record(address_of(home, "val"), 7, b"\x01" * 32, chain_id="posctl-test")
    original_copy, original_delete = Keystore.copy_renamed, Keystore.delete

    def interrupt(*_args: Any, **_kwargs: Any) -> Any:
        raise KeyboardInterrupt

    def without_locks() -> dict[str, bytes]:  # (empty lock files are never deleted: see wallet.protection)
        return {path: data for path, data in files(home).items() if not path.endswith(".lock")}

    before = without_locks()
    monkeypatch.setattr(Keystore, "copy_renamed", interrupt)
    assert error_line(run(home, "wallet", "rename", "val", "validator")) == "error: aborted: nothing was changed"
    assert without_locks() == before
    monkeypatch.setattr(Keystore, "copy_renamed", original_copy)

    def delete_interrupted(self: Keystore, name: str) -> Any:
        raise KeyboardInterrupt  # the new file is written, the old one not yet removed

    monkeypatch.setattr(Keystore, "delete", delete_interrupted)
    line = error_line(run(home, "wallet", "rename", "val", "validator"))
    assert line == ("error: interrupted in the middle of the rename: wallets 'val' and 'validator' both hold the "
                    "keys now (and the slashing-protection record, if there was one); `posctl wallet delete val` "
                    "finishes the rename")
    assert (wallets / "validator.protection.json").exists() and (wallets / "val.protection.json").exists()
    monkeypatch.setattr(Keystore, "delete", original_delete)
    ok(home, "wallet", "delete", "val", "--yes")
    assert Keystore(wallets).names() == ["alice", "bob", "validator"]


def test_rename_with_a_wrong_password_changes_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSCTL_PASSWORD", "wrong")
    before = files(home)
    assert "wrong password" in error_line(run(home, "wallet", "rename", "alice", "carol"))
    assert files(home) == before


def test_rename_of_a_watch_only_wallet_needs_no_password(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(home, "wallet", "import-xpub", "cold", xpub_of(home, "bob"))
    monkeypatch.delenv("POSCTL_PASSWORD")
    ok(home, "wallet", "rename", "cold", "colder")
    store = Keystore(home / "wallets")
    assert store.load_verified("colder").address(0, 0) == address_of(home, "bob")
    assert not store.exists("cold")


def test_subprocess_rename(home: Path) -> None:
    done = posctl_process(home, "wallet", "rename", "bob", "robert")
    assert done.returncode == 0, done.stderr
    assert "Renamed wallet 'bob' to 'robert'" in done.stdout
    before = files(home)
    assert "already exists" in error_line(posctl_process(home, "wallet", "rename", "robert", "val"))
    assert files(home) == before


# ---- passwd ------------------------------------------------------------------------------------


def test_passwd_changes_the_password_atomically(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Keystore(home / "wallets")
    old_bytes = (home / "wallets" / "bob.json").read_bytes()
    monkeypatch.setenv("POSCTL_NEW_PASSWORD", NEW_PASSWORD)
    ok(home, "wallet", "passwd", "bob")
    path = home / "wallets" / "bob.json"
    assert path.read_bytes() != old_bytes and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.unlock("bob", NEW_PASSWORD).address(0, 0) == address_of(home, "bob")
    with pytest.raises(WrongPassword):
        store.unlock("bob", PASSWORD)
    store.load_verified("bob")
    assert [p.name for p in (home / "wallets").iterdir() if p.name.endswith(".tmp")] == []


def test_passwd_interrupted_says_which_password_opens_the_wallet(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the atomic replace the NEW password is in force: "aborted: nothing was changed"
    there left the user trying the old one. Interrupted before it, the old one still opens it."""
    store = Keystore(home / "wallets")
    monkeypatch.setenv("POSCTL_NEW_PASSWORD", NEW_PASSWORD)
    original = Keystore.change_password

    def interrupt_before(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # during the key stretching

    def interrupt_after(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # the new file was just put in place

    monkeypatch.setattr(Keystore, "change_password", interrupt_before)
    assert error_line(run(home, "wallet", "passwd", "bob")) == "error: aborted: nothing was changed"
    store.unlock("bob", PASSWORD)
    monkeypatch.setattr(Keystore, "change_password", interrupt_after)
    assert error_line(run(home, "wallet", "passwd", "bob")) == (
        "error: interrupted after the password of wallet 'bob' was changed: the NEW password opens it now")
    store.unlock("bob", NEW_PASSWORD)


@pytest.mark.parametrize("meanwhile", [("rename", "bob", "robert"), ("delete", "bob", "--yes")])
def test_passwd_never_writes_back_a_wallet_another_command_renamed_or_deleted(
        home: Path, monkeypatch: pytest.MonkeyPatch, meanwhile: tuple[str, ...]) -> None:
    """`wallet passwd` unlocks, then waits for a new password typed twice and a scrypt run: a
    `wallet rename` or `wallet delete` finished in those seconds, and passwd then wrote the
    wallet back under its old name — a renamed wallet beside its new name, a deleted one back.
    Now the write is refused unless the file is still the one unlocked."""
    monkeypatch.setenv("POSCTL_NEW_PASSWORD", NEW_PASSWORD)
    original = Keystore.change_password

    def other_command_first(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        ok(home, "wallet", *meanwhile)  # lands while this passwd has the wallet unlocked
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Keystore, "change_password", other_command_first)
    before = files(home)
    assert error_line(run(home, "wallet", "passwd", "bob")) == (
        "error: wallet 'bob' is gone (renamed or deleted by another posctl command) since this one read it: "
        "nothing was changed; check `posctl wallet list`, then run `posctl wallet passwd` again")
    assert not (home / "wallets" / "bob.json").exists()
    if meanwhile[0] == "rename":
        Keystore(home / "wallets").unlock("robert", PASSWORD)  # the rename stands, old password and all
    assert {name for name in files(home) if name.endswith(".json")} == \
        {name for name in before if name.endswith(".json")} - {"wallets/bob.json"} | (
            {"wallets/robert.json"} if meanwhile[0] == "rename" else set())


def test_rename_refuses_a_wallet_whose_password_changed_since_it_was_unlocked(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other order: `wallet passwd` finishes while `wallet rename` has the wallet unlocked.
    The rename would seal the new name under the old password and delete the file holding the
    new one: it is refused, and the new password stays in force under the old name."""
    original, calls = Keystore.unlock, []

    def passwd_meanwhile(self: Keystore, name: str, password: str) -> Any:
        unlocked = original(self, name, password)
        if not calls:
            calls.append(name)
            monkeypatch.setenv("POSCTL_NEW_PASSWORD", NEW_PASSWORD)
            ok(home, "wallet", "passwd", "bob")
        return unlocked

    monkeypatch.setattr(Keystore, "unlock", passwd_meanwhile)
    assert error_line(run(home, "wallet", "rename", "bob", "robert")) == (
        "error: wallet 'bob' was rewritten (its password changed by another posctl command) since this one read "
        "it: nothing was changed; run `posctl wallet rename bob robert` again")
    monkeypatch.setattr(Keystore, "unlock", original)
    store = Keystore(home / "wallets")
    store.unlock("bob", NEW_PASSWORD)
    assert not store.exists("robert") and not (home / "wallets" / "robert.protection.json").exists()


def test_an_untagged_wallet_still_changes_password_and_is_never_tagged_back_after_a_rename(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wallet without its integrity tag (an older posctl's) is tagged by its next unlock: a
    write of its own, which passwd must not take for another command's; and a tag written after
    a rename finished would bring the old name back."""
    path = home / "wallets" / "bob.json"
    document = json.loads(path.read_text())
    del document["public_mac"]
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    monkeypatch.setenv("POSCTL_NEW_PASSWORD", NEW_PASSWORD)
    ok(home, "wallet", "passwd", "bob")
    store = Keystore(home / "wallets")
    store.unlock("bob", NEW_PASSWORD)

    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")  # untagged again, old password
    loaded = store.load("bob")
    ok(home, "wallet", "rename", "bob", "robert")
    store._retag(loaded)  # an unlock of the old file finishing after the rename
    assert not path.exists()


def test_passwd_reads_a_new_password_file(home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "new.txt"
    secret.write_text(NEW_PASSWORD + "\n")
    ok(home, "wallet", "passwd", "val", "--new-password-file", str(secret))
    Keystore(home / "wallets").unlock("val", NEW_PASSWORD)


@pytest.mark.parametrize("old, new, fragment", [
    ("wrong", NEW_PASSWORD, "wrong password"),
    (PASSWORD, "", "new password is empty"),
    (PASSWORD, None, "a new password is needed"),
])
def test_passwd_refusals_change_nothing(home: Path, monkeypatch: pytest.MonkeyPatch, old: str,
                                        new: str | None, fragment: str) -> None:
    monkeypatch.setenv("POSCTL_PASSWORD", old)
    if new is not None:
        monkeypatch.setenv("POSCTL_NEW_PASSWORD", new)
    before = files(home)
    assert fragment in error_line(run(home, "wallet", "passwd", "alice"))
    assert files(home) == before


def test_passwd_at_a_terminal_with_a_mismatch_changes_nothing(home: Path) -> None:
    before = files(home)
    session = Terminal(home, "wallet", "passwd", "alice")
    session.answer("Password for wallet 'alice': ", PASSWORD)
    session.answer("New password: ", "first choice")
    session.answer("Repeat for confirmation: ", "second choice")
    status, output = session.finish()
    assert status == 1
    assert output.strip().splitlines()[-1] == \
        "error: the two passwords typed do not match: nothing was written; run the command again"
    assert files(home) == before


def test_passwd_at_a_terminal(home: Path) -> None:
    session = Terminal(home, "wallet", "passwd", "alice")
    session.answer("Password for wallet 'alice': ", PASSWORD)
    session.answer("New password: ", NEW_PASSWORD)
    session.answer("Repeat for confirmation: ", NEW_PASSWORD)
    status, output = session.finish()
    print(repr(output))
    assert status == 0, output
    Keystore(home / "wallets").unlock("alice", NEW_PASSWORD)


def test_subprocess_passwd(home: Path) -> None:
    before = files(home)
    wrong = posctl_process(home, "wallet", "passwd", "val", POSCTL_PASSWORD="nope", POSCTL_NEW_PASSWORD="x2")
    assert "wrong password" in error_line(wrong)
    assert files(home) == before
    done = posctl_process(home, "wallet", "passwd", "val", POSCTL_NEW_PASSWORD=NEW_PASSWORD)
    assert done.returncode == 0, done.stderr
    Keystore(home / "wallets").unlock("val", NEW_PASSWORD)


# ---- the password prompt of new and recover (item 9) ------------------------------------------


def test_new_at_a_terminal_with_mismatched_passwords_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    session = Terminal(home, "wallet", "new", "carol")
    session.answer("Wallet password: ", "one")
    session.answer("Repeat for confirmation: ", "two")
    status, output = session.finish()
    assert status == 1
    assert output.strip().splitlines()[-1].startswith("error: the two passwords typed do not match")
    assert "Error:" not in output
    assert not (home / "wallets" / "carol.json").exists()


def test_show_help_no_longer_offers_out(home: Path) -> None:
    shown = ok(home, "wallet", "show", "--help").stdout
    assert not re.search(r"--out\b(?!put)", shown) and "--account" in shown and "--index" in shown
    assert run(home, "wallet", "show", "alice", "--out", "x.json").exit_code == 2


# ---- delete ------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["import-xpub", "delete"])
def test_an_interruption_just_after_the_write_says_what_was_done(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 command: str) -> None:
    """A Ctrl-C that lands once the file is written (or removed) must not be reported as
    "aborted: nothing was changed"; one that lands before it still is."""
    method = {"import-xpub": "import_xpub", "delete": "delete"}[command]
    args = ["wallet", "import-xpub", "cold", xpub_of(home, "alice")] if command == "import-xpub" else \
        ["wallet", "delete", "bob", "--yes"]
    original = getattr(Keystore, method)

    def interrupt_before(self: Keystore, *call_args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    def interrupt_after(self: Keystore, *call_args: Any, **kwargs: Any) -> Any:
        original(self, *call_args, **kwargs)
        raise KeyboardInterrupt

    before = files(home)
    monkeypatch.setattr(Keystore, method, interrupt_before)
    assert error_line(run(home, *args)) == "error: aborted: nothing was changed"
    assert files(home) == before
    monkeypatch.setattr(Keystore, method, interrupt_after)
    line = error_line(run(home, *args))
    if command == "import-xpub":
        assert line == ("error: interrupted after watch-only wallet 'cold' was written: it is complete; "
                        "`posctl wallet show cold` shows it")
        Keystore(home / "wallets").load_verified("cold")
    else:
        assert line == f"error: interrupted after wallet 'bob' was deleted ({home / 'wallets' / 'bob.json'})"
        assert not (home / "wallets" / "bob.json").exists()


def test_delete_without_a_terminal_needs_yes(home: Path) -> None:
    before = files(home)
    line = error_line(run(home, "wallet", "delete", "alice"))
    assert "needs a confirmation" in line and "--yes" in line
    assert files(home) == before


def test_delete_with_yes_keeps_the_protection_record(home: Path) -> None:
    wallets = home / "wallets"
    SlashingProtection(wallets, "val").record(address_of(home, "val"), 4, b"\x03" * 32, chain_id="c-1")
    data = ok_json(home, "wallet", "delete", "val", "--yes")
    assert data["deleted"] is True
    assert Keystore(wallets).names() == ["alice", "bob"]
    assert (wallets / "val.protection.json").exists()


def test_delete_unknown_and_damaged(home: Path) -> None:
    assert "no wallet named 'nobody'" in error_line(run(home, "wallet", "delete", "nobody", "--yes"))
    (home / "wallets" / "bob.json").write_text("{not json")
    ok(home, "wallet", "delete", "bob", "--yes")
    assert not (home / "wallets" / "bob.json").exists()


def test_delete_at_a_terminal_asks_for_the_name(home: Path) -> None:
    before = files(home)
    session = Terminal(home, "wallet", "delete", "bob")
    session.answer("Type the wallet name (bob) to delete it: ", "alice")
    status, output = session.finish()
    assert status == 1 and "Only its recovery phrase can bring it back." in output
    assert files(home) == before
    session = Terminal(home, "wallet", "delete", "bob")
    session.answer("Type the wallet name (bob) to delete it: ", "bob")
    status, output = session.finish()
    print(repr(output))
    assert status == 0, output
    assert not (home / "wallets" / "bob.json").exists()


def test_subprocess_delete(home: Path) -> None:
    before = files(home)
    assert "needs a confirmation" in error_line(posctl_process(home, "wallet", "delete", "val"))
    assert files(home) == before
    done = posctl_process(home, "wallet", "delete", "val", "--yes")
    assert done.returncode == 0 and not (home / "wallets" / "val.json").exists()


# ---- the transfer confirmation -------------------------------------------------------------------


def _chain_state(home: Path) -> tuple[int, int]:
    with Chain.open(home) as chain:
        return chain.height, chain.mempool.count


def test_send_at_a_terminal_shows_the_transfer_and_can_be_declined(chain_home: Path) -> None:
    with Chain.open(chain_home) as chain:
        chain_id = chain.status().chain_id
    before = files(chain_home / "wallets")
    session = Terminal(chain_home, "wallet", "send", "alice", "bob", "25", POSCTL_PASSWORD=PASSWORD)
    session.answer("Sign it? [y/N]: ", "n")
    status, output = session.finish()
    assert status == 1 and "error: not confirmed: nothing was signed or sent" in output
    for shown in (address_of(chain_home, "alice"), address_of(chain_home, "bob"), "(wallet bob)",
                  "amount    25", f"chain id  {chain_id}"):
        assert shown in output
    assert _chain_state(chain_home) == (0, 0)
    assert files(chain_home / "wallets") == before

    session = Terminal(chain_home, "wallet", "send", "alice", "bob", "25", POSCTL_PASSWORD=PASSWORD)
    session.answer("Sign it? [y/N]: ", "y")
    status, output = session.finish()
    assert status == 0 and "Submitted transfer of 25" in output
    assert _chain_state(chain_home) == (0, 1)


def test_send_with_yes_at_a_terminal_does_not_ask(chain_home: Path) -> None:
    status, output = Terminal(chain_home, "wallet", "send", "alice", "bob", "5", "--yes",
                              POSCTL_PASSWORD=PASSWORD).finish()
    assert status == 0 and "Sign it?" not in output and "Submitted" in output


def test_send_from_a_script_does_not_ask(chain_home: Path) -> None:
    result = ok(chain_home, "wallet", "send", "alice", "bob", "5")
    assert "Sign it?" not in result.stderr and "About to sign" not in result.stderr
    piped = posctl_process(chain_home, "wallet", "send", "alice", "bob", "6")
    assert piped.returncode == 0 and "Sign it?" not in piped.stderr
    assert _chain_state(chain_home) == (0, 2)


# ---- the same keys under two names ---------------------------------------------------------------


def test_recover_under_a_second_name_warns(home: Path, phrases: dict[str, str]) -> None:
    result = ok(home, "wallet", "recover", "bob2", input=phrases["bob"])
    lines = result.stderr.strip().splitlines()
    same = [line for line in lines if "same keys" in line]
    assert len(same) == 1 and "'bob'" in same[0] and same[0].startswith("warning: ")
    listed = ok_json(home, "wallet", "list")
    assert {row["name"]: row["same_keys_as"] for row in listed}["bob"] == ["bob2"]
    unrelated = ok(home, "wallet", "recover", "carol", input=bip39.generate_mnemonic(12))
    assert "same keys" not in unrelated.stderr


def test_subprocess_list_warns_once_per_group(home: Path, phrases: dict[str, str]) -> None:
    assert posctl_process(home, "wallet", "recover", "alice2", input=phrases["alice"]).returncode == 0
    listed = posctl_process(home, "wallet", "list")
    assert listed.returncode == 0
    assert listed.stderr.count("same keys") == 1 and "'alice', 'alice2'" in listed.stderr


# ---- through a running node ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_watch_only_through_a_running_node_prints_the_same(chain_home: Path) -> None:
    ok(chain_home, "wallet", "import-xpub", "cold", xpub_of(chain_home, "bob"))
    ok(chain_home, "wallet", "send", "alice", "cold", "30")
    ok(chain_home, "wallet", "propose", "val", "--bpm", "60")
    with Chain.open(chain_home) as chain:
        chain.forge()
    port = _free_port()
    env = {**os.environ, "POSCTL_HOME": str(chain_home)}
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    with open(chain_home.parent / "node.log", "w") as log:
        node = subprocess.Popen([POSCTL, "node", "run", "--listen", f"127.0.0.1:{port}", "--interval", "3600"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not (chain_home / "node.json").exists() or \
                    posctl_process(chain_home, "chain", "status").returncode != 0:
                assert node.poll() is None and time.monotonic() < deadline, (chain_home.parent / "node.log").read_text()
                time.sleep(0.1)
            commands = [("wallet", "show", "cold"), ("wallet", "show", "cold", "--json"),
                        ("wallet", "addresses", "cold", "--count", "2"), ("wallet", "send", "cold", "alice", "1"),
                        ("wallet", "stake", "cold", "100")]
            via_node = [posctl_process(chain_home, *command) for command in commands]
        finally:
            node.terminate()
            node.wait(timeout=15)
    via_direct = [posctl_process(chain_home, *command) for command in commands]
    for command, a, b in zip(commands, via_node, via_direct):
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), command
    assert json.loads(via_node[1].stdout)["balance"] == 30
    assert "watch-only" in error_line(via_node[3]) and "watch-only" in error_line(via_node[4])


# ---- killed at any moment ------------------------------------------------------------------------


def _kill_at_random_moments(home: Path, args: list[str], env: dict[str, str], check: Any, rounds: int = 12) -> None:
    """Run ``posctl ARGS`` and SIGKILL it after a delay spread over its whole run; ``check``
    the wallet directory after each, whether it died early, midway or finished."""
    full_env = {**os.environ, "POSCTL_HOME": str(home), "POSCTL_KDF": "light", "POSCTL_PASSWORD": PASSWORD, **env}
    started = time.monotonic()
    subprocess.run([POSCTL, "wallet", "list"], env=full_env, capture_output=True, timeout=60)
    span = time.monotonic() - started  # about one process start-up and run
    for round_number in range(rounds):
        process = subprocess.Popen([POSCTL, *args], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(span * 1.6 * round_number / rounds)
        process.kill()
        process.wait(timeout=30)
        check()


def test_passwd_killed_at_any_moment_leaves_a_wallet_one_password_opens(home: Path) -> None:
    address = address_of(home, "alice")
    store = Keystore(home / "wallets")

    def check() -> None:
        opened = []
        for password in (PASSWORD, NEW_PASSWORD):
            try:
                opened.append(store.unlock("alice", password).address(0, 0))
            except WrongPassword:  # the other one; anything else (damage) fails the test
                pass
        assert opened == [address]
        store.load_verified("alice")
        path = home / "wallets" / "alice.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # alternate the direction so every round has a change to interrupt
    def passwd_round(old: str, new: str) -> None:
        _kill_at_random_moments(home, ["wallet", "passwd", "alice"], {"POSCTL_PASSWORD": old,
                                                                     "POSCTL_NEW_PASSWORD": new}, check, rounds=6)
    passwd_round(PASSWORD, NEW_PASSWORD)
    passwd_round(NEW_PASSWORD, PASSWORD)


def test_rename_killed_at_any_moment_keeps_the_keys_and_the_record(home: Path) -> None:
    wallets = home / "wallets"
    address = address_of(home, "val")
    SlashingProtection(wallets, "val").record(address, 9, b"\x07" * 32, chain_id="c-1")
    store = Keystore(wallets)

    def check() -> None:
        present = [name for name in ("val", "validator") if store.exists(name)]
        assert present, "both names gone"
        for name in present:
            assert store.unlock(name, PASSWORD).address(0, 0) == address
            assert SlashingProtection(wallets, name).signed_heights(address, chain_id="c-1") == {9: b"\x07" * 32}
        if present == ["validator"]:  # finished: undo it for the next round
            ok(home, "wallet", "rename", "validator", "val")
        elif present == ["val", "validator"]:  # stopped between writing NEW and removing OLD
            ok(home, "wallet", "delete", "validator", "--yes")
            (wallets / "validator.protection.json").unlink()
        elif (wallets / "validator.protection.json").exists():  # stopped after copying the record
            (wallets / "validator.protection.json").unlink()

    _kill_at_random_moments(home, ["wallet", "rename", "val", "validator"], {}, check)


def test_a_height_a_running_validator_records_during_a_rename_is_never_lost(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`validator run val` goes on recording the heights it signs while `wallet rename val
    validator` moves the record. One recorded between the copy and the removal of the old
    record was in neither record afterwards, and `validator` could then sign that height again
    (equivocation). Now the old record's lock is held from the copy to the removal, so the
    validator's record waits and lands after the move, where the new name's checks find it."""
    wallets = home / "wallets"
    address = address_of(home, "val")
    SlashingProtection(wallets, "val").record(address, 9, b"\x07" * 32, chain_id="c-1")
    original, recorder, errors = Keystore.copy_renamed, [], []

    def record_height_12() -> None:
        try:
            SlashingProtection(wallets, "val").record(address, 12, b"\x0c" * 32, chain_id="c-1")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def validator_records_meanwhile(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        recorder.append(threading.Thread(target=record_height_12))
        recorder[0].start()  # the validator signs height 12 as the rename moves the record
        recorder[0].join(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Keystore, "copy_renamed", validator_records_meanwhile)
    ok(home, "wallet", "rename", "val", "validator")
    recorder[0].join(15)
    assert errors == [] and not recorder[0].is_alive()
    with pytest.raises(WouldEquivocate):
        SlashingProtection(wallets, "validator").record(address, 12, b"\x0d" * 32, chain_id="c-1")
    with pytest.raises(WouldEquivocate):
        SlashingProtection(wallets, "validator").record(address, 9, b"\x0d" * 32, chain_id="c-1")


def test_new_passphrase_mismatch_at_a_terminal_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    session = Terminal(home, "wallet", "new", "carol", "--passphrase")
    session.answer("BIP-39 passphrase: ", "tr3zor")
    session.answer("Repeat for confirmation: ", "trezor")
    status, output = session.finish()
    assert status == 1 and "Error:" not in output
    assert output.strip().splitlines()[-1].startswith("error: the two passphrases typed do not match")
    assert not (home / "wallets" / "carol.json").exists()
