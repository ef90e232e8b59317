"""``posctl wallet``: every command and every mistake a user can make with it.

Commands run through click's ``CliRunner`` against a real LevelDB chain in ``tmp_path``; a few
run the installed ``posctl`` in a subprocess, so a restart is a new process on the same home.
Wallets use ``POSCTL_KDF=light`` (weak scrypt) so the suite stays fast.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result

from cli.main import posctl
from ledger.chain.facade import Chain
from ledger.chain.results import AccountInfo
from ledger.consensus.genesis import GenesisConfig
from ledger.params import Params
from wallet import bip39
from wallet.keystore import Keystore

PASSWORD = "correct horse battery staple"
PARAMS = Params(min_stake=100, unbonding_blocks=3, block_reward=10, bpm_min=20, bpm_max=250)
ALICE_FUNDS = 1000
VAL_BOND = 500
POSCTL = shutil.which("posctl", path=str(Path(sys.executable).parent)) or "posctl"


# ---- helpers -----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def wallet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSCTL_KDF", "light")
    monkeypatch.setenv("POSCTL_PASSWORD", PASSWORD)
    monkeypatch.delenv("POSCTL_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("POSCTL_HOME", raising=False)


def run(home: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(posctl, ["--home", str(home), *args], input=input)


def ok(home: Path, *args: str, input: str | None = None) -> Result:
    result = run(home, *args, input=input)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def ok_json(home: Path, *args: str, input: str | None = None) -> Any:
    return json.loads(ok(home, *args, "--json", input=input).stdout)


def error_line(result: Result, status: int = 1) -> str:
    """The one ``error: …`` line of a refused command (no traceback, nothing on stdout)."""
    assert result.exit_code == status, (result.stdout, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    if status == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), lines[0]
        assert result.stdout == ""
        return lines[0]
    # usage errors: click's usage header, then the one line naming the value and the rule
    return result.stderr.strip().splitlines()[-1]


def address_of(home: Path, name: str, account: int = 0, index: int = 0) -> str:
    return Keystore(home / "wallets").load(name).address(account, index)


def forge(home: Path) -> dict[str, Any]:
    with Chain.open(home) as chain:
        return chain.forge().to_view()


def chain_snapshot(home: Path) -> tuple[int, int, list[AccountInfo]]:
    """Height, mempool size and every test wallet's account: what a refused command must not change."""
    with Chain.open(home) as chain:
        accounts = [chain.account(address_of(home, name)) for name in ("alice", "bob", "val")]
        return chain.height, chain.mempool.count, accounts


