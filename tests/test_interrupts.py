"""Honest interrupts: real signals sent to real ``posctl`` processes, checked against the database.

A direct ``posctl chain forge`` interrupted at any moment must say truthfully whether its
block was committed: the height and the mempool on disk afterwards are compared with what it
printed. The moment is searched for, bisecting between "too early" and "too late", so that the
later signals land around the commit itself. A node logs each signal; a second Ctrl-C makes it
exit as soon as the commit in progress is on disk, and the chain verifies afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.chain.facade import Chain
from tests.faultkit import ROOT, Node, env, no_traceback, posctl
from tests.ledgerkit import make_chain, make_key, make_tx, propose
from tests.test_pools import wait_gone

A, B, V = make_key("a"), make_key("b"), make_key("v")
PENDING = 8000
"""Enough transfers that forging them takes a second or two: room to land a signal in it."""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A chain at height 0 with a proposal and PENDING transfers waiting for block 1."""
    home = tmp_path_factory.mktemp("interrupts") / "home"
    with make_chain(home, {A.address: 10**9, B.address: 10**6}, {V.address: 500}, max_block_txs=2 * PENDING) as chain:
        chain.submit(propose(chain, V, 70))
        txs = [make_tx(A, nonce, "transfer", to=B.address, amount=1) for nonce in range(PENDING)]
        for start in range(0, PENDING, 1000):
            assert all(result.error is None for result in chain.submit_many(txs[start:start + 1000]))
    return home


def on_disk(home: Path) -> tuple[int, int]:
    """(height, pending txs) as the database holds them."""
    with Chain.open(home) as chain:
        return chain.committed_height(), chain.mempool.count


class Trial:
    """One ``chain forge`` on a fresh copy of the template, sent ``signum`` after ``delay`` s."""

    def __init__(self, template: Path, directory: Path, delay: float | None, signum: int = signal.SIGINT) -> None:
        self.home = directory / f"home-{time.monotonic_ns()}"
        shutil.copytree(template, self.home)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(self.home), "chain", "forge"],
            cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        if delay is not None:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(signum)
        self.stdout, self.stderr = proc.communicate(timeout=120)
        self.seconds = time.monotonic() - started
        self.returncode = proc.returncode
        self.signum = signum
        self.height, self.pending = on_disk(self.home)

    def outcome(self) -> str:
        """What the process said, checked against the database: 'done', 'committed' or 'unchanged'."""
        no_traceback(subprocess.CompletedProcess([], self.returncode, self.stdout, self.stderr))
        name = signal.Signals(self.signum).name
        if self.returncode == 0:
            assert "Forged block 1" in self.stdout, self.stdout[:500]
            assert (self.height, self.pending) == (1, 0)
            return "done"
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr
        line = lines[0]
        if "after block" in line:
            assert f"interrupted by {name} after block 1 was committed" in line, line
            assert self.returncode == 128 + self.signum
            assert (self.height, self.pending) == (1, 0), f"said committed, but the database holds {self.height}"
            return "committed"
        assert "nothing was changed" in line, line
        assert self.returncode in (1, 128 + self.signum)
        assert (self.height, self.pending) == (0, PENDING + 1), f"said nothing changed, but height is {self.height}"
        return "unchanged"


def test_interrupted_forge_reports_truthfully_whether_the_block_committed(template, tmp_path):
    full = Trial(template, tmp_path, None)
    assert full.outcome() == "done"
    low, high = 0.0, full.seconds
    outcomes: dict[str, list[float]] = {}
    for _ in range(9):
        delay = (low + high) / 2
        trial = Trial(template, tmp_path, delay)
        outcome = trial.outcome()
        outcomes.setdefault(outcome, []).append(round(delay, 3))
        if outcome == "unchanged":
            low = delay
        else:
            high = delay
        shutil.rmtree(trial.home)
    assert "unchanged" in outcomes and "committed" in outcomes, outcomes


def test_sigterm_during_a_forge_is_reported_too(template, tmp_path):
    full = Trial(template, tmp_path, None)
    trial = Trial(template, tmp_path, full.seconds * 0.6, signal.SIGTERM)
    assert trial.outcome() in ("unchanged", "committed", "done")
    if trial.outcome() != "done":
        assert "SIGTERM" in trial.stderr
    verify = posctl(trial.home, "chain", "verify")
    assert verify.returncode == 0, verify.stderr


# ---- the node ---------------------------------------------------------------------------------


