"""Slashing protection (wallet/protection.py): the wallet never signs two different proposals for
one height with one key, unless told to, and its record survives restarts, crashes and damage.

The record is exercised through the library, through real processes (a restart is a new process,
a crash is a real SIGKILL while the child records as fast as it can) and through the installed
``posctl`` command, whose ``wallet propose`` consults it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ledger.chain.facade import Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.encoding import sha256
from ledger.params import Params
from tests.ledgerkit import make_key, make_proposal
from wallet.errors import WalletError
from wallet.keystore import Keystore
from wallet.protection import (
    ProtectionRecordDamaged,
    SlashingProtection,
    WouldEquivocate,
)

REPO = Path(__file__).resolve().parent.parent
CHAIN_ID = "posctl-test"
KEY = make_key("protection-val")
OTHER = make_key("protection-other")
SEED = bytes(32)
PASSWORD = "correct horse battery staple"
POSCTL = shutil.which("posctl", path=str(Path(sys.executable).parent)) or "posctl"


def tx_id(label: str) -> bytes:
    return sha256(label.encode())


@pytest.fixture
def guard(tmp_path: Path) -> SlashingProtection:
    return SlashingProtection(tmp_path / "wallets", "val")


# ---- the rule --------------------------------------------------------------------------------


def test_the_same_key_under_another_wallet_name_is_guarded_by_both_records(tmp_path: Path) -> None:
    """A phrase recovered under a second name has its own record; a proposal that either name
    signed closes that height for the other, and a damaged record of a third wallet is refused
    rather than ignored (it might hold the key); files that are not ours are ignored."""
    wallets = tmp_path / "wallets"
    first, twin = SlashingProtection(wallets, "alice"), SlashingProtection(wallets, "twin")
    first.record(KEY.address, 5, tx_id("a"), chain_id=CHAIN_ID)
    with pytest.raises(WouldEquivocate, match="in the record of wallet 'alice', which holds the same key"):
        twin.check(KEY.address, 5, tx_id("b"), chain_id=CHAIN_ID)
    with pytest.raises(WouldEquivocate, match="in the record of wallet 'alice'"):
        twin.record(KEY.address, 5, tx_id("b"), chain_id=CHAIN_ID)
    twin.record(KEY.address, 5, tx_id("a"), chain_id=CHAIN_ID)  # the same proposal again: fine
    twin.record(OTHER.address, 5, tx_id("b"), chain_id=CHAIN_ID)  # another key: unrelated
    twin.record(KEY.address, 5, tx_id("b"), chain_id="posctl-other")  # another chain: unrelated
    twin.record(KEY.address, 6, tx_id("c"), chain_id=CHAIN_ID)
    with pytest.raises(WouldEquivocate, match="in the record of wallet 'twin'"):
        first.check(KEY.address, 6, tx_id("d"), chain_id=CHAIN_ID)
    (wallets / "not a wallet.protection.json").write_text("junk")
    first.check(KEY.address, 7, tx_id("e"), chain_id=CHAIN_ID)
    (wallets / "third.protection.json").write_text("{")
    with pytest.raises(ProtectionRecordDamaged):
        first.check(KEY.address, 7, tx_id("e"), chain_id=CHAIN_ID)



def test_a_second_different_proposal_for_a_height_is_refused(guard: SlashingProtection) -> None:
    first = make_proposal(KEY, 0, 5, SEED, bpm=70)
    second = make_proposal(KEY, 0, 5, SEED, bpm=71)
    guard.guard(first)
    with pytest.raises(WouldEquivocate, match="this would be equivocation and would be slashed") as info:
        guard.guard(second)
    assert (info.value.address, info.value.height, info.value.signed_tx_id) == (KEY.address, 5, first.tx_id)
    assert first.tx_id.hex() in str(info.value)
    with pytest.raises(WouldEquivocate):
        guard.check(KEY.address, 5, second.tx_id, chain_id=CHAIN_ID)
    assert guard.signed_heights(KEY.address, chain_id=CHAIN_ID) == {5: first.tx_id}


def test_the_record_is_per_key_per_height_per_chain(guard: SlashingProtection) -> None:
    guard.guard(make_proposal(KEY, 0, 5, SEED, bpm=70))
    guard.guard(make_proposal(KEY, 1, 6, SEED, bpm=71))  # another height
    guard.guard(make_proposal(OTHER, 0, 5, SEED, bpm=71))  # another key
    guard.guard(make_proposal(KEY, 0, 5, SEED, bpm=71, chain_id="another-chain"))  # another chain
    assert set(guard.signed_heights(KEY.address, chain_id=CHAIN_ID)) == {5, 6}
    assert set(guard.signed_heights(OTHER.address, chain_id=CHAIN_ID)) == {5}


def test_the_same_proposal_signed_again_is_allowed_and_changes_nothing(guard: SlashingProtection) -> None:
    proposal = make_proposal(KEY, 0, 5, SEED, bpm=70)
    guard.guard(proposal)
    before = guard.path.read_bytes()
    again = make_proposal(KEY, 0, 5, SEED, bpm=70)  # deterministic signature and proof: the same tx
    assert again.tx_id == proposal.tx_id
    guard.guard(again)
    guard.check(KEY.address, 5, again.tx_id, chain_id=CHAIN_ID)
    assert guard.path.read_bytes() == before


def test_allow_equivocation_records_the_newest_proposal(guard: SlashingProtection) -> None:
    first = make_proposal(KEY, 0, 5, SEED, bpm=70)
    second = make_proposal(KEY, 0, 5, SEED, bpm=71)
    guard.guard(first)
    guard.guard(second, allow_equivocation=True)
    assert guard.signed_heights(KEY.address, chain_id=CHAIN_ID) == {5: second.tx_id}
    with pytest.raises(WouldEquivocate):
        guard.guard(first)  # the first is now the conflicting one


def test_heights_pruned_from_the_record_stay_refused(guard: SlashingProtection, monkeypatch: pytest.MonkeyPatch) -> None:
    import wallet.protection as protection

    monkeypatch.setattr(protection, "PRUNE_DISTANCE", 3)
    for height in range(1, 9):
        guard.record(KEY.address, height, tx_id(f"h{height}"), chain_id=CHAIN_ID)
    assert guard.floor(KEY.address, chain_id=CHAIN_ID) == 5
    assert sorted(guard.signed_heights(KEY.address, chain_id=CHAIN_ID)) == [5, 6, 7, 8]
    with pytest.raises(WouldEquivocate, match="no longer lists heights below 5") as info:
        guard.record(KEY.address, 4, tx_id("h4"), chain_id=CHAIN_ID)  # even the same tx: it cannot tell
    assert info.value.signed_tx_id is None


# ---- the file --------------------------------------------------------------------------------


def test_the_record_and_its_lock_are_0600(guard: SlashingProtection) -> None:
    old = os.umask(0)  # the mode must come from the code, not from a friendly umask
    try:
        guard.guard(make_proposal(KEY, 0, 5, SEED))
    finally:
        os.umask(old)
    assert stat.S_IMODE(guard.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(guard.lock_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((guard.directory / f".protection-{KEY.address}.lock").stat().st_mode) == 0o600
    document = json.loads(guard.path.read_text())
    assert document["version"] == 1 and document["wallet"] == "val"
    assert list(document["chains"][CHAIN_ID]) == [KEY.address]


@pytest.mark.parametrize("content, problem", [
    (b'{"version": 1, "wallet": "val", "chains": {', "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[]", "not a JSON object"),
    (b'{"version": 1, "wallet": "bob", "chains": {}}', "belongs to wallet 'bob'"),
    (b'{"version": 1, "wallet": "val", "chains": {"posctl-test": {"pos1x": {}}}}', "is not an address"),
    (b'{"version": 1, "wallet": "val"}', "its fields must be exactly"),
], ids=["truncated", "empty", "array", "other wallet", "bad address", "missing field"])
def test_a_damaged_record_is_refused_never_reset(guard: SlashingProtection, content: bytes, problem: str) -> None:
    guard.directory.mkdir(parents=True)
    guard.path.write_bytes(content)
    proposal = make_proposal(KEY, 0, 5, SEED)
    with pytest.raises(ProtectionRecordDamaged, match=problem) as info:
        guard.guard(proposal)
    message = str(info.value)
    assert str(guard.path) in message and "restore the file from a backup" in message
    with pytest.raises(ProtectionRecordDamaged):
        guard.check(KEY.address, 5, proposal.tx_id, chain_id=CHAIN_ID)
    assert guard.path.read_bytes() == content  # left as found, for the user to repair


def test_a_record_of_another_format_version_asks_for_an_upgrade(guard: SlashingProtection) -> None:
    guard.directory.mkdir(parents=True)
    guard.path.write_text('{"version": 2, "wallet": "val", "chains": {}}')
    with pytest.raises(WalletError, match="format version 2, which this posctl cannot read; upgrade posctl") as info:
        guard.guard(make_proposal(KEY, 0, 5, SEED))
    assert type(info.value) is WalletError  # not "damaged": the file is fine, posctl is old


# ---- restarts and crashes (real processes) --------------------------------------------------------


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_the_record_survives_a_restart(guard: SlashingProtection) -> None:
    child = run_python("""
        import sys
        from pathlib import Path
        from tests.ledgerkit import make_key, make_proposal
        from wallet.protection import SlashingProtection
        guard = SlashingProtection(Path(sys.argv[1]), "val")
        guard.guard(make_proposal(make_key("protection-val"), 0, 5, bytes(32), bpm=70))
        print("recorded", flush=True)
    """, str(guard.directory))
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0 and out == "recorded\n", err
    # A new process (this one never wrote the record) refuses the conflicting proposal.
    with pytest.raises(WouldEquivocate):
        guard.guard(make_proposal(KEY, 0, 5, SEED, bpm=71))
    guard.guard(make_proposal(KEY, 0, 5, SEED, bpm=70))


RECORDER = """
    import hashlib, sys
    from pathlib import Path
    from wallet.protection import SlashingProtection
    guard = SlashingProtection(Path(sys.argv[1]), "val")
    for height in range(1, 100_000):
        guard.record(sys.argv[2], height, hashlib.sha256(b"h%d" % height).digest(), chain_id="posctl-test")
        print(height, flush=True)  # only once the record is durable: the proposal is "released"
