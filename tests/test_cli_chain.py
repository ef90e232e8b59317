"""``posctl chain``: every command and every user mistake, through CliRunner and real processes.

Addresses come from random private keys (ledger.crypto.secp256k1) and transactions are signed with
ledger.consensus.transactions.sign_transaction and submitted through the Chain facade between CLI calls,
so these tests do not depend on the wallet commands. Everything runs on real LevelDB.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import posctl
from cli.render import render_account
from ledger.storage import schema
from ledger.chain.facade import Chain
from ledger.storage.store import LevelDBStore
from ledger.consensus.transactions import Transaction
from tests import ledgerkit
from tests.ledgerkit import Key, make_key, make_proposal

CHAIN_ID = "posctl-clitest"


def make_tx(key: ledgerkit.Key, nonce: int, kind: str, **fields: Any) -> Transaction:
    return ledgerkit.make_tx(key, nonce, kind, chain_id=CHAIN_ID, **fields)
ROOT = Path(__file__).resolve().parent.parent


def submit(home: Path, *txs: Transaction) -> list[str]:
    with Chain.open(home) as chain:
        return [chain.submit(tx).hex() for tx in txs]


def run(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env=env).invoke(posctl, ["--home", str(home), *args])


def ok(home: Path, *args: str) -> Result:
    result = run(home, *args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result


def as_json(home: Path, *args: str) -> Any:
    return json.loads(ok(home, *args, "--json").stdout)


def assert_error(result: Result, code: int, *fragments: str) -> None:
    """One line on stderr (two for click usage errors, plus the usage line), the right status,
    no traceback and nothing on stdout."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment.lower() in result.stderr.lower(), (fragment, result.stderr)


@pytest.fixture
def keys() -> list[Key]:
    return [make_key(f"cli-chain-{i}") for i in range(3)]


@pytest.fixture
def home(tmp_path: Path, keys: list[Key]) -> Path:
    """A chain: three funded accounts, the first two bonded (300 and 100), unbonding 2 blocks."""
    home = tmp_path / "home"
    a, b, c = keys
    ok(
        home, "chain", "init", "--chain-id", CHAIN_ID,
        "--alloc", f"{a.address}=1000", "--alloc", f"{b.address}=1000", "--alloc", f"{c.address}=500",
        "--bond", f"{a.address}=300", "--bond", f"{b.address}=100",
        "--param", "unbonding_blocks=2",
    )
    return home


def proposal(home: Path, key: Key, nonce: int, bpm: int) -> Transaction:
    """A proposal for the chain's next block (reads the seed with the database closed after)."""
    with Chain.open(home) as chain:
        height, seed = chain.height + 1, chain.next_seed
    return make_proposal(key, nonce, height, seed, bpm, chain_id=CHAIN_ID)


def forge_round(home: Path, keys: list[Key], nonces: dict[str, int], bpm: int = 70) -> dict[str, Any]:
    """Both validators propose; forge through the CLI; return the block's JSON."""
    with Chain.open(home) as chain:
        height, seed = chain.height + 1, chain.next_seed
    txs = []
    for key in keys[:2]:
        txs.append(make_proposal(key, nonces.get(key.address, 0), height, seed, bpm, chain_id=CHAIN_ID))
        nonces[key.address] = nonces.get(key.address, 0) + 1
    submit(home, *txs)
    return as_json(home, "chain", "forge")


# ---- init --------------------------------------------------------------------------------------