def node_forging(template: Path, tmp_path: Path) -> tuple[Node, Path]:
    """A node that starts forging the big block 0.5 s after it is up."""
    home = tmp_path / "home"
    shutil.copytree(template, home)
    return Node(home, tmp_path, interval=0.5), home


def check_after(home: Path, log: str) -> int:
    height, pending = on_disk(home)
    assert (height, pending) in ((0, PENDING + 1), (1, 0))
    assert (re.search(r"block 1 validator", log) is not None) == (height == 1), log
    verify = posctl(home, "chain", "verify")
    assert verify.returncode == 0, verify.stderr
    return height


def test_node_logs_a_signal_and_stops_after_the_call_in_progress(template, tmp_path):
    node, home = node_forging(template, tmp_path)
    time.sleep(1.0)
    node.proc.send_signal(signal.SIGINT)
    assert node.wait(60) == 0
    log = node.output()
    assert "received SIGINT: stopping once the chain call in progress is done" in log, log
    assert "Traceback" not in log
    check_after(home, log)
    assert not (home / "node.json").exists()


def test_second_sigint_exits_as_soon_as_the_commit_is_on_disk(template, tmp_path):
    node, home = node_forging(template, tmp_path)
    time.sleep(1.0)
    node.proc.send_signal(signal.SIGINT)
    time.sleep(0.2)
    second = time.monotonic()
    node.proc.send_signal(signal.SIGINT)
    status = node.wait(60)
    waited = time.monotonic() - second
    log = node.output()
    assert status == 128 + signal.SIGINT, log
    assert "received SIGINT: stopping" in log and "received SIGINT again: exiting as soon as" in log, log
    assert "node stopped" in log
    assert "Traceback" not in log
    assert "leaked semaphore" not in log and "Warning" not in log, log  # the pools are released first
    assert waited < 30, f"took {waited:.1f} s to exit after the second Ctrl-C"
    check_after(home, log)
    assert not (home / "node.json").exists() and not (home / ".cookie").exists()