"""


@pytest.mark.parametrize("round_", range(4))
def test_a_kill_9_mid_write_loses_no_released_proposal(tmp_path: Path, round_: int) -> None:
    seed = 6979 + round_
    rng = random.Random(seed)
    print(f"kill schedule seed {seed}")
    wallets = tmp_path / "wallets"
    child = run_python(RECORDER, str(wallets), KEY.address)
    assert child.stdout is not None
    lines_before_kill = rng.randint(3, 40)
    released = 0
    for _ in range(lines_before_kill):
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        released = int(line)
    time.sleep(rng.uniform(0, 0.004))  # land anywhere inside the next record's write
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL
    released = max([released] + [int(line) for line in rest.split()])
    guard = SlashingProtection(wallets, "val")
    signed = guard.signed_heights(KEY.address, chain_id=CHAIN_ID)  # readable: never half-written
    # Every released height is there with its tx id; at most one more was recorded, unreleased.
    assert set(range(1, released + 1)) <= set(signed) <= set(range(1, released + 2))
    assert all(signed[height] == sha256(b"h%d" % height) for height in signed)
    with pytest.raises(WouldEquivocate):
        guard.record(KEY.address, released, tx_id("conflict"), chain_id=CHAIN_ID)
    # The next record still works, stays 0600, and clears what the killed writer left behind.
    guard.record(KEY.address, released + 2, tx_id("next"), chain_id=CHAIN_ID)
    assert stat.S_IMODE(guard.path.stat().st_mode) == 0o600
    assert sorted(path.name for path in wallets.iterdir()) == [
        f".protection-{KEY.address}.lock", "val.protection.json", "val.protection.lock"]


def test_temp_files_of_a_writer_killed_mid_write_are_removed(guard: SlashingProtection) -> None:
    # What a SIGKILL between the temp file's write and its rename leaves (seen in about half of
    # the kills above): without cleanup each crash would leave up to a whole record on disk.
    guard.directory.mkdir(parents=True)
    stale = guard.directory / ".val.protection.k1ll3d_.tmp"
    stale.write_text("half a record")
    wallet_file = guard.directory / "val.json"
    wallet_file.write_text("{}")  # a wallet is never touched
    guard.guard(make_proposal(KEY, 0, 5, SEED))
    assert not stale.exists() and wallet_file.read_text() == "{}"


def test_two_processes_racing_for_one_height_cannot_both_record(tmp_path: Path) -> None:
    wallets = tmp_path / "wallets"
    code = """
        import sys, time
        from pathlib import Path
        from tests.ledgerkit import make_key, make_proposal
        from wallet.protection import SlashingProtection, WouldEquivocate
        guard = SlashingProtection(Path(sys.argv[1]), "val")
        proposal = make_proposal(make_key("protection-val"), 0, 9, bytes(32), bpm=int(sys.argv[2]))
        guard.check(proposal.sender, 9, proposal.tx_id, chain_id="posctl-test")  # both pass this
        time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
        try:
            guard.guard(proposal)
            print("signed")
        except WouldEquivocate:
            print("refused")
    """
    start = f"{time.time() + 3:.3f}"  # both processes wait for this moment, then record at once
    children = [run_python(code, str(wallets), str(bpm), start) for bpm in (70, 71)]
    results = [child.communicate(timeout=60) for child in children]
    assert all(child.returncode == 0 for child in children), results
    assert sorted(out.strip() for out, _ in results) == ["refused", "signed"], results


def test_two_wallet_names_racing_with_one_key_cannot_both_record(tmp_path: Path) -> None:
    """A phrase recovered under a second name: the two names have two records and two record
    locks, so only a lock held per key keeps two processes (``wallet propose`` as one name while
    ``validator run`` signs as the other) from both passing the check of the other's record
    before either has written it. Both race through the same heights in step."""
    wallets = tmp_path / "wallets"
    code = """
        import sys, time
        from pathlib import Path
        from tests.ledgerkit import make_key, make_proposal
        from wallet.protection import SlashingProtection, WouldEquivocate
        guard = SlashingProtection(Path(sys.argv[1]), sys.argv[2])
        key = make_key("protection-val")
        proposals = [make_proposal(key, 0, h, bytes(32), bpm=int(sys.argv[3])) for h in range(1, 41)]
        time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
        for proposal in proposals:
            try:
                guard.guard(proposal)
                print(proposal.height, "signed")
            except WouldEquivocate:
                print(proposal.height, "refused")
    """
    start = f"{time.time() + 3:.3f}"
    children = [run_python(code, str(wallets), name, str(bpm), start)
                for name, bpm in (("alice", 70), ("twin", 71))]
    results = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), results
    signed: dict[str, int] = {}
    for out, _ in results:
        for line in out.split("\n"):
            if line.endswith(" signed"):
                height = line.split()[0]
                signed[height] = signed.get(height, 0) + 1
    assert set(signed.values()) == {1} and len(signed) == 40, signed


# ---- through the real command line ---------------------------------------------------------


def posctl(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, POSCTL_KDF="light", POSCTL_PASSWORD=PASSWORD)
    env.pop("POSCTL_PASSWORD_FILE", None)
    return subprocess.run([POSCTL, "--home", str(home), *args], env=env, capture_output=True, text=True, timeout=120)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def validator_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with wallet ``val`` bonded 500 on a fresh chain (made once, copied per test)."""
    home = tmp_path_factory.mktemp("protection") / "home"
    result = posctl(home, "wallet", "new", "val", "--words", "12")
    assert result.returncode == 0, result.stderr
    address = Keystore(home / "wallets").load("val").address(0, 0)
    config = GenesisConfig(params=Params(chain_id=CHAIN_ID), allocations={}, bonds={address: 500})
    Chain.create(home, config).close()
    return home


