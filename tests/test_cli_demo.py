"""``posctl demo``: the whole story runs, exits 0, shows every step, in its own home."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from cli.main import posctl
from ledger.chain.facade import Chain

ROOT = Path(__file__).resolve().parent.parent


def test_demo_tells_the_whole_story_in_a_fresh_home_under_the_posctl_home(tmp_path: Path) -> None:
    env_before = {k: os.environ.get(k) for k in ("POSCTL_PASSWORD", "POSCTL_KDF", "POSCTL_HOME")}
    root = tmp_path / "posctl-home"
    result = CliRunner().invoke(posctl, ["--home", str(root), "demo"])
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr, result.exception)
    out = result.stdout
    assert "LIGHT key stretching" in out
    for command in (
        "$ POSCTL_KDF=light posctl wallet new alice",
        "$ POSCTL_KDF=light posctl wallet new carol",
        "$ posctl chain init --chain-id posctl-demo-1",
        "$ posctl wallet stake bob 200",
        "$ posctl wallet propose carol --bpm",
        "$ posctl chain forge",
        "$ posctl chain validators",
        "$ posctl wallet send alice carol 50",
        "$ posctl wallet unstake carol 50",
        "$ posctl wallet show bob",
        "--allow-equivocation",
        "$ posctl chain evidence ",
        "$ posctl chain status      # a new process",
        "$ posctl chain verify      # a new process",
    ):
        assert command in out, command
    # several lottery rounds with several validators, each draw explained, winners visible
    assert out.count("600 bonded among the eligible validators") >= 4
    assert "◀ proposed: winner" in out and "passed over: no proposal" in out
    assert len(re.findall(r"Forged block \d+: pos1\S+ \((alice|bob|carol)\) won the lottery", out)) >= 8
    assert "no block: " in out
    # the equivocation: refused by the wallet, forced, reported, slashed and tombstoned
    assert "this would be equivocation and would be slashed" in out
    assert "Evidence    1 equivocation(s) slashed in this block" in out
    assert re.search(r"\(bob\)\s+0\s+tombstoned", out)
    assert "slashed     10 taken for equivocation" in out and "unbonding   190 locked until released" in out
    # the unstake goes through its lock-up and is released
    assert "unbonding   50 locked until released" in out
    assert out.rindex("unbonding   none") > out.index("unbonding   50 locked")
    # restart and verify
    assert "Chain posctl-demo-1 at height" in out
    assert "chain verified: heights 0.." in out
    assert "The demo finished: the chain verified after a restart." in out
    # the demo's home is a new directory under <posctl home>/demos, kept and valid;
    # the user's own chain and wallets are untouched, and the environment is as it was
    home = Path(re.search(r"^home: (\S+)", out, re.M).group(1))
    assert home.parent == (root / "demos").resolve()
    assert not Chain.exists(root) and not (root / "wallets").exists()
    with Chain.open(home) as chain:
        chain.verify()
    assert f"posctl --home {home} chain show --last 3" in out
    assert {k: os.environ.get(k) for k in env_before} == env_before
    again = CliRunner().invoke(posctl, ["--home", str(root), "demo"])  # runs again, in another new home
    assert again.exit_code == 0 and len(list((root / "demos").iterdir())) == 2


def test_demo_keeps_a_given_home_and_refuses_to_reuse_it(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    result = CliRunner().invoke(posctl, ["demo", "--home", str(home)])
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr)
    assert Chain.exists(home)
    with Chain.open(home) as chain:
        assert chain.height >= 9
        chain.verify()
    again = CliRunner().invoke(posctl, ["demo", "--home", str(home)])
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.strip().startswith("error: ") and "already holds a chain" in again.stderr


def test_demo_refuses_a_home_with_demo_wallets(tmp_path: Path) -> None:
    home = tmp_path / "h"
    (home / "wallets").mkdir(parents=True)
    (home / "wallets" / "bob.json").write_text("{}")
    result = CliRunner().invoke(posctl, ["demo", "--home", str(home)])
    assert result.exit_code == 1 and "bob" in result.stderr
    assert not Chain.exists(home)


def test_installed_posctl_demo_exits_0_quickly(tmp_path: Path) -> None:
    found = shutil.which("posctl")
    command = [found] if found and Path(found).parent == Path(sys.executable).parent else [sys.executable, "-m", "cli.main"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(ROOT)
    env["POSCTL_HOME"] = str(tmp_path / "posctl-home")
    started = time.monotonic()
    done = subprocess.run([*command, "demo"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    assert "The demo finished" in done.stdout
    assert "Traceback" not in done.stderr
    demos = list((tmp_path / "posctl-home" / "demos").iterdir())
    assert len(demos) == 1 and Chain.exists(demos[0])


def test_an_interrupted_demo_says_where_its_work_is(tmp_path: Path) -> None:
    """Ctrl-C in the middle of the demo: by then it has made wallets and a chain, so the generic
    "aborted: nothing was changed" would be untrue; it names the directory instead — whether the
    signal lands between commands or inside one the story runs in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(ROOT)
    for delay in (0.0, 0.01, 0.03, 0.1, 0.3):
        home = tmp_path / f"demo-{delay}"
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "demo", "--home", str(home)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # wait until the chain exists and the rounds have begun
            seen.append(line)
            if "$ posctl wallet propose" in line:
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 1, "".join(seen) + rest + stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, (delay, stderr)
        # between commands, inside a `chain forge` that says truthfully what it committed, or inside a
        # `wallet propose` that had sent its tx (which may have been accepted, and says how to look)
        assert errors[0].startswith(("error: the demo was interrupted; ",
                                     "error: the demo stopped at `posctl chain forge`: interrupted by SIGINT")) or \
            re.match(r"error: the demo stopped at `posctl wallet propose \w+ --bpm \d+`: interrupted after tx "
                     r"([0-9a-f]{64}) was sent for submission: it may have been accepted; `posctl chain tx \1`",
                     errors[0]), errors
        assert errors[0].endswith(f"; what it did so far is in {home} (explore it, or delete it when you are done)")
        assert "Traceback" not in stderr
        assert Chain.exists(home)