def test_init_creates_the_chain_and_reports_it(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    a, b, _ = keys
    result = ok(home, "chain", "init", "--alloc", f"{a.address}=1000", "--bond", f"{a.address}=200",
                "--bond", f"{b.address}=150", "--param", "block_reward=7")
    assert re.search(r"Created chain posctl-[0-9a-f]{6} ", result.stdout)  # a fresh id per chain
    assert "supply      1350 = 1000 liquid + 350 bonded" in result.stdout
    with Chain.open(home) as chain:
        assert chain.height == 0
        assert chain.params.block_reward == 7
        assert chain.account(a.address).balance == 1000
        assert chain.account(a.address).bonded == 200
        assert chain.account(b.address).bonded == 150


def test_init_json(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    a = keys[0]
    view = as_json(home, "chain", "init", "--chain-id", "demo-7", "--bond", f"{a.address}=100",
                   "--param", "min_stake=50", "--param", "bpm_min=30", "--param", "bpm_max=200",
                   "--param", "max_block_txs=10", "--param", "unbonding_blocks=4")
    assert view["chain_id"] == "demo-7"
    assert view["height"] == 0
    assert view["bonds"] == {a.address: 100}
    assert view["params"]["min_stake"] == 50 and view["params"]["bpm_max"] == 200
    assert view["params"]["max_block_txs"] == 10 and view["params"]["unbonding_blocks"] == 4
    assert len(view["genesis_hash"]) == 64
    assert view["timestamp"] > 1_700_000_000  # now, not zero


def test_init_resolves_wallet_names(tmp_path: Path, keys: list[Key]) -> None:
    from wallet.keystore import Keystore
    from wallet.wallet_file import ScryptParams

    home = tmp_path / "h"
    wallet, _ = Keystore(home / "wallets").create("alice", "pw", kdf=ScryptParams.light(), words=12)
    view = as_json(home, "chain", "init", "--alloc", "alice=500", "--bond", "alice=100",
                   "--alloc", f"{keys[0].address}=5")
    assert view["allocations"] == dict(sorted({wallet.address(0, 0): 500, keys[0].address: 5}.items()))
    assert view["bonds"] == {wallet.address(0, 0): 100}
    text = ok(home, "chain", "show").stdout
    assert "Block 0" in text


def test_init_from_genesis_file_plus_options(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    a, b, _ = keys
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({
        "chain_id": "from-file", "params": {"min_stake": 10}, "timestamp": 1_700_000_000,
        "allocations": {a.address: 40}, "bonds": {a.address: 10},
    }))
    # An account given twice (here in the file and again as an option) is most likely a typo:
    # refused, nothing created.
    twice = run(home, "chain", "init", "--genesis", str(genesis), "--alloc", f"{a.address}=2")
    assert_error(twice, 1, "is given twice")
    assert not Chain.exists(home)
    view = as_json(home, "chain", "init", "--genesis", str(genesis), "--alloc", f"{b.address}=60")
    assert view["chain_id"] == "from-file"
    assert view["timestamp"] == 1_700_000_000
    assert view["params"]["min_stake"] == 10
    assert view["allocations"] == dict(sorted({a.address: 40, b.address: 60}.items()))


@pytest.mark.parametrize("listed", [0, 1, 30])
def test_init_json_streams_the_allocations_in_the_usual_layout(tmp_path: Path, keys: list[Key], listed: int) -> None:
    """--json lists every allocation, written as it is read back from the chain (a million would
    be 50 MB), in the same layout as every other --json output."""
    from tests.test_scale import addresses

    allocations = {address: 1000 + i for i, address in enumerate(addresses(listed, b"init-json"))}
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"allocations": allocations, "bonds": {keys[0].address: 100}}))
    result = ok(tmp_path / "h", "chain", "init", "--genesis", str(genesis), "--json")
    view = json.loads(result.stdout)
    assert result.stdout == json.dumps(view, indent=2, sort_keys=True) + "\n"
    assert view["allocations"] == dict(sorted(allocations.items()))
    assert view["allocation_count"] == listed


