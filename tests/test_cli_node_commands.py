"""``validator run``, ``node run --dev`` with several validators, ``node status``/``node stop``,
``--node URL``, and the output conventions (``--json``/``-o json`` anywhere, NO_COLOR, shell
completion) — all through real ``posctl`` subprocesses against a real node and real LevelDB."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ledger.chain.facade import Chain
from ledger.node.record import read_node_record
from tests.test_cli_strange_node import FakeNode
from tests.test_node import ROOT, NodeProcess, clean_env, free_port, request
from wallet.bip39 import validate_mnemonic
from wallet.keystore import Keystore
from wallet.wallet_file import ScryptParams
from wallet.protection import SlashingProtection

PASSWORD = "validator-test-password"
WAIT = 30.0


def env(**extra: str) -> dict[str, str]:
    """No POSCTL_* from the caller's shell; light scrypt and a password for the test wallets."""
    values = clean_env()
    values.update(POSCTL_KDF="light", POSCTL_PASSWORD=PASSWORD)
    values.pop("NO_COLOR", None)
    values.update(extra)
    return values


def posctl(home: Path, *args: str, extra_env: dict[str, str] | None = None,
           timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *args],
        cwd=ROOT, env=env(**(extra_env or {})), capture_output=True, text=True, timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def wallet_home(tmp_path: Path, bonds: dict[str, int], others: tuple[str, ...] = (),
                init_args: tuple[str, ...] = ()) -> tuple[Path, dict[str, str]]:
    """A home with CLI-made wallets, the bonded ones validators at genesis; name -> address."""
    home = tmp_path / "home"
    addresses = {}
    for name in [*bonds, *others]:
        made = posctl(home, "wallet", "new", name, "--words", "12", "--json")
        assert made.returncode == 0, made.stderr
        addresses[name] = json.loads(made.stdout)["address"]
    args = ["chain", "init", "--chain-id", "posctl-validator-test", *init_args]
    for name in [*bonds, *others]:
        args += ["--alloc", f"{name}=100000"]
    for name, amount in bonds.items():
        args += ["--bond", f"{name}={amount}"]
    created = posctl(home, *args)
    assert created.returncode == 0, created.stderr
    return home, addresses


class ValidatorProcess:
    """``posctl validator run`` as a child process, its output in a file."""

    def __init__(self, home: Path, name: str, *extra: str, stdin: Any = subprocess.DEVNULL) -> None:
        self.log_path = home.parent / f"validator-{name}-{time.monotonic_ns()}.log"
        self.err_path = self.log_path.with_suffix(".err")
        with open(self.log_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "--home", str(home), "validator", "run", name,
                 "--poll", "0.05", *extra],
                cwd=ROOT, env=env(), stdout=out, stderr=err, stdin=stdin,
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def errors(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output())
            if found:
                return found
            assert self.proc.poll() is None, f"validator exited {self.proc.returncode}:\n{self.output()}{self.errors()}"
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.output()}{self.errors()}")

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=20)