@pytest.fixture(scope="session")
def wallets_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with wallets alice, bob and val (made once; each test gets a copy)."""
    home = tmp_path_factory.mktemp("template") / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("POSCTL_KDF", "light")
    mp.setenv("POSCTL_PASSWORD", PASSWORD)
    try:
        for name in ("alice", "bob", "val"):
            ok(home, "wallet", "new", name, "--words", "12")
    finally:
        mp.undo()
    return home


@pytest.fixture
def home(tmp_path: Path, wallets_template: Path) -> Path:
    """Wallets, no chain."""
    target = tmp_path / "home"
    shutil.copytree(wallets_template, target)
    return target


@pytest.fixture
def chain_home(home: Path) -> Path:
    """Wallets plus a chain: alice has 1000 liquid, val 500 bonded, bob nothing."""
    config = GenesisConfig(
        params=PARAMS,
        allocations={address_of(home, "alice"): ALICE_FUNDS},
        bonds={address_of(home, "val"): VAL_BOND},
    )
    Chain.create(home, config).close()
    return home


# ---- wallet new ------------------------------------------------------------------------------


def test_a_private_key_pasted_by_mistake_is_never_echoed(chain_home: Path) -> None:
    """An xprv pasted where an address or a block was expected came back whole in the error line
    (and in the node's JSON error); the refusal still says what was wrong."""
    from ledger.node.api import error_body
    from wallet.hd import ExtendedKey

    xprv = ExtendedKey.from_seed(bytes(range(32))).to_string()
    for args in (["wallet", "send", "alice", xprv, "5"], ["chain", "account", xprv], ["chain", "show", xprv]):
        result = run(chain_home, *args)
        assert result.exit_code in (1, 2) and xprv[:12] not in result.stderr + result.stdout, result.stderr
        assert "xprv… (a private key: not shown" in result.stderr
    assert xprv[4:40] not in error_body(f"no account {xprv[:90]!r}", "InvalidAddress")["error"]


def test_a_password_of_spaces_alone_is_refused_for_a_new_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty password was refused but three spaces were taken."""
    home = tmp_path / "h"
    ok(home, "wallet", "new", "carol")  # the module's password
    monkeypatch.setenv("POSCTL_PASSWORD", "   ")
    line = error_line(run(home, "wallet", "new", "dora"))
    assert line == "error: the password is only spaces: choose one with other characters too; nothing was written"
    assert not (home / "wallets" / "dora.json").exists()
    monkeypatch.setenv("POSCTL_PASSWORD", PASSWORD)
    monkeypatch.setenv("POSCTL_NEW_PASSWORD", " \t ")
    line = error_line(run(home, "wallet", "passwd", "carol"))
    assert "the new password is only spaces" in line
    ok(home, "wallet", "show", "carol")


def test_new_prints_address_and_mnemonic_once_with_a_warning(tmp_path: Path) -> None:
    home = tmp_path / "h"
    result = ok(home, "wallet", "new", "carol")
    address = address_of(home, "carol")
    assert address in result.stdout
    assert "WARNING: write these words down" in result.stdout
    assert "shown this once" in result.stdout
    assert "24 words" in result.stdout
    path = home / "wallets" / "carol.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "wallets").stat().st_mode) == 0o700
    assert "weak" in result.stderr or "cheap to guess" in result.stderr  # POSCTL_KDF=light says so
    phrase = ok_json(home, "wallet", "new", "dave")["mnemonic"]
    stored = (home / "wallets" / "dave.json").read_text()
    assert phrase not in stored
    values = json.dumps(list(_string_values(json.loads(stored))))  # field names are not secrets
    assert not [word for word in phrase.split() if len(word) >= 6 and word in values]


def _string_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _string_values(value)
    elif isinstance(node, str):
        yield node


def test_new_json_has_name_address_mnemonic(tmp_path: Path) -> None:
    home = tmp_path / "h"
    data = ok_json(home, "wallet", "new", "carol", "--words", "15")
    assert data["name"] == "carol"
    assert data["address"] == address_of(home, "carol")
    assert len(bip39.validate_mnemonic(data["mnemonic"]).split()) == 15
    unlocked = Keystore(home / "wallets").unlock("carol", PASSWORD)
    assert unlocked.mnemonic() == data["mnemonic"]


def test_new_with_password_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")
    secret = tmp_path / "pw"
    secret.write_text("from a file\n")
    home = tmp_path / "h"
    result = CliRunner().invoke(
        posctl, ["--home", str(home), "--password-file", str(secret), "wallet", "new", "carol"]
    )
    assert result.exit_code == 0, result.stderr
    Keystore(home / "wallets").unlock("carol", "from a file")


def test_new_without_any_password_source_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")
    line = error_line(run(tmp_path / "h", "wallet", "new", "carol"))
    assert "password" in line
    assert not (tmp_path / "h" / "wallets" / "carol.json").exists()


def test_new_interrupted_once_the_file_is_written_removes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C in the last moment of ``create`` (the file is on disk, the phrase not yet shown)
    left a wallet whose phrase nobody had seen, under "aborted: nothing was changed". Now the
    wallet is removed, and the line says so; an interruption earlier changes nothing either."""
    original = Keystore.create

    def create_then_interrupt(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # where a Ctrl-C lands just after the file was published

    monkeypatch.setattr(Keystore, "create", create_then_interrupt)
    line = error_line(run(tmp_path, "wallet", "new", "alice"))
    assert line == ("error: interrupted before the recovery phrase of 'alice' was shown in full: the new wallet "
                    "was removed again, so nothing was changed; run the command again")
    assert list((tmp_path / "wallets").glob("*.json")) == []

    def interrupt_first(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # during the key stretching, before any file

    monkeypatch.setattr(Keystore, "create", interrupt_first)
    assert error_line(run(tmp_path, "wallet", "new", "alice")) == "error: aborted: nothing was changed"
    monkeypatch.setattr(Keystore, "create", original)
    ok(tmp_path, "wallet", "new", "alice")


def test_new_refuses_an_existing_wallet_and_leaves_it_untouched(home: Path) -> None:
    before = (home / "wallets" / "alice.json").read_bytes()
    line = error_line(run(home, "wallet", "new", "alice"))
    assert "already exists" in line and "alice" in line
    assert (home / "wallets" / "alice.json").read_bytes() == before


@pytest.mark.parametrize("name", ["../evil", "a b", "x" * 65, ""])
def test_new_refuses_an_invalid_name(tmp_path: Path, name: str) -> None:
    line = error_line(run(tmp_path / "h", "wallet", "new", name))
    assert "invalid wallet name" in line


def test_new_refuses_an_unknown_word_count(tmp_path: Path) -> None:
    line = error_line(run(tmp_path / "h", "wallet", "new", "carol", "--words", "13"), status=2)
    assert "13" in line


def test_new_refuses_an_unknown_kdf_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSCTL_KDF", "fast")
    line = error_line(run(tmp_path / "h", "wallet", "new", "carol"))
    assert "POSCTL_KDF" in line


def test_kdf_params_default_is_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.wallet_cmd import kdf_params
    from wallet.wallet_file import ScryptParams

    monkeypatch.delenv("POSCTL_KDF")
    assert kdf_params() == ScryptParams.default()
    monkeypatch.setenv("POSCTL_KDF", "light")
    assert kdf_params() == ScryptParams.light()


def test_new_with_a_home_that_cannot_be_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    line = error_line(run(blocker / "home", "wallet", "new", "carol"))
    assert "Not a directory" in line or "not a directory" in line


# ---- wallet recover --------------------------------------------------------------------------


def test_recover_from_stdin_gives_the_same_wallet(tmp_path: Path) -> None:
    first = ok_json(tmp_path / "a", "wallet", "new", "carol")
    messy = "  " + first["mnemonic"].upper().replace(" ", "  \n ") + "\n"
    data = ok_json(tmp_path / "b", "wallet", "recover", "carol", input=messy)
    assert data["address"] == first["address"]
    assert "mnemonic" not in data
    assert first["mnemonic"] not in ok(tmp_path / "c", "wallet", "recover", "carol", input=first["mnemonic"]).stdout


def test_recover_interrupted_says_whether_the_wallet_was_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    phrase = ok_json(tmp_path / "a", "wallet", "new", "carol")["mnemonic"]
    original = Keystore.recover

    def interrupt_before(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # during the key stretching

    def interrupt_after(self: Keystore, *args: Any, **kwargs: Any) -> Any:
        original(self, *args, **kwargs)
        raise KeyboardInterrupt  # the file was just published

    monkeypatch.setattr(Keystore, "recover", interrupt_before)
    assert error_line(run(tmp_path / "b", "wallet", "recover", "carol", input=phrase)) == \
        "error: aborted: nothing was changed"
    assert not (tmp_path / "b" / "wallets" / "carol.json").exists()
    monkeypatch.setattr(Keystore, "recover", interrupt_after)
    assert error_line(run(tmp_path / "b", "wallet", "recover", "carol", input=phrase)) == \
        "error: interrupted after wallet 'carol' was written: it is complete; `posctl wallet show carol` shows it"
    assert Keystore(tmp_path / "b" / "wallets").load_verified("carol").address(0, 0) == \
        Keystore(tmp_path / "a" / "wallets").load("carol").address(0, 0)


def test_passphrase_on_new_and_recover(tmp_path: Path) -> None:
    first = ok_json(tmp_path / "a", "wallet", "new", "carol", "--passphrase", input="tr3zor\ntr3zor\n")
    plain = ok_json(tmp_path / "b", "wallet", "recover", "carol", input=first["mnemonic"])
    assert plain["address"] != first["address"]
    again = ok_json(
        tmp_path / "c", "wallet", "recover", "carol", "--passphrase", input=first["mnemonic"] + "\ntr3zor\n"
    )
    assert again["address"] == first["address"]


def test_recover_refuses_a_bad_phrase_without_echoing_it(tmp_path: Path) -> None:
    valid = "legal winner thank year wave sausage worth useful legal winner thank yellow"
    swapped = "winner legal thank year wave sausage worth useful legal winner thank yellow"
    assert bip39.validate_mnemonic(valid) and not bip39.Mnemonic("english").check(swapped)
    cases = [
        (swapped, "checksum", ["sausage", "winner", "yellow"]),
        ("zoo " * 12, "checksum", ["zoo"]),
        ("abandon " * 11 + "secretword", "word 12 of 12", ["secretword", "abandon"]),
        ("wave sausage worth", "this one has 3", ["wave", "sausage", "worth"]),
        ("", "this one has 0", []),
    ]
    for phrase, reason, secrets in cases:
        result = run(tmp_path / "h", "wallet", "recover", "carol", input=phrase)
        line = error_line(result)
        assert reason in line
        for word in secrets:
            assert word not in result.stderr
    assert not (tmp_path / "h" / "wallets" / "carol.json").exists()


def test_recover_refuses_an_existing_wallet(home: Path) -> None:
    phrase = bip39.generate_mnemonic(12)
    line = error_line(run(home, "wallet", "recover", "alice", input=phrase))
    assert "already exists" in line


# ---- wallet list -----------------------------------------------------------------------------


def test_list_empty_home(tmp_path: Path) -> None:
    assert "No wallets" in ok(tmp_path / "h", "wallet", "list").stdout
    assert ok_json(tmp_path / "h", "wallet", "list") == []


def test_list_shows_every_wallet_and_survives_a_damaged_one(home: Path) -> None:
    rows = ok_json(home, "wallet", "list")
    assert [row["name"] for row in rows] == ["alice", "bob", "val"]
    assert rows[0]["address"] == address_of(home, "alice")
    (home / "wallets" / "bob.json").write_text("{not json")
    rows = ok_json(home, "wallet", "list")
    assert rows[1]["address"] is None and "damaged" in rows[1]["error"]
    text = ok(home, "wallet", "list").stdout
    assert address_of(home, "alice") in text and "unreadable" in text


# ---- wallet show -----------------------------------------------------------------------------


def test_show_without_a_chain_shows_the_keys(home: Path) -> None:
    wallet = Keystore(home / "wallets").load("alice")
    text = ok(home, "wallet", "show", "alice").stdout
    assert wallet.address() in text and wallet.account_xpub(0) in text
    assert "not initialised" in text
    data = ok_json(home, "wallet", "show", "alice")
    assert data["address"] == wallet.address()
    assert data["public_key"] == wallet.public_key().hex()
    assert data["xpub"] == wallet.account_xpub(0)
    assert data["chain_initialized"] is False and data["balance"] is None


def test_show_needs_no_password(chain_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")
    data = ok_json(chain_home, "wallet", "show", "alice")
    assert data["balance"] == ALICE_FUNDS
    assert data["bonded"] == 0 and data["unbonding"] == [] and data["nonce"] == 0


def test_show_account_and_index_match_the_private_derivation(home: Path) -> None:
    unlocked = Keystore(home / "wallets").unlock("alice", PASSWORD)
    data = ok_json(home, "wallet", "show", "alice", "--account", "3", "--index", "7")
    assert data["address"] == unlocked.address(3, 7)
    assert data["xpub"] == unlocked.account_xpub(3)
    assert data["path"] == "m/44'/1'/3'/0/7"
    far = ok_json(home, "wallet", "show", "alice", "--account", "12")  # not stored: needs the password
    assert far["address"] == unlocked.address(12, 0)


def test_show_rejects_an_out_of_range_account(home: Path) -> None:
    error_line(run(home, "wallet", "show", "alice", "--account", "-1"), status=2)
    error_line(run(home, "wallet", "show", "alice", "--index", str(2**31)), status=2)


def test_show_unknown_wallet(home: Path) -> None:
    line = error_line(run(home, "wallet", "show", "nobody"))
    assert "no wallet named 'nobody'" in line


def test_show_damaged_keystore(home: Path) -> None:
    path = home / "wallets" / "alice.json"
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0x01  # '{' -> 'z'
    path.write_bytes(bytes(raw))
    line = error_line(run(home, "wallet", "show", "alice"))
    assert "damaged" in line and "recover" in line


def test_show_tracks_stake_unbonding_nonce_and_pending(chain_home: Path) -> None:
    ok(chain_home, "wallet", "stake", "alice", "400")
    ok(chain_home, "wallet", "propose", "val", "--bpm", "70")
    pending = ok_json(chain_home, "wallet", "show", "alice")
    assert pending["pending"] == 1 and pending["next_nonce"] == 1 and pending["nonce"] == 0
    assert pending["balance"] == ALICE_FUNDS  # not applied until a block
    assert forge(chain_home)["forged"] is True
    ok(chain_home, "wallet", "unstake", "alice", "150")
    ok(chain_home, "wallet", "propose", "val", "--bpm", "71")
    block = forge(chain_home)
    data = ok_json(chain_home, "wallet", "show", "alice")
    assert data["balance"] == ALICE_FUNDS - 400
    assert data["bonded"] == 250
    assert data["unbonding"] == [{"amount": 150, "release_height": block["height"] + PARAMS.unbonding_blocks}]
    assert data["nonce"] == 2 and data["pending"] == 0
    text = ok(chain_home, "wallet", "show", "alice").stdout
    assert "250" in text and "150" in text and f"height {block['height'] + 3}" in text


# ---- wallet send / stake / unstake ------------------------------------------------------------


def test_send_to_a_wallet_name_and_to_an_address(chain_home: Path) -> None:
    bob = address_of(chain_home, "bob")
    first = ok_json(chain_home, "wallet", "send", "alice", "bob", "100")
    assert first["tx"]["to"] == bob and first["tx"]["amount"] == 100 and first["tx"]["kind"] == "transfer"
    assert first["tx_id"] == first["tx"]["id"] and first["tx"]["nonce"] == 0
    text = ok(chain_home, "wallet", "send", "alice", bob.upper(), "50").stdout
    assert "tx " in text and bob in text
    with Chain.open(chain_home) as chain:
        assert chain.tx(bytes.fromhex(first["tx_id"])).status == "pending"
        assert chain.mempool.count == 2
    ok(chain_home, "wallet", "propose", "val", "--bpm", "60")
    forge(chain_home)
    assert ok_json(chain_home, "wallet", "show", "bob")["balance"] == 150
    assert ok_json(chain_home, "wallet", "show", "alice")["balance"] == ALICE_FUNDS - 150


def test_consecutive_txs_take_consecutive_nonces(chain_home: Path) -> None:
    nonces = [ok_json(chain_home, "wallet", "stake", "alice", "10")["tx"]["nonce"] for _ in range(3)]
    assert nonces == [0, 1, 2]


@pytest.mark.parametrize(
    "amount, fragment",
    [
        ("0", "out of range"),
        ("-5", "out of range"),
        ("1.5", "not a whole number"),
        ("ten", "not a whole number"),
        ("1e3", "not a whole number"),
        (str(2**63), "out of range"),
        ("9" * 200, "not a whole number"),
    ],
)
@pytest.mark.parametrize("command", ["send", "stake", "unstake"])
def test_bad_amounts_are_usage_errors(chain_home: Path, command: str, amount: str, fragment: str) -> None:
    before = chain_snapshot(chain_home)
    args = ["wallet", command, "alice"] + (["bob"] if command == "send" else []) + ["--", amount]
    line = error_line(run(chain_home, *args), status=2)
    assert repr(amount) in line and fragment in line
    assert chain_snapshot(chain_home) == before


def test_negative_amount_without_separator_is_a_usage_error(chain_home: Path) -> None:
    result = run(chain_home, "wallet", "stake", "alice", "-5")
    assert result.exit_code == 2 and "-5" in result.stderr and "Traceback" not in result.stderr


def test_amount_bound_is_exclusive(chain_home: Path) -> None:
    line = error_line(run(chain_home, "wallet", "stake", "alice", str(2**63 - 1)))
    assert "spendable balance" in line  # a valid amount: the ledger refuses it on balance


def test_send_more_than_liquid_balance_changes_nothing(chain_home: Path) -> None:
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "send", "alice", "bob", str(ALICE_FUNDS + 1)))
    assert "spendable balance" in line and str(ALICE_FUNDS) in line
    assert chain_snapshot(chain_home) == before


def test_pending_spends_count_against_the_balance(chain_home: Path) -> None:
    ok(chain_home, "wallet", "stake", "alice", "600")
    line = error_line(run(chain_home, "wallet", "send", "alice", "bob", "500"))
    assert "spendable balance" in line and "400" in line


def test_stake_from_an_empty_account(chain_home: Path) -> None:
    line = error_line(run(chain_home, "wallet", "stake", "alice", "1", "--account", "1"))
    assert address_of(chain_home, "alice", account=1) in line and "spendable" in line


def test_unstake_more_than_bonded(chain_home: Path) -> None:
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "unstake", "val", str(VAL_BOND + 1)))
    assert "bonded stake" in line and str(VAL_BOND) in line
    assert chain_snapshot(chain_home) == before
    line = error_line(run(chain_home, "wallet", "unstake", "alice", "1"))
    assert "bonded stake" in line


def test_the_only_validator_cannot_unstake_the_chain_to_a_stop(chain_home: Path) -> None:
    """val is the one validator: unstaking below min_stake would leave no block ever forgeable
    (its stake and unbonding locked for good). Refused in one line, nothing changed; down to
    min_stake goes through."""
    before = chain_snapshot(chain_home)
    most = VAL_BOND - PARAMS.min_stake
    line = error_line(run(chain_home, "wallet", "unstake", "val", str(most + 1)))
    assert f"below min_stake {PARAMS.min_stake}, and no other validator eligible" in line
    assert f"unstake at most {most}" in line
    assert chain_snapshot(chain_home) == before
    ok(chain_home, "wallet", "unstake", "val", str(most))
    ok(chain_home, "wallet", "propose", "val", "--bpm", "70")
    assert forge(chain_home)["forged"] is True
    assert ok_json(chain_home, "wallet", "show", "val")["bonded"] == PARAMS.min_stake


def test_wrong_password_changes_nothing(chain_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = chain_snapshot(chain_home)
    monkeypatch.setenv("POSCTL_PASSWORD", "not it")
    line = error_line(run(chain_home, "wallet", "send", "alice", "bob", "10"))
    assert "wrong password" in line
    assert chain_snapshot(chain_home) == before


def test_damaged_ciphertext_is_reported_as_damage(chain_home: Path) -> None:
    path = chain_home / "wallets" / "alice.json"
    document = json.loads(path.read_text())
    ciphertext = bytearray(bytes.fromhex(document["ciphertext"]))
    ciphertext[0] ^= 0x01
    document["ciphertext"] = ciphertext.hex()
    path.write_text(json.dumps(document, indent=2, sort_keys=True))
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "stake", "alice", "10"))
    assert "damaged" in line and "wrong password" not in line
    assert chain_snapshot(chain_home) == before