def test_init_refuses_an_existing_chain(home: Path, keys: list[Key]) -> None:
    before = as_json(home, "chain", "status")
    result = run(home, "chain", "init", "--bond", f"{keys[2].address}=500")
    assert_error(result, 1, "already exists")
    assert as_json(home, "chain", "status") == before


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--alloc", "nobody", "WHO=AMOUNT"),
        ("--alloc", "=100", "WHO=AMOUNT"),
        ("--alloc", "X=", "WHO=AMOUNT"),
        ("--alloc", "{addr}=abc", "whole number"),
        ("--alloc", "{addr}=1.5", "whole number"),
        ("--alloc", "{addr}=1_000", "whole number"),
        ("--alloc", "{addr}=10 tokens", "whole number"),
        ("--alloc", "{addr}=0", "out of range"),
        ("--alloc", "{addr}=-5", "out of range"),
        ("--bond", "{addr}=9223372036854775808", "out of range"),
        ("--bond", "{addr}=100000000000000000000000", "out of range"),
        ("--param", "min_stake", "KEY=VALUE"),
        ("--param", "no_such_param=1", "unknown parameter"),
        ("--param", "min_stake=lots", "whole number"),
        ("--param", "min_stake=1.5", "whole number"),
    ],
)
def test_init_usage_errors_exit_2(tmp_path: Path, keys: list[Key], option: str, value: str, fragment: str) -> None:
    home = tmp_path / "h"
    value = value.format(addr=keys[0].address)
    result = run(home, "chain", "init", "--bond", f"{keys[0].address}=100", option, value)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert fragment.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert not Chain.exists(home)


def _bad_checksum(address: str) -> str:
    last = address[-1]
    return address[:-1] + ("q" if last != "q" else "p")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--alloc", "ghost=100"], "genesis account 'ghost' is neither a pos1… address nor a wallet"),
        (["--alloc", "pos1notanaddress=100"], ""),
        (["--alloc", "BAD_CHECKSUM=100"], "checksum"),
        (["--alloc", "bad.name=100"], "is neither a pos1… address nor a wallet"),
        (["--param", "min_stake=0"], "min_stake"),
        (["--param", "bpm_min=300"], "bpm_min"),
        (["--param", "chain_id=Not Valid"], "chain id"),
        (["--chain-id", "UPPER"], "chain id"),
    ],
)
def test_init_ledger_and_wallet_errors_exit_1(tmp_path: Path, keys: list[Key], args: list[str], fragment: str) -> None:
    home = tmp_path / "h"
    args = [arg.replace("BAD_CHECKSUM", _bad_checksum(keys[1].address)) for arg in args]
    result = run(home, "chain", "init", "--bond", f"{keys[0].address}=100", *args)
    assert_error(result, 1, fragment)
    assert not Chain.exists(home)


def test_init_chain_id_conflict_is_a_usage_error(tmp_path: Path, keys: list[Key]) -> None:
    result = run(tmp_path / "h", "chain", "init", "--bond", f"{keys[0].address}=100",
                 "--chain-id", "one", "--param", "chain_id=two")
    assert result.exit_code == 2 and "disagree" in result.stderr
    assert not Chain.exists(tmp_path / "h")


def test_init_needs_a_validator(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    result = run(home, "chain", "init", "--alloc", f"{keys[0].address}=100")
    assert_error(result, 1, "at least one validator")
    assert not Chain.exists(home)
    result = run(home, "chain", "init", "--bond", f"{keys[0].address}=99")  # below min_stake 100
    assert_error(result, 1, "min_stake")


def test_init_bad_genesis_file(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{not json")
    assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "not valid JSON")
    genesis.write_text(json.dumps({"bonds": {keys[0].address: 100}, "surprise": 1}))
    assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "surprise")
    assert_error(run(home, "chain", "init", "--genesis", str(tmp_path / "missing.json")), 1, "cannot read")
    for amount in ("100", 1.5, True, None):
        genesis.write_text(json.dumps({"bonds": {keys[0].address: amount}}))
        assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "whole number")
    genesis.write_text(json.dumps({"bonds": [keys[0].address]}))
    assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "must map")
    genesis.write_text(json.dumps({"params": 5, "bonds": {keys[0].address: 100}}))
    assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "params")
    genesis.write_text("[1, 2]")
    assert_error(run(home, "chain", "init", "--genesis", str(genesis)), 1, "JSON object")
    assert not Chain.exists(home)