@pytest.fixture
def procs() -> Iterator[Callable[..., Any]]:
    """Start nodes and validators; whatever is still running at the end is killed."""
    started: list[Any] = []

    def start(kind: str, *args: Any, **kwargs: Any) -> Any:
        if kind == "node":
            proc = NodeProcess(*args, **kwargs)
            started.append(proc)
            return proc.wait_ready()
        proc = ValidatorProcess(*args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for item in started:
        if item.proc.poll() is None:
            item.proc.kill()
            item.proc.wait(timeout=15)
        if isinstance(item, NodeProcess) and not item.log.closed:
            item.log.close()


def wait_height(port: int, height: int, timeout: float = WAIT) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = request(port, "GET", "/status")[1]
        if status["height"] >= height:
            return status
        assert time.monotonic() < deadline, f"height {status['height']} < {height} after {timeout}s"
        time.sleep(0.05)


def block_validator(port: int, height: int) -> str:
    return request(port, "GET", f"/blocks/{height}")[1]["validator"]


# ---- validator run -------------------------------------------------------------------------------


def test_two_validators_propose_and_win_and_stop_cleanly(tmp_path: Path, procs) -> None:
    home, addresses = wallet_home(tmp_path, {"alice": 600, "bob": 400})
    node = procs("node", home, None, 0.4)
    alice = procs("validator", home, "alice")
    bob = procs("validator", home, "bob", "--json")  # one JSON object per line
    alice.wait_for(r"proposed BPM \d+ for height")
    start = request(node.port, "GET", "/status")[1]["height"]
    wait_height(node.port, start + 8)

    assert alice.interrupt() == 0 and bob.interrupt() == 0
    assert alice.errors() == "" and bob.errors() == ""
    text_lines = alice.output().strip().splitlines()
    assert re.fullmatch(r"\S+ \S+ validator 'alice' stopped: \d+ proposals, \d+ blocks won", text_lines[-1])
    events = [json.loads(line) for line in bob.output().strip().splitlines()]
    assert events[0]["event"] == "started" and events[-1]["event"] == "stopped"

    alice_proposed = [int(h) for h in re.findall(r"proposed BPM \d+ for height (\d+)", alice.output())]
    bob_proposed = [e["height"] for e in events if e["event"] == "proposed"]
    assert len(alice_proposed) >= 5 and len(bob_proposed) >= 5
    assert len(set(alice_proposed)) == len(alice_proposed)  # one proposal per height, never two
    alice_won = [int(h) for h in re.findall(r"won block (\d+)", alice.output())]
    bob_won = [e["height"] for e in events if e["event"] == "won"]
    assert alice_won or bob_won
    assert not set(alice_won) & set(bob_won)
    for height in alice_won:  # what the logs claim, the chain confirms
        assert block_validator(node.port, height) == addresses["alice"]
    for height in bob_won:
        assert block_validator(node.port, height) == addresses["bob"]
    # a validator that proposed for height N had seen block N-1 and reported every block before it:
    # each of its proposals up to there is logged as won exactly when the chain says so
    for name, proposed, won in (("alice", alice_proposed, alice_won), ("bob", bob_proposed, bob_won)):
        for height in proposed:
            if height < max(proposed):
                assert (height in won) == (block_validator(node.port, height) == addresses[name]), height
    assert events[-1]["proposals"] == len(bob_proposed) and events[-1]["wins"] == len(bob_won)

    # the proposals carry VRF proofs the chain accepted: the chain verifies after the node stops
    assert node.stop() == 0
    with Chain.open(home) as chain:
        chain.verify()
        assert chain.account(addresses["alice"]).nonce >= len(alice_won)


def test_ctrl_c_waits_for_the_call_in_progress_and_a_second_one_stops_at_once(tmp_path: Path, procs) -> None:
    """A node that stops answering (frozen with SIGSTOP) holds the validator's call for up to a
    minute: the first Ctrl-C says it is stopping and waits for that call, the second exits at once
    with 130 and its tally."""
    home, _ = wallet_home(tmp_path, {"alice": 600})
    node = procs("node", home, None, 3600.0)  # no blocks: after its proposal the validator only polls
    alice = procs("validator", home, "alice", "--json")
    alice.wait_for(r'"event": "proposed"')
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.5)  # ten polls: one is now waiting on the frozen node
        alice.proc.send_signal(signal.SIGINT)
        alice.wait_for(r'"event": "stopping"')
        time.sleep(1.0)
        assert alice.proc.poll() is None  # the call in progress is not cut by the first Ctrl-C
        alice.proc.send_signal(signal.SIGINT)
        assert alice.proc.wait(timeout=10) == 128 + signal.SIGINT
    finally:
        os.kill(node.proc.pid, signal.SIGCONT)
    events = [json.loads(line) for line in alice.output().strip().splitlines()]
    assert events[-2]["event"] == "stopping" and events[-2]["signal"] == "SIGINT"
    assert events[-1]["event"] == "stopped" and events[-1]["abandoned"] is True
    assert events[-1]["proposals"] == 1 and events[-1]["wins"] == 0
    assert alice.errors() == ""
    assert node.stop() == 0  # the node itself was only paused


def node_chain_id(node: Any) -> str:
    return request(node.port, "GET", "/status")[1]["chain_id"]