@pytest.fixture
def home(tmp_path: Path, validator_home: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(validator_home, target)
    return target


def pending(home: Path) -> int:
    with Chain.open(home) as chain:
        return chain.mempool.count


def test_wallet_propose_refuses_a_second_proposal_after_the_nonce_moved(home: Path) -> None:
    # The common accident: the first proposal was submitted, so the nonce moved and a second
    # "same" proposal would be a different tx for the same height.
    assert posctl(home, "wallet", "propose", "val", "--bpm", "70").returncode == 0
    line = one_error_line(posctl(home, "wallet", "propose", "val", "--bpm", "70"))
    assert "this would be equivocation and would be slashed" in line and "--allow-equivocation" in line
    assert pending(home) == 1


def test_wallet_propose_allows_the_same_proposal_again(home: Path, tmp_path: Path) -> None:
    first = posctl(home, "wallet", "propose", "val", "--bpm", "70", "--out", str(tmp_path / "a.json"), "--json")
    again = posctl(home, "wallet", "propose", "val", "--bpm", "70", "--out", str(tmp_path / "b.json"), "--json")
    assert first.returncode == 0 and again.returncode == 0, again.stderr
    assert json.loads(first.stdout)["tx_id"] == json.loads(again.stdout)["tx_id"]


def test_allow_equivocation_forces_a_second_proposal_through(home: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert posctl(home, "wallet", "propose", "val", "--bpm", "70", "--out", str(a)).returncode == 0
    line = one_error_line(posctl(home, "wallet", "propose", "val", "--bpm", "71", "--out", str(b)))
    assert "this would be equivocation and would be slashed" in line
    assert not b.exists()  # nothing released
    forced = posctl(home, "wallet", "propose", "val", "--bpm", "71", "--out", str(b), "--allow-equivocation")
    assert forced.returncode == 0, forced.stderr
    assert json.loads(a.read_text())["height"] == json.loads(b.read_text())["height"] == 1
    # What it forced through is exactly what gets a validator slashed.
    evidence = posctl(home, "chain", "evidence", str(a), str(b))
    assert evidence.returncode == 0, evidence.stderr


def test_wallet_propose_with_a_damaged_record_is_refused_and_changes_nothing(home: Path) -> None:
    record = home / "wallets" / "val.protection.json"
    record.write_text("{not json")
    line = one_error_line(posctl(home, "wallet", "propose", "val", "--bpm", "70"))
    assert f"slashing-protection record {record} is damaged" in line
    assert record.read_text() == "{not json" and pending(home) == 0