def test_init_home_not_writable(tmp_path: Path, keys: list[Key]) -> None:
    if os.geteuid() == 0:  # root ignores permission bits: use a path below a regular file instead
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        home = blocker / "sub"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        home = locked / "home"
    result = run(home, "chain", "init", "--bond", f"{keys[0].address}=100")
    assert_error(result, 1, "home")
    assert not Chain.exists(home)


# ---- chain not initialised ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["chain", "show"],
        ["chain", "show", "3"],
        ["chain", "status"],
        ["chain", "validators"],
        ["chain", "forge"],
        ["chain", "verify"],
        ["chain", "tx", "ab" * 32],
        ["chain", "status", "--json"],
    ],
)
def test_commands_without_a_chain(tmp_path: Path, args: list[str]) -> None:
    home = tmp_path / "empty"
    result = run(home, *args)
    assert_error(result, 1, "chain init")
    assert not home.exists() or not Chain.exists(home)


# ---- show --------------------------------------------------------------------------------------


def test_show_genesis_text(home: Path) -> None:
    text = ok(home, "chain", "show").stdout
    assert text.startswith("Block 0\n")
    assert "validator   none (genesis)" in text
    assert "none (genesis has no draw)" in text


def test_show_block_with_lottery_text_and_json(home: Path, keys: list[Key]) -> None:
    a, b, c = keys
    transfer = make_tx(c, 0, "transfer", to=a.address, amount=25)
    submit(home, transfer)
    block = forge_round(home, keys, {})
    assert block["forged"] is True and block["height"] == 1

    view = as_json(home, "chain", "show")
    for field in ("height", "hash", "prev_hash", "timestamp", "validator", "state_root", "txs", "lottery"):
        assert field in view
    assert view["height"] == 1
    assert view["lottery"]["winner"] == view["validator"]
    assert len(view["lottery"]["seed"]) == 64
    trace = view["lottery"]["trace"]
    assert view["lottery"]["eligible_total"] == 400 and trace[0]["remaining"] == 400
    first = trace[0]  # both proposed, so the first drawn wins
    assert first["proposed"] is True and first["address"] == view["validator"] and len(trace) == 1
    assert first["bonded"] == {a.address: 300, b.address: 100}[first["address"]]
    assert first["range"][1] - first["range"][0] == first["bonded"]
    assert first["range"][0] <= first["r"] < first["range"][1]
    assert len(view["seed"]) == 64 and len(view["vrf_output"]) == 64 and view["evidence"] == []
    kinds = {tx["kind"]: tx for tx in view["txs"]}
    assert kinds["transfer"]["to"] == a.address and kinds["transfer"]["amount"] == 25
    assert kinds["bpm"]["bpm"] == 70
    for tx in view["txs"]:
        assert {"id", "kind", "sender", "nonce"} <= tx.keys()

    text = ok(home, "chain", "show").stdout
    assert text.startswith("Block 1\n")
    assert f"hash        {view['hash']}" in text
    odds = "300/400 = 75.0%" if first["bonded"] == 300 else "100/400 = 25.0%"
    assert odds in text and "◀ proposed: winner" in text and f"[{first['range'][0]}, {first['range'][1]})" in text
    assert "seed" in text and "vrf output" in text
    assert "transfer" in text and f"25 → {a.address}" in text
    assert "Z\n" in text  # UTC ISO time


def test_show_by_height_hash_and_last(home: Path, keys: list[Key]) -> None:
    nonces: dict[str, int] = {}
    blocks = [forge_round(home, keys, nonces) for _ in range(3)]
    assert as_json(home, "chain", "show", "2")["hash"] == blocks[1]["hash"]
    assert as_json(home, "chain", "show", blocks[0]["hash"])["height"] == 1
    assert as_json(home, "chain", "show", blocks[0]["hash"].upper())["height"] == 1
    assert as_json(home, "chain", "show", "0")["height"] == 0
    last = as_json(home, "chain", "show", "--last", "2")
    assert [b["height"] for b in last] == [3, 2]
    everything = as_json(home, "chain", "show", "--last", "50")
    assert [b["height"] for b in everything] == [3, 2, 1, 0]
    text = ok(home, "chain", "show", "--last", "2").stdout
    assert text.index("Block 3") < text.index("Block 2")