def test_unknown_sender_wallet(chain_home: Path) -> None:
    line = error_line(run(chain_home, "wallet", "send", "nobody", "bob", "10"))
    assert "no wallet named 'nobody'" in line


def test_unknown_recipient_wallet(chain_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")  # refused before the password prompt
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "send", "alice", "nobody", "10"))
    assert "'nobody'" in line and "neither" in line
    assert chain_snapshot(chain_home) == before


def test_malformed_recipient_address_and_bad_checksum(chain_home: Path) -> None:
    bob = address_of(chain_home, "bob")
    typo = bob[:-1] + ("q" if bob[-1] != "q" else "p")
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "send", "alice", typo, "10"))
    assert "checksum" in line
    line = error_line(run(chain_home, "wallet", "send", "alice", "pos1notanaddress", "10"))
    assert "address" in line
    line = error_line(run(chain_home, "wallet", "send", "alice", "bob!", "10"))
    assert "neither" in line
    assert chain_snapshot(chain_home) == before


@pytest.mark.parametrize(
    "args",
    [
        ["send", "alice", "bob", "10"],
        ["stake", "alice", "10"],
        ["unstake", "alice", "10"],
        ["propose", "alice", "--bpm", "70"],
    ],
)
def test_submitting_without_a_chain(home: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")  # proves no password is asked first
    line = error_line(run(home, "wallet", *args))
    assert "no chain" in line and "posctl chain init" in line


# ---- wallet propose --------------------------------------------------------------------------


def test_propose_while_not_bonded(chain_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")  # refused before the password prompt
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "propose", "alice", "--bpm", "70"))
    assert "has 0 bonded, below min_stake 100" in line
    assert "`posctl wallet stake alice AMOUNT`" in line
    assert chain_snapshot(chain_home) == before