def test_one_validator_per_key_even_under_another_wallet_name(tmp_path: Path, procs) -> None:
    """Two processes proposing with one key never equivocate (slashing protection decides), but
    they race for every height; a second `validator run` for the key is refused — also when the
    key was recovered under another name, whose protection record is another file. A validator
    that was killed leaves nothing to clean up."""
    home = tmp_path / "home"
    made = posctl(home, "wallet", "new", "alice", "--words", "12", "--json")
    assert made.returncode == 0, made.stderr
    alice = json.loads(made.stdout)
    twin = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "wallet", "recover", "twin"],
                          input=alice["mnemonic"], capture_output=True, text=True, cwd=ROOT, env=env(), timeout=60)
    assert twin.returncode == 0, twin.stderr
    created = posctl(home, "chain", "init", "--alloc", "alice=100000", "--bond", "alice=600")
    assert created.returncode == 0, created.stderr
    node = procs("node", home, None, 0.5)
    first = procs("validator", home, "alice")
    first.wait_for(r"proposed BPM")
    for name in ("alice", "twin"):
        refused = posctl(home, "validator", "run", name, timeout=30)
        assert one_error_line(refused) == (
            f"error: a validator for {alice['address']} is already running (pid {first.proc.pid}): two processes "
            "proposing with one key race each other for every height; stop that one first")
        assert "started" not in refused.stdout
    first.proc.kill()  # perhaps after signing the current height: the twin must not sign it again
    first.proc.wait(timeout=15)
    signed = SlashingProtection(home / "wallets", "alice").signed_heights(alice["address"],
                                                                          chain_id=node_chain_id(node))
    again = procs("validator", home, "twin")  # the lock went with the killed process
    start = int(again.wait_for(r"from height (\d+)").group(1))
    again.wait_for(rf"proposed BPM \d+ for height {max(start, *signed) + 1}\b")
    assert again.interrupt() == 0
    output = again.output()
    for height in signed:  # the twin never proposes a height alice signed (its BPM would differ)
        assert not re.search(rf"proposed BPM \d+ for height {height}\b", output), (height, output)
    if start in signed and f"not proposing for height {start}: this " in output:
        # it tried alice's last height (when the node had not forged it first): alice's record said no
        assert "in the record of wallet 'alice', which holds the same key" in output
    account = request(node.port, "GET", f"/accounts/{alice['address']}")[1]
    assert (account["status"], account["slashed"], account["bonded"]) == ("active", 0, 600), account


def test_slashing_protection_holds_across_a_restart(tmp_path: Path, procs) -> None:
    home, addresses = wallet_home(tmp_path, {"alice": 600}, others=("carol",))
    node = procs("node", home, None, 3600.0)  # blocks only when the test forges one
    first = procs("validator", home, "alice")
    first.wait_for(r"proposed BPM \d+ for height 1 ")
    assert first.interrupt() == 0
    assert request(node.port, "GET", "/status")[1]["mempool"] == 1

    again = procs("validator", home, "alice")
    again.wait_for(r"already signed a proposal for height 1 \(slashing protection\)")
    time.sleep(0.5)  # several polls: still no second proposal
    assert request(node.port, "GET", "/status")[1]["mempool"] == 1
    assert "proposed" not in again.output()

    forged = posctl(home, "chain", "forge", "--json")
    assert forged.returncode == 0, forged.stderr
    assert json.loads(forged.stdout)["validator"] == addresses["alice"]
    again.wait_for(r"proposed BPM \d+ for height 2 ")
    assert again.interrupt() == 0
    signed = SlashingProtection(home / "wallets", "alice").signed_heights(
        addresses["alice"], chain_id="posctl-validator-test")
    assert sorted(signed) == [1, 2]

    # a wallet with no bond says why it waits, and proposes nothing
    carol = procs("validator", home, "carol")
    carol.wait_for(r"not proposing for height 2: .*below min_stake 100.*; waiting")
    assert carol.interrupt() == 0 and "proposed" not in carol.output()
    assert request(node.port, "GET", "/status")[1]["mempool"] == 1


def test_bpm_readings_from_stdin(tmp_path: Path, procs) -> None:
    home, addresses = wallet_home(tmp_path, {"alice": 600, "bob": 400})
    node = procs("node", home, None, 3600.0)
    alice = procs("validator", home, "alice", "--bpm-source", "stdin", stdin=subprocess.PIPE)
    alice.wait_for(r"validator 'alice' .* BPM from stdin")
    time.sleep(0.5)  # alice now waits for a reading for height 1 ...
    assert posctl(home, "wallet", "propose", "bob", "--bpm", "90").returncode == 0
    assert posctl(home, "chain", "forge").returncode == 0  # ... which is forged without her
    alice.proc.stdin.write(b"fast\n80\n")
    alice.proc.stdin.flush()
    alice.wait_for(r"proposed BPM 80 for height 2 ")  # a late reading goes to the next height
    assert "ignored stdin line 'fast'" in alice.output() and "for height 1" not in alice.output()
    alice.proc.stdin.close()  # no more readings: once it needs the next one, it stops
    assert posctl(home, "chain", "forge").returncode == 0
    assert alice.proc.wait(timeout=20) == 0
    assert "stdin ended" in alice.output() and alice.errors() == ""
    block = request(node.port, "GET", "/blocks/2")[1]
    assert [(tx["sender"], tx["bpm"]) for tx in block["txs"]] == [(addresses["alice"], 80)]
    assert re.search(r"won block 2 ", alice.output())