def test_a_second_ctrl_c_leaves_no_warning_of_leaked_semaphores(tmp_path):
    """A dev node admitting its validators' proposals has live pool workers; its second Ctrl-C
    exits at once (os._exit) and left the pools' semaphores to the resource tracker, which
    printed a "leaked semaphore objects" warning under the node's last line (4 runs of 4). The
    tracker writes after the node has exited: the output is read to its end (every writer gone)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--home", str(tmp_path / "home"), "node", "run", "--dev",
         "--interval", "1", "--listen", "127.0.0.1:0"],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    seen = ""
    while "block 3 " not in seen:  # the validators' proposals went through the pools
        line = proc.stdout.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    time.sleep(0.03)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGINT, seen + rest
    assert "node stopped" in rest and "leaked semaphore" not in rest and "Traceback" not in rest, rest


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_node_stopped_the_moment_it_advertises_itself_stops_cleanly(tmp_path, signum):
    """``posctl node stop`` signals the pid in ``node.json`` as soon as that file exists; the node
    must already be handling signals then (it once tuned its garbage collector and logged first,
    and a SIGTERM there killed it outright, leaving its cookie and record behind)."""
    home = tmp_path / "home"
    with make_chain(home, {A.address: 10**6}, {V.address: 500}):
        pass
    for round_ in range(3):
        log_path = tmp_path / f"node-{round_}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run",
                 "--listen", "127.0.0.1:0", "--interval", "3600"],
                cwd=ROOT, env=env(), stdout=log, stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 30
            while not (home / "node.json").exists():
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.001)
            proc.send_signal(signum)
            status = proc.wait(timeout=30)
        output = log_path.read_text()
        assert status == 0, f"round {round_}: exit {status}\n{output}"
        assert "Traceback" not in output and "node stopped" in output, output
        assert not (home / "node.json").exists() and not (home / ".cookie").exists()


INTERRUPT_ON_IMPORT = '''
import importlib.abc, os, signal, sys

class InterruptOnImport(importlib.abc.MetaPathFinder):
    """Sends this process SIGINT the moment the named module starts to import: a Ctrl-C that
    lands exactly there, every time."""

    def find_spec(self, name, path=None, target=None):
        if name == os.environ["POSCTL_TEST_INTERRUPT_AT"]:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptOnImport())
'''


@pytest.mark.parametrize("module, returncode, stderr", [
    ("click", -signal.SIGINT, ""),  # the executable's own imports: ends quietly, as a C tool does
    ("cli.chain_cmd", 1, "error: aborted: nothing was changed"),  # the command's: its handler
])
def test_a_ctrl_c_while_the_executable_imports_prints_no_traceback(tmp_path, module, returncode, stderr):
    """The installed ``posctl`` executable (not ``python -m``), interrupted while Python imports
    its code: a ``sitecustomize`` on the path sends the signal when ``module`` is imported. Python
    left alone prints a ``KeyboardInterrupt`` traceback there (seen at random Ctrl-Cs in ~1 of 4
    interrupted commands)."""
    executable = shutil.which("posctl", path=str(Path(sys.executable).parent))
    assert executable, "the test needs posctl installed beside this Python"
    (tmp_path / "sitecustomize.py").write_text(INTERRUPT_ON_IMPORT)
    result = subprocess.run(
        [executable, "--home", str(tmp_path / "home"), "chain", "status"], capture_output=True, text=True,
        env=env(POSCTL_TEST_INTERRUPT_AT=module, PYTHONPATH=str(tmp_path)), timeout=60,
    )
    assert (result.returncode, result.stderr.strip(), result.stdout) == (returncode, stderr, "")
    assert not (tmp_path / "home").exists()


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (its pool workers, for a node)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_a_ctrl_c_at_the_terminal_stops_a_node_and_its_workers_quietly(tmp_path):
    """A terminal's Ctrl-C reaches every process in the foreground group: the node and its
    signature-checking workers. The node stops as usual; the workers, which once printed a
    ``KeyboardInterrupt`` traceback each under "node stopped", leave it to the node."""
    home = tmp_path / "home"
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run", "--dev",
             "--listen", "127.0.0.1:0", "--interval", "0.1"],
            cwd=ROOT, env=env(POSCTL_KDF="light"), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while "block 3 validator" not in log_path.read_text() or not children(proc.pid):
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.05)
            workers = children(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            status = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    output = log_path.read_text()
    assert status == 0, output
    assert "node stopped" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    assert wait_gone(workers, 5.0) == []
    assert posctl(home, "chain", "verify").returncode == 0


def start_big_init(tmp_path: Path, chain_id: str, accounts: int,
                   **extra_env: str) -> tuple[Path, Path, subprocess.Popen[str]]:
    """(genesis file, home, process): `chain init` of ``accounts`` allocations started in a
    session of its own (so a signal can go to its workers too, as from a terminal)."""
    from tests.test_scale import addresses

    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({
        "params": {"chain_id": chain_id},
        "allocations": {address: 1000 for address in addresses(accounts, chain_id.encode())},
        "bonds": {V.address: 500},
    }))
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "chain", "init", "--genesis",
                             str(genesis)], cwd=ROOT, env=env(**extra_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    return genesis, home, proc


def test_sigterm_during_a_genesis_unwinds_like_ctrl_c(tmp_path):
    """``timeout`` or a supervisor sends SIGTERM: ``chain init`` removes what it wrote and says
    so in one line, as for Ctrl-C. It was killed outright: a half-made chain stayed behind (and,
    when the signal reached the command alone, multiprocessing's resource tracker warned of
    leaked semaphores on stderr)."""
    genesis, home, proc = start_big_init(tmp_path, "posctl-sigterm", 60_000)
    deadline = time.monotonic() + 60
    while not (home / "chain").exists():  # the genesis is being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGTERM)  # as `timeout` does: the command and its workers
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err.strip(), out) == (1, "error: stopped by SIGTERM: nothing was changed", ""), err
    assert wait_gone(workers, 5.0) == []
    status = posctl(home, "chain", "status")
    assert status.returncode == 1 and "no chain at" in status.stderr, status.stderr
    assert posctl(home, "chain", "init", "--genesis", str(genesis)).returncode == 0


SIGNAL_WHILE_SHOWING_THE_NEW_CHAIN = '''
import os, signal
from ledger.chain.facade import Chain

original = Chain.totals

def totals(self):
    """The signal lands as `chain init` reads the new chain for its summary: the chain is whole."""
    os.kill(os.getpid(), getattr(signal, os.environ["POSCTL_TEST_SIGNAL"]))
    return original(self)

Chain.totals = totals
'''


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_chain_init_interrupted_once_the_chain_is_whole_says_it_is_there(tmp_path, signum):
    """Interrupted while it prints the new chain's summary (a ``--json`` genesis of a million
    allocations takes seconds to print), ``chain init`` said "nothing was changed" about a chain
    that is complete and stays: the next ``chain init`` would then refuse, "a chain already
    exists", to a user told there was none."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_WHILE_SHOWING_THE_NEW_CHAIN)
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), "chain", "init", "--chain-id", "posctl-shown",
         "--alloc", f"{A.address}=1000", "--bond", f"{V.address}=500"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env=env(POSCTL_TEST_SIGNAL=signal.Signals(signum).name, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}"),
    )
    assert (result.returncode, result.stderr.strip(), result.stdout) == (
        1, f"error: interrupted after the chain was created in {home}: it is complete; `posctl chain status` shows it",
        ""), result.stderr
    status = posctl(home, "chain", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["chain_id"] == "posctl-shown", status.stderr


SIGTERM_AFTER_TWO_WALLETS = '''
import os, signal
from wallet.keystore import Keystore

original = Keystore.create
made = []

def create(self, *args, **kwargs):
    """SIGTERM this process as soon as the second wallet exists."""
    result = original(self, *args, **kwargs)
    made.append(args[0])
    if len(made) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return result

Keystore.create = create
'''


def test_a_dev_node_stopped_while_it_makes_its_chain_says_how_to_finish(tmp_path):
    """``node run --dev`` on an empty home makes three wallets and a chain before any node runs;
    stopped after two wallets, it must not claim that nothing was changed: it says to run the
    command again, and that run reuses both wallets and finishes the chain."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGTERM_AFTER_TWO_WALLETS)
    home = tmp_path / "home"
    args = [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run", "--dev", "--listen", "127.0.0.1:0"]
    stopped = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60,
                             env=env(POSCTL_KDF="light", PYTHONPATH=f"{hook}{os.pathsep}{ROOT}"))
    assert stopped.returncode == 1, stopped.stderr
    assert stopped.stderr.strip() == (f"error: interrupted while creating the dev chain in {home}: run the same "
                                      "command again to finish it (it reuses the dev wallets made so far)")
    assert sorted(path.name for path in (home / "wallets").glob("*.json")) == ["dev.json", "dev2.json"]
    assert not Chain.exists(home)
    log_path = tmp_path / "again.log"
    with open(log_path, "w") as log:
        again = subprocess.Popen(args, cwd=ROOT, env=env(POSCTL_KDF="light"), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while "node URL" not in log_path.read_text():
            assert again.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=30) == 0, log_path.read_text()
    output = log_path.read_text()
    assert "dev wallet 'dev' already existed: reusing it" in output
    assert "dev wallet 'dev2' already existed: reusing it" in output
    assert "with 3 dev validators" in output


@pytest.mark.parametrize("gap", [0.0, 0.1, 0.25])
def test_two_ctrl_cs_during_a_genesis_never_hang(tmp_path, gap):
    """The second Ctrl-C lands while the first one's clean-up runs (the pool shutting down, the
    half-written genesis being deleted): `chain init` must still exit at once, in one line, with
    no worker left. It hung in most such runs (the pool's workers, feeder and manager threads
    waiting on each other at interpreter exit) and printed worker tracebacks in others."""
    genesis, home, proc = start_big_init(tmp_path, "posctl-twice", 120_000)
    deadline = time.monotonic() + 60
    while not children(proc.pid) or not (home / "chain").exists():  # the workers are building it
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    time.sleep(0.3)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(gap)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("chain init hung after two Ctrl-Cs") from None
    assert proc.returncode == 1 and out == "", err
    assert err.strip() == "error: aborted: nothing was changed", err
    assert wait_gone(workers, 5.0) == []
    assert posctl(home, "chain", "init", "--genesis", str(genesis)).returncode == 0


A_WORKER_STILL_STARTING = '''
import os, time

if b"--multiprocessing-fork" in open("/proc/self/cmdline", "rb").read().split(b"\\0"):
    # a pool worker, not yet at its own code: its interpreter is starting (slowly, on a busy machine)
    (__import__("pathlib").Path(os.environ["POSCTL_TEST_MARKS"]) / str(os.getpid())).touch()
    time.sleep(5)
'''


def test_a_ctrl_c_while_pool_workers_start_prints_only_the_one_line(tmp_path):
    """A Ctrl-C goes to the workers too. One that lands before a worker's own code runs (its
    interpreter starting, the parent's main module importing: tenths of a second, seconds under
    load) raised a KeyboardInterrupt there, and its traceback was printed under `chain init`'s one
    line (a CI failure of the two-Ctrl-C test). Workers start with SIGINT blocked."""
    hook, marks = tmp_path / "hook", tmp_path / "marks"
    hook.mkdir()
    marks.mkdir()
    (hook / "sitecustomize.py").write_text(A_WORKER_STILL_STARTING)
    genesis, home, proc = start_big_init(tmp_path, "posctl-starting", 60_000, POSCTL_TEST_MARKS=str(marks),
                                         PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    deadline = time.monotonic() + 60
    while not any(marks.iterdir()):  # a worker is starting
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    workers = children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out, err.strip()) == (1, "", "error: aborted: nothing was changed"), err
    assert wait_gone(workers, 5.0) == []


SEMAPHORES_FREED_BY_THE_ENDING_MANAGER_THREAD = '''
import threading, time
from multiprocessing import resource_tracker, synchronize, util

begun = threading.Event()


def cleanup(name):
    """multiprocessing's, slowed where a process ending meanwhile leaks: unlinked, still registered."""
    synchronize.sem_unlink(name)
    if threading.current_thread() is not threading.main_thread():  # the pool's manager thread, ending
        begun.set()
        time.sleep(0.2)
    resource_tracker.unregister(name, "semaphore")