def test_propose_with_a_pending_stake_is_still_refused(chain_home: Path) -> None:
    ok(chain_home, "wallet", "stake", "alice", "300")
    line = error_line(run(chain_home, "wallet", "propose", "alice", "--bpm", "70"))
    assert "has 0 bonded" in line


def test_propose_below_min_stake(chain_home: Path) -> None:
    ok(chain_home, "wallet", "stake", "alice", "99")
    ok(chain_home, "wallet", "propose", "val", "--bpm", "70")
    forge(chain_home)
    line = error_line(run(chain_home, "wallet", "propose", "alice", "--bpm", "70"))
    assert "has 99 bonded, below min_stake 100" in line


@pytest.mark.parametrize("bpm", ["19", "251", "0", "-3"])
def test_propose_bpm_out_of_range(chain_home: Path, bpm: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")  # checked before the password
    before = chain_snapshot(chain_home)
    line = error_line(run(chain_home, "wallet", "propose", "val", "--bpm", bpm))
    assert f"bpm {bpm} is out of range" in line and "20 to 250" in line
    assert chain_snapshot(chain_home) == before


@pytest.mark.parametrize("bpm", ["72.5", "fast", "", "1e2"])
def test_propose_bpm_not_an_integer(chain_home: Path, bpm: str) -> None:
    line = error_line(run(chain_home, "wallet", "propose", "val", "--bpm", bpm), status=2)
    assert repr(bpm) in line and "not an integer" in line


def test_propose_needs_bpm(chain_home: Path) -> None:
    result = run(chain_home, "wallet", "propose", "val")
    assert result.exit_code == 2 and "--bpm" in result.stderr


def test_propose_enters_the_lottery_and_wins_the_reward(chain_home: Path) -> None:
    data = ok_json(chain_home, "wallet", "propose", "val", "--bpm", "72")
    assert data["tx"]["kind"] == "bpm" and data["tx"]["bpm"] == 72
    block = forge(chain_home)
    val = address_of(chain_home, "val")
    assert block["validator"] == val
    trace = block["lottery"]["trace"]
    assert [(e["address"], e["bonded"], e["proposed"], e["odds"]) for e in trace] == [(val, VAL_BOND, True, 1.0)]
    assert trace[0]["range"] == [0, VAL_BOND] and 0 <= trace[0]["r"] < VAL_BOND
    assert len(block["vrf_output"]) == 64 and block["vrf_output"] != "0" * 64
    shown = ok_json(chain_home, "wallet", "show", "val")
    assert shown["balance"] == PARAMS.block_reward and shown["bonded"] == VAL_BOND


# ---- the installed posctl, across processes -----------------------------------------------------


def posctl_process(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ, "POSCTL_HOME": str(home), "POSCTL_KDF": "light", "POSCTL_PASSWORD": PASSWORD,
    }
    return subprocess.run(
        [POSCTL, *args], env=env, input=input, capture_output=True, text=True, timeout=60,
    )


def test_subprocess_story_new_stake_propose_forge_show(tmp_path: Path) -> None:
    home = tmp_path / "home"
    created = {}
    for name in ("alice", "val"):
        result = posctl_process(home, "wallet", "new", name, "--words", "12", "--json")
        assert result.returncode == 0, result.stderr
        created[name] = json.loads(result.stdout)
    alice, val = created["alice"]["address"], created["val"]["address"]
    Chain.create(home, GenesisConfig(params=PARAMS, allocations={alice: ALICE_FUNDS}, bonds={val: 100})).close()

    assert posctl_process(home, "wallet", "stake", "alice", "400").returncode == 0
    refused = posctl_process(home, "wallet", "propose", "alice", "--bpm", "80")
    assert refused.returncode == 1 and "below min_stake" in refused.stderr
    assert posctl_process(home, "wallet", "propose", "val", "--bpm", "70").returncode == 0
    assert forge(home)["validator"] == val  # the only eligible proposer in block 1

    proposal = posctl_process(home, "wallet", "propose", "alice", "--bpm", "80", "--json")
    assert proposal.returncode == 0, proposal.stderr
    assert json.loads(proposal.stdout)["tx"]["bpm"] == 80
    assert forge(home)["validator"] == alice  # now bonded 400: the only proposer in block 2

    shown = posctl_process(home, "wallet", "show", "alice", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["bonded"] == 400
    assert data["balance"] == ALICE_FUNDS - 400 + PARAMS.block_reward
    assert data["nonce"] == 2
    text = posctl_process(home, "wallet", "show", "alice").stdout
    assert "400" in text and str(ALICE_FUNDS - 400 + PARAMS.block_reward) in text


def test_subprocess_recover_from_a_pipe_and_errors_are_one_line(tmp_path: Path) -> None:
    made = json.loads(posctl_process(tmp_path / "a", "wallet", "new", "carol", "--json").stdout)
    recovered = posctl_process(tmp_path / "b", "wallet", "recover", "carol", "--json", input=made["mnemonic"])
    assert recovered.returncode == 0, recovered.stderr
    assert json.loads(recovered.stdout)["address"] == made["address"]
    refused = posctl_process(tmp_path / "b", "wallet", "stake", "carol", "10")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith("error: no chain")


# ---- found by a user-level review ------------------------------------------------------------


def test_recover_with_passphrase_needs_the_passphrase_line(tmp_path: Path) -> None:
    first = ok_json(tmp_path / "a", "wallet", "new", "carol", "--words", "12")
    line = error_line(run(tmp_path / "b", "wallet", "recover", "carol", "--passphrase", input=first["mnemonic"] + "\n"))
    # the whole line, so no word of the phrase is in it (a word test would trip on "such", "thing"…)
    assert line == ("error: --passphrase reads the BIP-39 passphrase from the line after the phrase, and stdin "
                    "has no such line: nothing was written")
    assert not (tmp_path / "b" / "wallets" / "carol.json").exists()
    with_pass = ok_json(tmp_path / "c", "wallet", "recover", "carol", "--passphrase",
                        input=first["mnemonic"] + "\nextra words\n")
    assert with_pass["address"] != first["address"]  # a passphrase makes another wallet


def test_new_with_passphrase_reads_it_from_stdin_when_scripted(tmp_path: Path) -> None:
    created = ok_json(tmp_path / "a", "wallet", "new", "dave", "--words", "12", "--passphrase", input="s3cret\n")
    assert created["passphrase"] is True
    again = ok_json(tmp_path / "b", "wallet", "recover", "dave", "--passphrase",
                    input=created["mnemonic"] + "\ns3cret\n")
    assert again["address"] == created["address"]
    line = error_line(run(tmp_path / "c", "wallet", "new", "erin", "--passphrase", input=""))
    assert "no such line" in line


@pytest.mark.parametrize("name", ["ab\n", "-x", "_x"])
def test_names_that_would_mislead_are_refused(tmp_path: Path, name: str) -> None:
    line = error_line(run(tmp_path / "h", "wallet", "new", "--", name))
    assert "invalid wallet name" in line
    assert not (tmp_path / "h" / "wallets").exists() or not list((tmp_path / "h" / "wallets").iterdir())


def test_names_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    ok(tmp_path / "h", "wallet", "new", "alice", "--words", "12")
    line = error_line(run(tmp_path / "h", "wallet", "new", "Alice", "--words", "12"))
    assert "only in case" in line


def test_password_file_that_is_not_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")
    bad = tmp_path / "pw"
    bad.write_bytes(b"\xff\xfe\x00")
    line = error_line(run(tmp_path / "h", "--password-file", str(bad), "wallet", "new", "zed"))
    assert "not UTF-8" in line


def test_a_refused_new_wallet_leaves_no_empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSCTL_PASSWORD")
    line = error_line(run(tmp_path / "fresh", "wallet", "new", "zed"))
    assert "a password is needed" in line
    assert not (tmp_path / "fresh").exists()


def test_out_signs_without_submitting_and_the_file_is_what_post_txs_takes(chain_home: Path, tmp_path: Path) -> None:
    from ledger.chain.mempool import decode_submission

    out = tmp_path / "tx.json"
    data = ok_json(chain_home, "wallet", "send", "alice", "bob", "25", "--out", str(out))
    assert data["submitted"] is False and data["file"] == str(out)
    with Chain.open(chain_home) as chain:
        assert chain.mempool.count == 0  # nothing was submitted
        tx = decode_submission(out.read_bytes())  # canonical bytes, exactly what POST /txs takes
        assert tx.id_hex == data["tx_id"] and tx.amount == 25
        chain.submit(tx)
        assert chain.tx(tx.tx_id).status == "pending"
    line = error_line(run(chain_home, "wallet", "stake", "alice", "5", "--out", str(out)))
    assert "already exists" in line


def test_nonce_signs_several_txs_ahead_to_be_broadcast_in_order(chain_home: Path, tmp_path: Path) -> None:
    """Each `--out` took the account's next nonce, so two signed in a row had the same one and
    only one could ever be submitted. `--nonce N` signs ahead: N, N+1, … broadcast in order."""
    files = [tmp_path / f"tx{n}.json" for n in range(3)]
    for n, path in enumerate(files):
        data = ok_json(chain_home, "wallet", "send", "alice", "bob", str(10 + n), "--nonce", str(n), "--out", str(path))
        assert data["tx"]["nonce"] == n
    line = error_line(run(chain_home, "chain", "submit", str(files[2])))
    assert "nonce 2 leaves a gap: the next nonce" in line  # out of order: refused, nothing changed
    ok(chain_home, "chain", "submit", *map(str, files))
    assert ok_json(chain_home, "wallet", "show", "alice")["next_nonce"] == 3
    assert "is not in the range" in error_line(run(chain_home, "wallet", "send", "alice", "bob", "1", "--nonce", "-1"), 2)