def test_validator_bad_inputs(tmp_path: Path) -> None:
    home, _ = wallet_home(tmp_path, {"alice": 600})
    line = one_error_line(posctl(home, "validator", "run", "alice"))
    assert "no node is running" in line and "posctl node run" in line
    line = one_error_line(posctl(home, "validator", "run", "nobody"))
    assert "nobody" in line
    line = one_error_line(posctl(home, "validator", "run", "alice", "--bpm-source", "camera"), status=2)
    assert "--bpm-source" in line and "simulated" in line
    line = one_error_line(posctl(home, "--node", "http://192.0.2.1:9000", "validator", "run", "alice"), status=2)
    assert "not a loopback address" in line
    line = one_error_line(posctl(home, "--node", f"127.0.0.1:{free_port()}", "validator", "run", "alice"))
    assert "no node is running at http://127.0.0.1:" in line
    assert not (home / "wallets" / "alice.protection.json").exists()


@pytest.mark.parametrize("args", [
    ("node", "stop", "--timeout", "nan"), ("node", "run", "--interval", "NaN"),
    ("node", "run", "--request-timeout", "nan"), ("validator", "run", "alice", "--poll", "nan"),
])
def test_a_duration_of_nan_is_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """click's float ranges let "nan" through: `node stop --timeout nan` waited for ever."""
    line = one_error_line(posctl(tmp_path / "home", *args), status=2)
    assert "'nan' is not a number of seconds" in line.lower()