@pytest.mark.parametrize("ref", ["7", "999999999999", "ff" * 32, "xyz", "12ab", "-1"])
def test_show_missing_block(home: Path, ref: str) -> None:
    result = run(home, "chain", "show", "--", ref) if ref.startswith("-") else run(home, "chain", "show", ref)
    assert_error(result, 1)
    assert ("no block" in result.stderr) or ("neither a block height" in result.stderr)


def test_show_usage_errors(home: Path) -> None:
    assert run(home, "chain", "show", "--last", "0").exit_code == 2
    assert run(home, "chain", "show", "--last", "x").exit_code == 2
    assert run(home, "chain", "show", "1", "--last", "2").exit_code == 2


# ---- tx ----------------------------------------------------------------------------------------


def test_tx_pending_then_included(home: Path, keys: list[Key]) -> None:
    a, _, c = keys
    (tx_id,) = submit(home, make_tx(c, 0, "transfer", to=a.address, amount=5))
    pending = as_json(home, "chain", "tx", tx_id)
    assert pending["status"] == "pending" and "height" not in pending
    assert pending["tx"]["id"] == tx_id and pending["tx"]["amount"] == 5
    assert "pending in the mempool" in ok(home, "chain", "tx", tx_id).stdout

    forge_round(home, keys, {})
    included = as_json(home, "chain", "tx", tx_id.upper())
    assert included["status"] == "included" and included["height"] == 1
    assert included["tx"]["to"] == a.address
    text = ok(home, "chain", "tx", tx_id).stdout
    assert "included in block 1" in text and "transfer" in text


@pytest.mark.parametrize("bad", ["abc", "zz" * 32, "ab" * 31, "ab" * 33])
def test_tx_malformed_id(home: Path, bad: str) -> None:
    assert_error(run(home, "chain", "tx", bad), 1, "64 hex digits")


def test_tx_unknown_id(home: Path) -> None:
    assert_error(run(home, "chain", "tx", "ab" * 32), 1, "no transaction")


# ---- status, validators, forge -----------------------------------------------------------------


def test_status(home: Path, keys: list[Key]) -> None:
    view = as_json(home, "chain", "status")
    for field in ("chain_id", "height", "tip", "mempool", "validators", "supply", "bonded"):
        assert field in view
    assert view["chain_id"] == CHAIN_ID
    assert view["supply"] == 2900 and view["bonded"] == 400 and view["validators"] == 2
    assert view["supply"] == view["liquid"] + view["bonded"] + view["unbonding"]
    submit(home, make_tx(keys[2], 0, "stake", amount=100))
    assert as_json(home, "chain", "status")["mempool"] == 1
    text = ok(home, "chain", "status").stdout
    assert f"Chain {CHAIN_ID} at height 0" in text
    assert "supply      2900 = 2500 liquid + 400 bonded + 0 unbonding" in text
    assert "mempool     1 pending" in text


def test_validators(home: Path, keys: list[Key]) -> None:
    a, b, _ = keys
    nonces: dict[str, int] = {}
    for _ in range(4):
        forge_round(home, keys, nonces)
    rows = as_json(home, "chain", "validators")
    assert [row["address"] for row in rows] == [a.address, b.address]
    for row in rows:
        assert {"address", "bonded", "share", "blocks_won"} <= row.keys()
    assert rows[0]["share"] == pytest.approx(0.75)
    assert sum(row["blocks_won"] for row in rows) == 4
    text = ok(home, "chain", "validators").stdout
    assert "75.0%" in text and "25.0%" in text
    assert "expected" in text and "actual" in text and "4 blocks forged" in text