synchronize.SemLock._cleanup = staticmethod(cleanup)
run_finalizers = util._run_finalizers


def late_run_finalizers(minpriority=None):
    """The main thread releasing the pools' semaphores once the manager thread has begun to."""
    if minpriority == 0 and threading.current_thread() is threading.main_thread():
        begun.wait(5)
    run_finalizers(minpriority)


util._run_finalizers = late_run_finalizers
'''


def test_an_interrupted_genesis_leaks_no_semaphore_its_pool_is_freeing(tmp_path):
    """An interrupted ``chain init`` exits with ``os._exit`` once its workers are killed. The pool's
    manager thread, ending as they die, frees the pool's queues meanwhile, each semaphore unlinked
    and then unregistered from multiprocessing's resource tracker; exiting between the two left
    the tracker to print "leaked semaphore" and "No such file or directory" warnings under the
    command's one line (once in a CI run of the two-Ctrl-C test above). The hook widens that
    window; the command must wait for the thread's finalizers before it exits."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SEMAPHORES_FREED_BY_THE_ENDING_MANAGER_THREAD)
    genesis, home, proc = start_big_init(tmp_path, "posctl-leak", 120_000,
                                         PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    deadline = time.monotonic() + 60
    while not children(proc.pid) or not (home / "chain").exists():  # the workers are building it
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == "", err
    assert err.strip() == "error: aborted: nothing was changed", err


CTRL_C_WHILE_AES_TAKES_ITS_BLOCK_CIPHER = '''
import linecache, os, signal, sys

