"""``posctl validator run``: a validator that proposes for every block by itself.

The tutorial's validator terminal, made real: unlock the wallet once, then for every new height
sign one BPM proposal with its VRF proof and submit it to the running node, log each proposal
and each block won. Three terminals, three validators, one node: the lottery plays out live.

A validator needs a node: LevelDB admits one process, and the node is the one forging, so this
command only ever talks to a node's API (this home's, or ``--node URL``). Every proposal goes
through the wallet's slashing protection (:mod:`wallet.protection`) before it leaves the
process, so a validator restarted mid-height, or started twice, never signs two different
proposals for one height: it skips that height and says why.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from cli.context import AppContext, INTEGER_TEXT, Seconds, color_setting, fail, handles_errors, json_option, pass_app
from cli.wallet_cmd import KEY_NUMBER, key_options, unlock
from ledger.consensus.state import check_can_propose
from ledger.errors import InvalidProposal, LedgerError, NodeUnavailable
from ledger.node.signals import signals_to_thread
from ledger.params import Params
from wallet.keystore import Keystore
from wallet.protection import SlashingProtection, WouldEquivocate
from wallet.signing import build_bpm

DEFAULT_POLL = 0.5
"""Seconds between looks at the node's height: well below the node's forging interval."""

SIMULATED_RANGE = (60, 100)
"""A resting heart, as the tutorial's validators typed it; clamped to the chain's BPM range."""

SIMULATED_STEP = 3
"""Largest change between two simulated readings: a heart drifts, it does not jump."""

BPM_SOURCES = ("simulated", "stdin")


# ---- where heart rates come from ----------------------------------------------------------------


class SimulatedHeart:
    """A random walk inside the resting range, seeded by the address: each validator has its own
    heart, and the same one after a restart."""

    def __init__(self, seed: str, low: int, high: int) -> None:
        self.rng = random.Random(seed)
        self.low, self.high = low, high
        self.bpm = self.rng.randint(low, high)

    def next(self, stop: threading.Event) -> int | None:
        bpm = self.bpm + self.rng.randint(-SIMULATED_STEP, SIMULATED_STEP)
        if bpm > self.high:  # bounce off the edges rather than stick to them
            bpm = 2 * self.high - bpm
        elif bpm < self.low:
            bpm = 2 * self.low - bpm
        self.bpm = min(max(bpm, self.low), self.high)
        return self.bpm


class StdinHeart:
    """One reading per proposal: the next line of stdin that is an integer (other lines are
    logged and skipped; the node judges the range). End of input stops the validator.

    A reader thread fills a queue, so Ctrl-C is never stuck behind a blocking read."""

    def __init__(self, warn: Callable[[str], None]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.warn = warn
        threading.Thread(target=self._read, name="posctl-bpm-stdin", daemon=True).start()

    def _read(self) -> None:
        try:
            for line in sys.stdin:
                self.lines.put(line)
        except (OSError, ValueError):
            pass
        self.lines.put(None)

    def next(self, stop: threading.Event) -> int | None:
        while not stop.is_set():
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                return None
            text = line.strip()
            if INTEGER_TEXT.fullmatch(text):
                return int(text)
            if text:
                self.warn(f"ignored stdin line {text[:40]!r}: a BPM reading is one whole number per line")
        return None


# ---- the loop -------------------------------------------------------------------------------------


@dataclass
class Tally:
    proposals: int = 0
    wins: int = 0
    proposed: dict[int, str] = field(default_factory=dict)
    """Height -> tx id of the proposals submitted and not yet reported as won or lost."""


class Validator:
    """One wallet key proposing through one node until asked to stop."""

    def __init__(self, app: AppContext, name: str, key: bytes, address: str, heart: Any, poll: float,
                 log: Callable[..., None], who: str | None = None) -> None:
        self.app = app
        self.name = name
        self.who = who or name
        """The wallet as suggested commands name it (with --account/--index when not 0)."""
        self.key = key
        self.address = address
        self.heart = heart
        self.poll = poll
        self.log = log
        self.stop = threading.Event()
        self.protection = SlashingProtection(app.wallets_dir, name)
        self.tally = Tally()
        self.backend: Any = None
        self.chain_id: str | None = None
        self.decided: set[int] = set()
        """Heights this run has proposed for or decided to skip."""
        self.last_height: int | None = None
        self.waiting_reason: str | None = None
        self.node_lost = False
        self.carried: int | None = None
        """A reading that arrived after the block it was read for: used for the next height."""
        self.signals = 0

    def on_signal(self, signum: int) -> None:
        """SIGINT or SIGTERM, in the signal watcher thread (:mod:`ledger.node.signals`).

        The first stops the loop after the call in progress, so a proposal is never cut between
        its slashing-protection record and its submission. The second stops at once, abandoning
        that call (a node that stopped answering holds one for up to a minute): safe, because
        the record is written, atomically, before a proposal leaves, and a proposal that never
        arrives costs only its block.
        """
        what = signal.Signals(signum).name
        self.signals += 1
        if self.signals == 1:
            self.log("stopping", f"received {what}: stopping after the call in progress (Ctrl-C again to stop "
                     "at once)", signal=what)
            self.stop.set()
            return
        tally = self.tally
        self.log("stopped", f"validator '{self.name}' stopped at once on a second {what}, abandoning the call "
                 f"in progress: {tally.proposals} proposals, {tally.wins} blocks won",
                 proposals=tally.proposals, wins=tally.wins, abandoned=True)
        sys.stdout.flush()
        os._exit(128 + signum)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.step()
            except NodeUnavailable as exc:
                self._lost_node(exc.cause)
            if self.stop.wait(self.poll):
                break

    def step(self) -> None:
        if self.backend is None:
            self.backend = self._reconnect()
            if self.backend is None:
                return
        status = self.backend.status()
        if status["chain_id"] != self.chain_id:
            self.stop.set()
            raise fail(f"the node now serves chain '{status['chain_id']}', not '{self.chain_id}': "
                       "the validator stopped; start it again for the new chain")
        height = status["height"]
        if self.last_height is not None and height > self.last_height:
            self._report_blocks(self.last_height + 1, height)
            self.decided = {h for h in self.decided if h > height}
            if height > self.last_height + 1 and self.waiting_reason is None:  # (waiting, it proposes nothing)
                first = self.last_height + 2
                missed = f"heights {first}..{height} were" if height > first else f"height {height} was"
                self.log("missed", f"{missed} forged before this validator polled again: nothing was proposed "
                         f"for them; poll more often than the node forges (--poll, now {self.poll:g}s)",
                         heights=[first, height])
        self.last_height = height
        target = height + 1
        if target in self.decided:
            return
        account = self.backend.account(self.address)
        params = Params.from_dict(status["params"])
        try:
            check_can_propose(account["status"], account["bonded"], params, target, target)
        except InvalidProposal as exc:
            reason = str(exc).replace("NAME", self.who)
            if reason != self.waiting_reason:
                self.log("waiting", f"not proposing for height {target}: {reason}; waiting", height=target,
                         reason=reason)
                self.waiting_reason = reason
            return
        self.waiting_reason = None
        self.decided.add(target)
        if target in self.protection.signed_heights(self.address, chain_id=status["chain_id"]):
            self.log("skipped", f"already signed a proposal for height {target} (slashing protection): "
                     "waiting for the next height", height=target)
            return
        bpm, self.carried = (self.carried, None) if self.carried is not None else (self.heart.next(self.stop), None)
        if bpm is None:
            if not self.stop.is_set():
                self.log("input", "stdin ended: no more BPM readings")
                self.stop.set()
            return
        if self.backend.status()["height"] != height:  # the reading came after that block: keep it for the next
            self.carried = bpm
            self.decided.discard(target)
            return
        tx = build_bpm(self.key, status["chain_id"], account["next_nonce"], bpm, target,
                       bytes.fromhex(status["next_seed"]))
        try:
            self.protection.guard(tx)
        except WouldEquivocate as exc:
            self.log("skipped", f"not proposing for height {target}: {exc}", height=target)
            return
        try:
            self.backend.submit(tx)
        except NodeUnavailable:
            raise
        except LedgerError as exc:
            self.log("refused", f"the node refused the proposal for height {target}: {exc}", height=target,
                     reason=str(exc))
            return
        self.tally.proposals += 1
        self.tally.proposed[target] = tx.id_hex
        self.log("proposed", f"proposed BPM {bpm} for height {target} (tx {tx.id_hex[:16]}, nonce {tx.nonce})",
                 height=target, bpm=bpm, tx_id=tx.id_hex, nonce=tx.nonce)

    def _report_blocks(self, first: int, last: int) -> None:
        """Say which of the new blocks this validator won (only heights it proposed for can be)."""
        for height in range(first, last + 1):
            if self.tally.proposed.pop(height, None) is None:
                continue
            block = self.backend.block(str(height))
            lottery = block.get("lottery") or {}
            trace = lottery.get("trace") or []
            mine = next((entry for entry in trace if entry["address"] == self.address), None)
            if mine is not None:
                drawn = f"drawn {_ordinal(mine['position'])}"
            else:  # the draw stops at the first validator with a proposal in the block
                drawn = f"the winner was drawn {_ordinal(len(trace))}, before this validator"
            if block["validator"] == self.address:
                self.tally.wins += 1
                self.log("won", click.style(f"won block {height}", fg="green", bold=True)
                         + f" ({drawn}, hash {block['hash'][:16]})", height=height, hash=block["hash"])
            else:
                self.log("lost", f"block {height} went to {block['validator']} ({drawn})", height=height,
                         winner=block["validator"])

    def _reconnect(self) -> Any:
        backend = open_validator_backend(self.app)
        if backend is None:
            return None
        status = backend.status()
        if self.chain_id is None:
            self.chain_id = status["chain_id"]
        if self.node_lost:
            self.log("node", f"the node answers again at {backend.url}: chain {status['chain_id']} at height "
                     f"{status['height']}", state="back", node=backend.url, chain_id=status["chain_id"],
                     height=status["height"])
            self.node_lost = False
        return backend

    def _lost_node(self, why: str) -> None:
        if self.backend is not None:
            self.backend.close()
        self.backend = None
        if not self.node_lost:
            self.log("node", "the node stopped answering: waiting for it to come back (Ctrl-C to stop)",
                     state="lost", reason=why)
            self.node_lost = True


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def open_validator_backend(app: AppContext) -> Any:
    """The node to propose through: ``--node URL``, else the node recorded in this home; None if
    neither answers."""
    from cli.backend import open_node_url
    from cli.node_backend import NodeBackend
    from ledger.node.record import find_running_node

    if app.node_url is not None:
        try:
            return open_node_url(app.home, app.node_url)
        except NodeUnavailable:
            return None
    record = find_running_node(app.home)
    return NodeBackend(record.url, home=app.home) if record is not None else None


def make_logger(app: AppContext) -> Callable[..., None]:
    """One line per event: timestamped text, or one JSON object per line with ``--json``."""

    def log(event: str, message: str, **fields: Any) -> None:
        if app.json_output:
            line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "event": event,
                               **fields}, sort_keys=True)
        else:
            line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        try:
            click.echo(line, color=color_setting())
        except OSError:
            pass

    return log


# ---- the command ----------------------------------------------------------------------------------


@click.group("validator")
def validator() -> None:
    """Run a validator that proposes for every block by itself.

    It needs a running node (`posctl node run`, in another terminal) on the same --home, or
    --node URL.
    """


@validator.command("run")
@click.argument("name")
@click.option("--bpm-source", type=click.Choice(BPM_SOURCES), default="simulated", show_default=True,
              help="Where heart rates come from: a simulated resting heart (a random walk in 60-100), or "
              "one whole number per line on stdin (one line per proposal; end of input stops).")
@click.option("--account", type=KEY_NUMBER, default=0, show_default=True, help="BIP-44 account number.")
@click.option("--index", type=KEY_NUMBER, default=0, show_default=True, help="Address index inside the account.")
@click.option("--poll", type=Seconds(min=0.05, max=60.0), default=DEFAULT_POLL, show_default=True,
              help="Seconds between looks at the node's height.")
@json_option
@pass_app
@handles_errors
def run(app: AppContext, name: str, bpm_source: str, account: int, index: int, poll: float) -> None:
    """Propose a BPM reading with its VRF proof for every new block, as wallet NAME.

    Unlocks the wallet once (POSCTL_PASSWORD, --password-file, or a prompt), then logs each
    proposal and each block won. A height this wallet already signed (say, before a restart) is
    skipped: slashing protection. Not eligible (no bond, jailed) → it says why and waits.
    Ctrl-C stops it after the call in progress (exit 0); Ctrl-C again stops it at once (exit 130).
    With --json, one JSON object per line.
    """
    Keystore(app.wallets_dir).load(name)  # unknown or damaged wallet: fail before anything else
    backend = open_validator_backend(app)
    if backend is None:
        where = f"at {app.node_url}" if app.node_url else f"for {app.home}"
        raise fail(f"no node is running {where}: a validator proposes through a node; start one with "
                   "`posctl node run` in another terminal (or pass --node URL), then run this again")
    status = backend.status()
    unlocked = unlock(app, name, why="the validator signs a proposal for every block")
    address = unlocked.address(account, index)
    log = make_logger(app)
    if bpm_source == "stdin":
        heart: Any = StdinHeart(lambda message: log("input", message))
    else:
        params = Params.from_dict(status["params"])
        low = min(max(SIMULATED_RANGE[0], params.bpm_min), params.bpm_max)
        heart = SimulatedHeart(address, low, max(min(SIMULATED_RANGE[1], params.bpm_max), low))
    runner = Validator(app, name, unlocked.private_key(account, index), address, heart, poll, log,
                       key_options(name, account, index))
    runner.backend, runner.chain_id = backend, status["chain_id"]
    with runner.protection.sole_validator(address):
        log("started", f"validator '{name}' ({address}) proposing through {backend.url} on chain "
            f"{status['chain_id']} from height {status['height'] + 1}, BPM from {bpm_source}; Ctrl-C to stop",
            address=address, node=backend.url, chain_id=status["chain_id"], height=status["height"])
        with signals_to_thread(runner.on_signal):
            try:
                runner.run()
            finally:
                if runner.backend is not None:
                    runner.backend.close()
    tally = runner.tally
    log("stopped", f"validator '{name}' stopped: {tally.proposals} proposals, {tally.wins} blocks won",
        proposals=tally.proposals, wins=tally.wins)


__all__ = ["validator", "SimulatedHeart", "StdinHeart", "Validator"]