def test_an_empty_home_is_a_usage_error_not_the_current_directory(tmp_path: Path) -> None:
    """`--home "$UNSET"` wrote wallets into whatever directory the script ran in."""
    result = subprocess.run([sys.executable, "-m", "cli.main", "--home", "", "wallet", "new", "zed"], cwd=tmp_path,
                            env=env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert "the home directory is empty" in one_error_line(result, status=2)
    assert list(tmp_path.iterdir()) == []


# ---- node run --dev, node status, node stop ------------------------------------------------------


def test_dev_node_with_three_validators_then_status_and_stop(tmp_path: Path, procs) -> None:
    home = tmp_path / "dev"
    node = procs("node", home, None, 0.2, "--dev")
    status = wait_height(node.port, 20)
    validators = request(node.port, "GET", "/validators")[1]
    assert status["eligible_validators"] == 3
    assert len({row["bonded"] for row in validators}) == 3  # different stakes
    winners = {block_validator(node.port, height) for height in range(1, 21)}
    assert len(winners) >= 2, "20 blocks drawn among 3 validators went to one"
    output = node.output()
    phrases = re.findall(r"recovery phrase of '(dev\d?)': ([a-z ]+)$", output, re.MULTILINE)
    assert [name for name, _ in phrases] == ["dev", "dev2", "dev3"]
    elsewhere_wallets = Keystore(tmp_path / "recovered")
    for name, phrase in phrases:  # each printed phrase recovers the key that validates
        assert len(phrase.split()) == 24 and validate_mnemonic(phrase)
        address = elsewhere_wallets.recover(name, phrase, "pw", kdf=ScryptParams.light()).address(0, 0)
        assert re.search(rf"wallet '{name}' +{address} bonded", output)
        assert address in {row["address"] for row in validators}
    assert "password of every dev wallet: 'posctl-dev'" in output
    assert f"{node.url}/" in output

    shown = posctl(home, "node", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"pid {node.proc.pid}, {node.url}" in shown.stdout and "posctl-dev at height" in shown.stdout
    view = json.loads(posctl(home, "--json", "node", "status").stdout)
    assert view["pid"] == node.proc.pid and view["url"] == node.url and view["height"] >= 20
    assert view["uptime_seconds"] >= 0
    elsewhere = posctl(tmp_path / "empty", "--node", node.url, "node", "status", "--json")
    assert json.loads(elsewhere.stdout)["pid"] == node.proc.pid

    stopped = posctl(home, "node", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"node stopped (pid {node.proc.pid}, {node.url})"
    assert node.proc.poll() == 0  # gone when `node stop` returns, and it exited cleanly
    assert read_node_record(home) is None
    line = one_error_line(posctl(home, "node", "status"))
    assert "no node is running" in line
    one_error_line(posctl(home, "node", "stop"))
    with Chain.open(home) as chain:
        chain.verify()


def test_validators_option_needs_dev(tmp_path: Path) -> None:
    line = one_error_line(posctl(tmp_path / "h", "node", "run", "--validators", "2",
                                 "--listen", f"127.0.0.1:{free_port()}"), status=2)
    assert "--validators is for --dev" in line
    one_error_line(posctl(tmp_path / "h", "node", "run", "--dev", "--validators", "0"), status=2)
    assert not (tmp_path / "h").exists()


# ---- output conventions --------------------------------------------------------------------------


def test_json_spellings_agree_direct_and_through_the_node(tmp_path: Path, procs) -> None:
    home, _ = wallet_home(tmp_path, {"alice": 600})
    spellings = [("--json", "chain", "status"), ("chain", "status", "--json"), ("-o", "json", "chain", "status"),
                 ("--output", "json", "chain", "status"), ("chain", "status", "-o", "json")]
    direct = [posctl(home, *args) for args in spellings]
    assert all(result.returncode == 0 for result in direct)
    assert len({result.stdout for result in direct}) == 1
    assert json.loads(direct[0].stdout)["chain_id"] == "posctl-validator-test"
    assert posctl(home, "--json", "chain", "status", "-o", "text").stdout.startswith("Chain posctl-validator-test")
    one_error_line(posctl(home, "-o", "yaml", "chain", "status"), status=2)

    node = procs("node", home, None, 3600.0)
    through = {posctl(home, *args).stdout for args in spellings}
    other_home = tmp_path / "elsewhere"  # --node and POSCTL_NODE reach the node from any home
    through.add(posctl(other_home, "--node", node.url, "chain", "status", "--json").stdout)
    through.add(posctl(other_home, "chain", "status", "-o", "json", extra_env={"POSCTL_NODE": node.url}).stdout)
    assert through == {direct[0].stdout}
    assert not other_home.exists()


def _stderr_on_a_terminal(home: Path, *args: str, extra_env: dict[str, str]) -> bytes:
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), *args], cwd=ROOT,
                              env=env(**extra_env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=follower, timeout=60)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.returncode == 1
        return b"".join(chunks)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)


def test_no_color(tmp_path: Path) -> None:
    coloured = _stderr_on_a_terminal(tmp_path, "wallet", "show", "nobody", extra_env={})
    assert b"\x1b[" in coloured and b"error:" in coloured
    plain = _stderr_on_a_terminal(tmp_path, "wallet", "show", "nobody", extra_env={"NO_COLOR": "1"})
    assert b"\x1b[" not in plain and plain.startswith(b"error: ")


