"""Wallet files are editable: a wallet name is never resolved to an address the file's owner
did not make. Real ``posctl`` processes on real homes; the damage is done to the files by hand,
as an attacker (or an accident) would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.facade import Chain
from tests.faultkit import no_traceback, one_error_line, posctl
from wallet.keystore import Keystore

PASSWORD = "correct horse battery staple"
LIGHT = {"POSCTL_KDF": "light", "POSCTL_PASSWORD": PASSWORD}
UNLOCK = {"POSCTL_PASSWORD": PASSWORD}
"""Unlocking without ``POSCTL_KDF=light`` set: what a user of a light wallet later does."""


def run(home: Path, *args: str, **extra: str):  # type: ignore[no-untyped-def]
    result = posctl(home, *args, **extra)
    no_traceback(result)
    return result


def ok(home: Path, *args: str, **extra: str):  # type: ignore[no-untyped-def]
    result = run(home, *args, **extra)
    assert result.returncode == 0, result.stderr
    return result


def ok_json(home: Path, *args: str, **extra: str) -> Any:
    return json.loads(ok(home, *args, "--json", **extra).stdout)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Light wallets alice (funded), bob (bonded) and carol, and a chain."""
    home = tmp_path_factory.mktemp("integrity") / "home"
    for name in ("alice", "bob", "carol"):
        ok(home, "wallet", "new", name, "--words", "12", **LIGHT)
    ok(home, "chain", "init", "--chain-id", "posctl-integrity", "--alloc", "alice=1000", "--bond", "bob=500")
    return home