def test_forge_without_proposals_is_not_an_error(home: Path) -> None:
    result = ok(home, "chain", "forge")
    assert result.stdout.startswith("no block: ")
    view = as_json(home, "chain", "forge")
    assert view["forged"] is False and view["reason"]
    assert as_json(home, "chain", "status")["height"] == 0


def test_forge_text(home: Path, keys: list[Key]) -> None:
    submit(home, proposal(home, keys[0], 0, 80))
    text = ok(home, "chain", "forge").stdout
    assert text.startswith(f"Forged block 1: {keys[0].address} won the lottery")
    # keys[0] holds 300 of the 400 eligible: drawn first (75%), or second after keys[1] was passed over
    assert "300/400 = 75.0%" in text or ("passed over: no proposal" in text and "300/300 = 100.0%" in text)


def test_unstake_through_lockup_visible_in_status(home: Path, keys: list[Key]) -> None:
    a, b, _ = keys
    nonces = {a.address: 1}
    submit(home, make_tx(a, 0, "unstake", amount=100))
    forge_round(home, keys, nonces)
    status = as_json(home, "chain", "status")
    assert status["unbonding"] == 100 and status["bonded"] == 300
    forge_round(home, keys, nonces)
    forge_round(home, keys, nonces)
    status = as_json(home, "chain", "status")
    assert status["unbonding"] == 0
    assert status["supply"] == status["liquid"] + status["bonded"]


# ---- verify ------------------------------------------------------------------------------------


def test_verify_success(home: Path, keys: list[Key]) -> None:
    nonces: dict[str, int] = {}
    for _ in range(3):
        forge_round(home, keys, nonces)
    result = ok(home, "chain", "verify")
    assert "chain verified: heights 0..3 (4 blocks, 6 txs)" in result.stdout
    assert result.stderr == ""  # the progress bar is drawn only on a terminal
    view = as_json(home, "chain", "verify")
    assert view["ok"] is True and view["height"] == 3 and view["txs"] == 6


def test_verify_names_the_first_bad_height(home: Path, keys: list[Key]) -> None:
    nonces: dict[str, int] = {}
    for _ in range(3):
        forge_round(home, keys, nonces)
    store = LevelDBStore.open(home / "chain")
    try:
        store.write({schema.make_block_key(2): store.get(schema.make_block_key(1))})
    finally:
        store.close()
    result = run(home, "chain", "verify")
    assert_error(result, 1, "at height 2")


def test_verify_needs_the_database_itself(home: Path) -> None:
    with Chain.open(home):
        result = run(home, "chain", "verify")
    assert_error(result, 1, "in use by another process")


# ---- render_account (shared with `wallet show`) -------------------------------------------------


def test_render_account() -> None:
    view = {
        "address": "pos1xyz", "balance": 930, "bonded": 100,
        "unbonding": [{"amount": 40, "release_height": 12}], "nonce": 7, "pending": 2, "next_nonce": 9,
        "height": 10, "public_key": "02ab", "xpub": "xpub6abc",
    }
    text = render_account(view, "bob")
    assert text.startswith("Wallet bob")
    assert "930 liquid" in text and "100 staked" in text
    assert "released at height 12 (in 2 blocks)" in text
    assert "2 pending (next nonce 9)" in text
    bare = render_account({"address": "pos1xyz", "balance": 0, "bonded": 0, "unbonding": [], "nonce": 0})
    assert bare.startswith("Account") and "unbonding   none" in bare


# ---- real processes ----------------------------------------------------------------------------


def posctl_command() -> list[str]:
    found = shutil.which("posctl")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "cli.main"]