sent = []


def tracer(frame, event, arg):
    """SIGINT exactly where pycryptodome's CTR mode has taken the block cipher and is about to
    tell the block cipher's own pointer to let go of it (AES-GCM is built on CTR)."""
    if sent or not frame.f_code.co_filename.endswith(os.path.join("Cipher", "_mode_ctr.py")):
        return None

    def line(frame, event, arg):
        if not sent and event == "line" and \\
                "block_cipher.release()" in linecache.getline(frame.f_code.co_filename, frame.f_lineno):
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return line
    return line


sys.settrace(tracer)
'''


def test_a_ctrl_c_inside_pycryptodome_never_aborts_the_process(tmp_path):
    """A Ctrl-C raised between pycryptodome's two lines that move the AES block cipher to the
    cipher mode left both owning it: the command printed its line, then the process aborted with
    ``free(): double free detected`` (exit 134; seen once in a CI run of the interrupted demo,
    during a wallet unlock). Every seal and unlock of a wallet builds AES-GCM so. The interrupt must
    land after pycryptodome's code, and the command end with its one line and nothing written."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CTRL_C_WHILE_AES_TAKES_ITS_BLOCK_CIPHER)
    home = tmp_path / "home"
    result = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "wallet", "new", "alice"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env=env(POSCTL_KDF="light", POSCTL_PASSWORD="a password of length",
                                    PYTHONPATH=f"{hook}{os.pathsep}{ROOT}"))
    assert result.returncode == 1, result.stderr  # -6 (SIGABRT) before
    lines = result.stderr.strip().splitlines()  # click closes a terminal's "^C" with a blank line
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nothing was changed" in lines[0], result.stderr
    assert not list(home.glob("wallets/*.json"))