@pytest.fixture
def home(template, tmp_path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(template, copy)
    return copy


def wallet_file(home: Path, name: str) -> Path:
    return home / "wallets" / f"{name}.json"


def edit(home: Path, name: str, change) -> None:  # type: ignore[no-untyped-def]
    path = wallet_file(home, name)
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def pending(home: Path) -> int:
    with Chain.open(home) as chain:
        return chain.mempool.count


def true_address(home: Path, name: str) -> str:
    return Keystore(home / "wallets").load(name).address(0, 0)


# ---- a tampered recipient ---------------------------------------------------------------------


def test_a_substituted_xpub_refuses_the_send_naming_the_wallet_file(home):
    bob_xpub = json.loads(wallet_file(home, "bob").read_text())["accounts"]["0"]
    edit(home, "carol", lambda doc: doc["accounts"].__setitem__("0", bob_xpub))
    assert Keystore(home / "wallets").load("carol").address(0, 0) == true_address(home, "bob")  # it would pay bob

    result = run(home, "wallet", "send", "alice", "carol", "7", **UNLOCK)
    assert result.returncode == 1
    line = one_error_line(result)
    assert str(wallet_file(home, "carol")) in line and "was changed" in line, line
    assert result.stdout == ""
    assert pending(home) == 0

    # the same name anywhere a recipient is resolved: genesis allocations too
    other = home.parent / "other"
    shutil.copytree(home / "wallets", other / "wallets")
    init = run(other, "chain", "init", "--alloc", "carol=5", "--bond", "bob=500")
    assert init.returncode == 1 and str(other / "wallets" / "carol.json") in one_error_line(init)
    assert not (other / "chain").exists()

    # and wallet list marks it
    rows = {row["name"]: row for row in ok_json(home, "wallet", "list")}
    assert rows["carol"]["integrity"] == "mismatch" and rows["bob"]["integrity"] == "ok"
    assert "[TAMPERED" in ok(home, "wallet", "list").stdout

    # nor are its keys handed out: they printed bob's address and xpub as carol's, without a word
    for args in (("wallet", "addresses", "carol", "--count", "2"), ("wallet", "export", "carol")):
        refused = run(home, *args)
        assert refused.returncode == 1 and "was changed" in one_error_line(refused) and refused.stdout == ""


def test_an_intact_recipient_is_paid_by_name(home):
    view = ok_json(home, "wallet", "send", "alice", "carol", "7", **UNLOCK)
    assert view["tx"]["to"] == true_address(home, "carol")
    assert pending(home) == 1


def test_verify_cannot_bless_a_substituted_xpub(home):
    bob_xpub = json.loads(wallet_file(home, "bob").read_text())["accounts"]["0"]
    edit(home, "carol", lambda doc: doc["accounts"].__setitem__("0", bob_xpub))
    before = wallet_file(home, "carol").read_bytes()
    result = run(home, "wallet", "verify", "carol", **UNLOCK)
    assert result.returncode == 1
    assert str(wallet_file(home, "carol")) in one_error_line(result)
    assert wallet_file(home, "carol").read_bytes() == before


# ---- untagged (older) wallets -------------------------------------------------------------------


def test_an_untagged_recipient_is_refused_with_what_to_do(home):
    edit(home, "carol", lambda doc: doc.pop("public_mac"))
    result = run(home, "wallet", "send", "alice", "carol", "7", **UNLOCK)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "no integrity tag" in line and "posctl wallet verify carol" in line, line
    assert pending(home) == 0
    rows = {row["name"]: row for row in ok_json(home, "wallet", "list")}
    assert rows["carol"]["integrity"] == "untagged"


def test_wallet_verify_tags_after_the_password(home):
    edit(home, "carol", lambda doc: doc.pop("public_mac"))

    wrong = run(home, "wallet", "verify", "carol", POSCTL_PASSWORD="not the password")
    assert wrong.returncode == 1 and "wrong password" in one_error_line(wrong)
    assert "public_mac" not in json.loads(wallet_file(home, "carol").read_text())

    view = ok_json(home, "wallet", "verify", "carol", **LIGHT)
    assert view["integrity"] == "ok" and view["address"] == true_address(home, "carol")
    assert "public_mac" in json.loads(wallet_file(home, "carol").read_text())

    sent = ok_json(home, "wallet", "send", "alice", "carol", "7", **UNLOCK)
    assert sent["tx"]["to"] == true_address(home, "carol")
    assert pending(home) == 1


def test_a_missing_keystore_key_is_refused_with_what_to_do(home):
    (home / "wallets" / ".keystore-key").unlink()
    result = run(home, "wallet", "send", "alice", "carol", "7", **UNLOCK)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "keystore key" in line and "posctl wallet verify carol" in line, line
    assert pending(home) == 0
    # wallet list called every wallet TAMPERED: nothing was edited, the key to check them is gone
    rows = {row["name"]: row for row in ok_json(home, "wallet", "list")}
    assert {row["integrity"] for row in rows.values()} == {"no-key"}
    listed = ok(home, "wallet", "list").stdout
    assert "TAMPERED" not in listed and "[unchecked: the keystore key is missing; run `posctl wallet verify carol`]" in listed


def test_a_wallet_copied_from_another_home_needs_verify(home, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    ok(elsewhere, "wallet", "new", "dora", "--words", "12", **LIGHT)
    shutil.copy2(wallet_file(elsewhere, "dora"), wallet_file(home, "dora"))
    refused = run(home, "wallet", "send", "alice", "dora", "3", **UNLOCK)
    assert refused.returncode == 1 and "posctl wallet verify dora" in one_error_line(refused)
    ok(home, "wallet", "verify", "dora", **LIGHT)
    assert ok_json(home, "wallet", "send", "alice", "dora", "3", **UNLOCK)["tx"]["to"] == true_address(home, "dora")


# ---- light key stretching ------------------------------------------------------------------------


def test_light_wallets_are_marked_in_list_and_show(home):
    ok(home, "wallet", "new", "strong", "--words", "12", POSCTL_PASSWORD=PASSWORD)  # default scrypt

    rows = {row["name"]: row for row in ok_json(home, "wallet", "list")}
    assert rows["carol"]["light_kdf"] is True and rows["strong"]["light_kdf"] is False
    text = {line.split()[0]: line for line in ok(home, "wallet", "list").stdout.splitlines()}
    assert "LIGHT" in text["carol"] and "LIGHT" not in text["strong"]

    shown = ok_json(home, "wallet", "show", "carol")
    assert shown["light_kdf"] is True and "LIGHT" in shown["kdf"]
    assert ok_json(home, "wallet", "show", "strong")["light_kdf"] is False
    assert "LIGHT" in ok(home, "wallet", "show", "carol").stdout
    assert "LIGHT" not in ok(home, "wallet", "show", "strong").stdout


def test_every_unlock_of_a_light_wallet_warns(home):
    for _ in range(2):
        result = ok(home, "wallet", "verify", "carol", **UNLOCK)
        assert "warning: wallet 'carol' uses light scrypt" in result.stderr
    sent = ok(home, "wallet", "send", "alice", "bob", "1", "--json", **UNLOCK)
    assert "warning: wallet 'alice' uses light scrypt" in sent.stderr
    json.loads(sent.stdout)  # the warning stays off stdout


def test_show_of_a_tampered_wallet_warns(home):
    bob_xpub = json.loads(wallet_file(home, "bob").read_text())["accounts"]["0"]
    edit(home, "carol", lambda doc: doc["accounts"].__setitem__("0", bob_xpub))
    shown = ok(home, "wallet", "show", "carol", "--json")
    assert json.loads(shown.stdout)["integrity"] == "mismatch"
    assert shown.stderr.startswith("warning: ") and str(wallet_file(home, "carol")) in shown.stderr
    assert json.loads(ok(home, "wallet", "show", "bob", "--json").stdout)["integrity"] == "ok"
    assert "warning" not in ok(home, "wallet", "show", "bob").stderr