def process(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([*posctl_command(), "--home", str(home), *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_installed_posctl_resumes_after_restart(tmp_path: Path, keys: list[Key]) -> None:
    home = tmp_path / "h"
    a, b, _ = keys
    done = process(home, "chain", "init", "--chain-id", CHAIN_ID, "--bond", f"{a.address}=300",
                   "--bond", f"{b.address}=100", "--alloc", f"{b.address}=10")
    assert done.returncode == 0, done.stderr
    submit(home, proposal(home, a, 0, 60), make_tx(b, 0, "transfer", to=a.address, amount=3))
    forged = process(home, "chain", "forge", "--json")
    assert forged.returncode == 0, forged.stderr
    block = json.loads(forged.stdout)
    assert block["height"] == 1 and block["validator"] == a.address

    status = process(home, "chain", "status", "--json")  # a new process on the same home
    assert status.returncode == 0
    view = json.loads(status.stdout)
    assert view["height"] == 1 and view["tip"] == block["hash"]

    verified = process(home, "chain", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "chain verified: heights 0..1" in verified.stdout


def test_installed_posctl_errors_are_one_line(tmp_path: Path) -> None:
    done = process(tmp_path / "nothing", "chain", "status")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    usage = process(tmp_path / "nothing", "chain", "init", "--alloc", "nope")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_chain_commands_go_through_a_running_node(home: Path, keys: list[Key]) -> None:
    """While a node holds the database, reads and forge use its API; init and verify refuse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(ROOT)
    node = subprocess.Popen(
        [*posctl_command(), "--home", str(home), "node", "run", "--listen", "127.0.0.1:0", "--interval", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (home / "node.json").exists():
                status = run(home, "chain", "status", "--json")
                if status.exit_code == 0:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the node did not start")
        assert json.loads(status.stdout)["height"] == 0
        assert ok(home, "chain", "forge").stdout.startswith("no block: ")
        assert as_json(home, "chain", "show")["height"] == 0
        assert as_json(home, "chain", "validators")[0]["address"] == keys[0].address
        assert_error(run(home, "chain", "tx", "ab" * 32), 1, "no transaction")
        assert_error(run(home, "chain", "verify"), 1, "node is running")
        assert_error(run(home, "chain", "init", "--bond", f"{keys[0].address}=100"), 1, "node is running")
    finally:
        node.terminate()
        node.wait(timeout=20)


# ---- found by a user-level review ------------------------------------------------------------


def test_init_refuses_an_account_given_twice(tmp_path: Path, keys: list[Key]) -> None:
    a = keys[0]
    result = run(tmp_path / "h", "chain", "init", "--alloc", f"{a.address}=100", "--alloc",
                 f"{a.address.upper()}=200", "--bond", f"{a.address}=100")
    assert_error(result, 1, "given twice")
    assert not Chain.exists(tmp_path / "h")


@pytest.mark.parametrize("timestamp", [253402300800, 9223372036854775807, 99999999999999999999, -1])
def test_init_refuses_a_genesis_time_out_of_range_and_writes_nothing(tmp_path: Path, keys: list[Key], timestamp: int) -> None:
    genesis = tmp_path / "g.json"
    genesis.write_text(json.dumps({"bonds": {keys[0].address: 100}, "timestamp": timestamp}))
    assert_error(run(tmp_path / "h", "chain", "init", "--genesis", str(genesis)), 1, "timestamp")
    assert not Chain.exists(tmp_path / "h")


@pytest.mark.parametrize("content", [b"\xff", b'{"bonds": {}, "bonds": {}}', b'{"params": {"chain_id": 5}}'])
def test_init_refuses_malformed_genesis_files_in_one_line(tmp_path: Path, content: bytes) -> None:
    genesis = tmp_path / "g.json"
    genesis.write_bytes(content)
    assert_error(run(tmp_path / "h", "chain", "init", "--genesis", str(genesis)), 1)
    assert not Chain.exists(tmp_path / "h")


def test_init_refuses_a_chain_id_with_a_trailing_newline(tmp_path: Path, keys: list[Key]) -> None:
    result = run(tmp_path / "h", "chain", "init", "--chain-id", "abc\n", "--bond", f"{keys[0].address}=100")
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "chain id" in result.stderr and "Traceback" not in result.stderr
    assert not Chain.exists(tmp_path / "h")