def _complete(home: Path, words: str) -> list[str]:
    """What bash completion offers for the last word of ``words`` (click's own protocol)."""
    parts = words.split(" ")
    result = subprocess.run(
        [sys.executable, "-m", "cli.main"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env=env(_POSCTL_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1),
                POSCTL_HOME=str(home)),
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_completion_of_wallet_names_and_param_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("alice", "bob", "alfred"):
        assert posctl(home, "wallet", "new", name, "--words", "12").returncode == 0
    assert _complete(home, "posctl wallet show ") == ["alfred", "alice", "bob"]
    assert _complete(home, "posctl wallet show al") == ["alfred", "alice"]
    assert _complete(home, "posctl validator run b") == ["bob"]
    assert _complete(home, "posctl wallet send alice ") == ["alfred", "alice", "bob"]
    assert _complete(home, "posctl chain init --param unb") == ["unbonding_blocks="]
    assert "min_stake=" in _complete(home, "posctl chain init --param ")
    assert _complete(home, "posctl lab run gr") == ["grind"]  # scenario names complete too
    assert _complete(tmp_path / "no-home", "posctl wallet show ") == []


def test_node_url_forms() -> None:
    from cli.backend import parse_node_url

    assert parse_node_url("127.0.0.1:9001") == "http://127.0.0.1:9001"
    assert parse_node_url("http://localhost:9000/") == "http://localhost:9000"
    assert parse_node_url("http://[::1]:9002") == "http://[::1]:9002"
    for bad, why in [("https://127.0.0.1:9000", "plain http"), ("http://127.0.0.1", "not a node URL"),
                     ("http://127.0.0.1:9000/status", "not a node URL"), ("example.com:9000", "loopback"),
                     ("http://10.1.2.3:9000", "loopback"), ("127.0.0.1:99999", "not a node URL")]:
        with pytest.raises(ValueError, match=why):
            parse_node_url(bad)


def test_a_validator_names_its_key_in_hints_and_says_which_heights_it_missed(tmp_path: Path, procs) -> None:
    """With --account 1 (no bond there) the hint said `posctl wallet stake alice AMOUNT`, which
    stakes from account 0: another key. And a validator polling slower than the chain moves
    skipped heights without a word."""
    home, _ = wallet_home(tmp_path, {"alice": 400, "bob": 600})
    procs("node", home, None, 0.1)
    other_key = procs("validator", home, "alice", "--account", "1")
    other_key.wait_for(r"not proposing for height \d+: .*`posctl wallet stake alice --account 1 AMOUNT`")
    assert other_key.interrupt() == 0
    procs("validator", home, "bob")  # keeps the chain moving, a block every 0.1 s
    slow = procs("validator", home, "alice", "--poll", "1.5", "--json")
    found = slow.wait_for(r'\{[^\n]*"event": "missed"[^\n]*\}')
    event = json.loads(found.group(0))
    first, last = event["heights"]
    assert 1 <= first <= last
    assert slow.interrupt() == 0


def test_a_validator_tells_a_lost_node_from_one_back_in_json(tmp_path: Path, procs) -> None:
    """Both were `{"event": "node"}`, the return without url, chain or height, and the loss
    carried advice for one-shot commands ("run the command again … use the database directly"),
    which a validator cannot follow: it waits."""
    home, _ = wallet_home(tmp_path, {"alice": 600})
    node = procs("node", home, None, 0.2)
    alice = procs("validator", home, "alice", "--json")
    alice.wait_for(r'"event": "proposed"')
    assert posctl(home, "node", "stop").returncode == 0
    lost = json.loads(alice.wait_for(r'\{[^\n]*"state": "lost"[^\n]*\}').group(0))
    assert lost["event"] == "node" and "stopped answering" in lost["reason"] and "database" not in lost["reason"]
    procs("node", home, node.port, 0.2)
    back = json.loads(alice.wait_for(r'\{[^\n]*"state": "back"[^\n]*\}').group(0))
    assert back["event"] == "node" and back["node"] == node.url and back["chain_id"] == "posctl-validator-test"
    assert isinstance(back["height"], int)
    assert alice.interrupt() == 0


def test_a_node_that_holds_its_chain_but_does_not_answer_is_named_and_stopped(tmp_path: Path, procs) -> None:
    """Frozen (SIGSTOP) or busy for more than the probe's 2 s, a node was "not running" for `node
    status` and `node stop`, while every other command found the chain in use by it."""
    home, _ = wallet_home(tmp_path, {"alice": 600})
    node = procs("node", home, None, 3600.0)
    os.kill(node.proc.pid, signal.SIGSTOP)
    try:
        line = one_error_line(posctl(home, "node", "status"))
        assert f"(pid {node.proc.pid}, {node.url}) holds the chain but does not answer" in line
        stopped = posctl(home, "node", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert node.proc.wait(timeout=20) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.proc.pid, signal.SIGCONT)
    assert not (home / "node.json").exists()
    assert posctl(home, "chain", "status").returncode == 0  # the chain is free again


def test_jailed_validator_waits_then_proposes_after_unjail(tmp_path: Path, procs) -> None:
    # a chain where one missed turn jails: alice proposes, bob (offline) is drawn first sooner or later
    home, addresses = wallet_home(tmp_path, {"alice": 400, "bob": 600}, init_args=("--param", "max_missed=1"))
    for _ in range(40):
        assert posctl(home, "wallet", "propose", "alice", "--bpm", "70").returncode == 0
        assert posctl(home, "chain", "forge").returncode == 0
        if json.loads(posctl(home, "wallet", "show", "bob", "--json").stdout)["status"] == "jailed":
            break
    else:
        raise AssertionError("bob was never drawn first in 40 blocks")
    height = json.loads(posctl(home, "chain", "status", "--json").stdout)["height"]

    node = procs("node", home, None, 3600.0)
    bob = procs("validator", home, "bob")
    bob.wait_for(rf"not proposing for height {height + 1}: this validator is jailed .*"
                 r"`posctl wallet unjail bob`.*; waiting")
    assert "proposed" not in bob.output()
    assert posctl(home, "wallet", "unjail", "bob").returncode == 0
    assert posctl(home, "wallet", "propose", "alice", "--bpm", "70").returncode == 0
    assert posctl(home, "chain", "forge").returncode == 0  # includes the unjail
    bob.wait_for(rf"proposed BPM \d+ for height {height + 2} ")
    assert bob.interrupt() == 0
    assert request(node.port, "GET", f"/accounts/{addresses['bob']}")[1]["status"] == "active"


def test_node_stop_by_url_from_another_home(tmp_path: Path, procs) -> None:
    """`--node URL node stop` finds the node by asking it (GET /node), as a user in another
    directory would, and waits until it is gone."""
    home, _ = wallet_home(tmp_path, {"alice": 600})
    node = procs("node", home, None, 3600)
    stopped = posctl(tmp_path / "elsewhere", "--node", node.url, "node", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"node stopped (pid {node.proc.pid}, {node.url})"
    assert node.proc.poll() == 0 and read_node_record(home) is None
    again = one_error_line(posctl(tmp_path / "elsewhere", "--node", node.url, "node", "stop"))
    assert f"no node is running at {node.url}" in again


def test_the_cookie_goes_only_to_the_node_the_home_records(tmp_path: Path, procs) -> None:
    """`--node URL chain forge` sent this home's cookie to whatever answered at URL (a mistyped or
    squatted port), which could then use it on the real node (`/backup` writes where it is told)."""
    home, _ = wallet_home(tmp_path / "a", {"alice": 600})
    other_home, _ = wallet_home(tmp_path / "b", {"alice": 600})
    procs("node", home, None, 3600)
    other = procs("node", other_home, None, 3600)
    for args in (("chain", "forge"), ("chain", "backup", str(tmp_path / "copy"))):
        line = one_error_line(posctl(home, "--node", other.url, *args))
        assert "needs this home's node cookie, which posctl sends only to the node this home records" in line
        assert f"not to {other.url}" in line
    assert "401" not in other.output() and not (tmp_path / "copy").exists()
    own = posctl(home, "chain", "forge")  # its own node still takes the cookie (no proposal: no block)
    assert "no block: no proposal" in own.stdout + own.stderr and "cookie" not in own.stderr, own.stderr


def test_a_ctrl_c_while_node_stop_waits_says_the_node_is_stopping(tmp_path: Path) -> None:
    """`node stop` has sent SIGTERM and waits for the pid to go (a node finishing a long commit;
    here a process that takes its time, behind a fake node's `GET /node`): a Ctrl-C there said
    "nothing was changed", though the node had been told to stop and would."""
    import select

    slow = subprocess.Popen([sys.executable, "-c", "import signal, time\n"
                             "signal.signal(signal.SIGTERM, lambda *_: (print('stopping', flush=True), time.sleep(60)))\n"
                             "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    fake = FakeNode(b"", pid=slow.pid)
    try:
        assert slow.stdout is not None and slow.stdout.readline() == "ready\n"
        stopping = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(tmp_path / "home"),
                                     "--node", fake.url, "node", "stop"],
                                    cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert select.select([slow.stdout], [], [], WAIT)[0], stopping.communicate(timeout=5)
        assert slow.stdout.readline() == "stopping\n"  # `node stop` has sent SIGTERM and now waits
        stopping.send_signal(signal.SIGINT)
        out, err = stopping.communicate(timeout=WAIT)
    finally:
        fake.close()
        slow.kill()
        slow.wait()
    assert (stopping.returncode, out) == (1, ""), err
    assert err.strip() == (f"error: interrupted while waiting: the node (pid {slow.pid}) was already asked to "
                           "stop and is stopping; `posctl node status` shows when it is gone")


# ---- a Ctrl-C while the node holds the answer ------------------------------------------------------


class WithholdingProxy(FakeNode):
    """Forwards each request to the real node and its answer back, except that the answer to a
    ``POST`` is kept (the node has acted on it): the client waits, as on a slow node, until the
    test interrupts it. ``withheld`` is set once the node has answered a POST."""

    def __init__(self, node_port: int) -> None:
        self.node_port = node_port
        self.withheld = threading.Event()
        self.answers: list[bytes] = []
        super().__init__(reply=b"")

    @staticmethod
    def _read_message(sock: socket.socket, buffered: bytes) -> tuple[bytes, bytes] | None:
        """One HTTP message with a Content-Length body (or none) from ``sock``: (message, rest)."""
        while b"\r\n\r\n" not in buffered:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buffered += chunk
        head, _, rest = buffered.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            rest += chunk
        return head + b"\r\n\r\n" + rest[:length], rest[length:]

    def _serve(self, conn: socket.socket) -> None:
        buffered = b""
        with conn:
            while True:
                message = self._read_message(conn, buffered)
                if message is None:
                    return
                request_bytes, buffered = message
                with socket.create_connection(("127.0.0.1", self.node_port)) as upstream:
                    upstream.sendall(request_bytes)
                    answer = self._read_message(upstream, b"")
                if answer is None:
                    return
                if request_bytes.startswith(b"POST "):
                    self.answers.append(answer[0])
                    self.withheld.set()
                    conn.recv(1)  # until the client goes away
                    return
                conn.sendall(answer[0])

    def interrupt_when_withheld(self, home: Path, *args: str) -> tuple[int, str, str]:
        """Run ``posctl --node PROXY ARGS``, Ctrl-C it once its POST reached the node and the
        answer is held; (exit status, stdout, stderr)."""
        client = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "--node", self.url, *args],
            cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.withheld.wait(WAIT), client.communicate(timeout=5)
        client.send_signal(signal.SIGINT)
        out, err = client.communicate(timeout=WAIT)
        return client.returncode, out, err


@pytest.mark.parametrize("command", ["wallet send", "chain submit"])
def test_a_ctrl_c_while_the_node_holds_the_answer_does_not_claim_nothing_changed(tmp_path: Path, procs,
                                                                                 command: str) -> None:
    """The node admitted the tx; its answer is slow (here: held by a proxy) and the user presses
    Ctrl-C. "aborted: nothing was changed" was printed there, and the tx was in the mempool: a
    user who believed it would sign the transfer again. The line must name the tx and how to
    look it up, and the lookup must find it."""
    home, addresses = wallet_home(tmp_path, {"alice": 600}, others=("bob",))
    node = procs("node", home, None, 3600.0)
    proxy = WithholdingProxy(node.port)
    try:
        if command == "wallet send":
            args = ["wallet", "send", "alice", addresses["bob"], "5", "-y"]
        else:
            signed = posctl(home, "--node", node.url, "wallet", "send", "alice", addresses["bob"], "5", "-y",
                            "--out", str(tmp_path / "send.tx"))
            assert signed.returncode == 0, signed.stderr
            args = ["chain", "submit", str(tmp_path / "send.tx")]
        status, out, err = proxy.interrupt_when_withheld(home, *args)
    finally:
        proxy.close()
    assert status == 1 and out == "", (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    tx_id = json.loads(proxy.answers[0].split(b"\r\n\r\n", 1)[1])["tx_id"]
    assert f"interrupted after tx {tx_id} was sent for submission: it may have been accepted" in lines[0]
    assert f"`posctl chain tx {tx_id}`" in lines[0] and "nothing was changed" not in lines[0]
    found = posctl(home, "--node", node.url, "chain", "tx", tx_id, "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["status"] == "pending"


def test_a_ctrl_c_while_the_node_writes_a_backup_says_it_goes_on(tmp_path: Path, procs) -> None:
    home, _ = wallet_home(tmp_path, {"alice": 600})
    node = procs("node", home, None, 3600.0)
    proxy = WithholdingProxy(node.port)
    copy = tmp_path / "copy"
    # the home records the proxy as its node: the cookie /backup needs goes only to the recorded node
    record = json.loads((home / "node.json").read_text())
    record.update(url=proxy.url, address=proxy.url.removeprefix("http://"))
    (home / "node.json").write_text(json.dumps(record))
    try:
        status, out, err = proxy.interrupt_when_withheld(home, "chain", "backup", str(copy))
    finally:
        proxy.close()
    assert (status, out) == (1, ""), err
    assert err.strip() == (f"error: interrupted while the node writes the backup to {copy}: it goes on without this "
                           f"command; `posctl --home {copy} chain verify` checks it once it is there")
    assert posctl(copy, "chain", "verify").returncode == 0  # the node had written it
