"""``posctl demo``: the tutorial's proof-of-stake story, end to end, with real commands.

Every step prints the command a user would type (``$ posctl …``) and then runs exactly that
command — the real click command, in this process — so what you see is what the CLI does. The
restart at the end is a real new process (``python -m cli.main``) on the same home, to show
that the chain resumes from disk and still replays from genesis.

The demo's wallets use light key stretching (``POSCTL_KDF=light``) so it finishes in seconds;
that setting makes passwords cheap to guess and is for tests and demos only.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import datetime
from pathlib import Path
from typing import Iterator, Sequence

import click

from cli.context import AppContext, fail, handles_errors, pass_app

DEMO_PASSWORD = "demo-password"
"""The demo wallets' password (handed to the commands through POSCTL_PASSWORD)."""

WALLETS = ("alice", "bob", "carol")
CHAIN_ID = "posctl-demo-1"
ALLOCATION = 1000
GENESIS_BOND = {"alice": 300}
STAKES = {"bob": 200, "carol": 100}
MIN_STAKE = 100
UNBONDING_BLOCKS = 3
BPM_ROUNDS = (
    {"alice": 72, "bob": 80, "carol": 65},
    {"alice": 68, "bob": 77, "carol": 90},
    {"alice": 75, "bob": 83, "carol": 61},
    {"alice": 70, "bob": 79, "carol": 88},
)
"""Heart rates per round, as in the tutorial where every validator sends its BPM."""

TRANSFER = ("alice", "carol", 50)
UNSTAKE = ("carol", 50)
MISSED_TURN_ATTEMPTS = 8
"""Rounds with carol alone: each has a 5-in-6 chance that someone else is drawn first."""
SLASH_PERCENT = "5%"
"""The default slash_fraction_bps (500)."""

ENV_OVERRIDES = {"POSCTL_PASSWORD": DEMO_PASSWORD, "POSCTL_KDF": "light"}
ENV_REMOVED = ("POSCTL_PASSWORD_FILE", "POSCTL_HOME")
"""A user's own password file or home must not leak into the demo's commands."""


@contextlib.contextmanager
def demo_environment() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in (*ENV_OVERRIDES, *ENV_REMOVED)}
    try:
        os.environ.update(ENV_OVERRIDES)
        for key in ENV_REMOVED:
            os.environ.pop(key, None)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DemoFailed(Exception):
    """A step's command failed; carries the command and its one-line error."""


class Story:
    """Runs and narrates the steps against one home directory."""

    def __init__(self, home: Path) -> None:
        self.home = home

    # ---- narration -------------------------------------------------------------------------

    def section(self, title: str, *explanation: str) -> None:
        click.echo()
        click.secho(f"== {title} ==", bold=True)
        for line in explanation:
            click.echo(line)
        click.echo()

    def note(self, text: str) -> None:
        click.echo(f"# {text}")

    # ---- running real commands -------------------------------------------------------------

    def run(self, *args: str, prefix: str = "") -> None:
        """Print ``$ posctl ARGS`` and run that command in this process."""
        from cli.main import posctl

        click.secho(f"$ {prefix}posctl {shlex.join(args)}", fg="cyan")
        try:
            posctl.main(["--home", str(self.home), *args], prog_name="posctl", standalone_mode=False)
        except click.ClickException as exc:
            raise DemoFailed(f"{shlex.join(args)}`: {exc.format_message()}") from None
        click.echo()

    def run_process(self, *args: str) -> None:
        """Print ``$ posctl ARGS`` and run it as a brand-new process on the same home."""
        click.secho(f"$ posctl {shlex.join(args)}      # a new process: python -m cli.main", fg="cyan")
        env = dict(os.environ)
        source_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "--home", str(self.home), *args],
            capture_output=True, text=True, env=env, timeout=60,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise DemoFailed(f"{shlex.join(args)}`: {last.removeprefix('error: ')}")
        for stream in (done.stderr, done.stdout):
            if stream.strip():
                click.echo(stream.rstrip("\n"))
        click.echo()

    def expect_refusal(self, *args: str) -> None:
        """Print and run a command that must be refused, showing its one-line error."""
        try:
            self.run(*args)
        except DemoFailed as exc:
            click.secho(f"error (as expected): {str(exc).split(': ', 1)[-1]}", fg="yellow")
            click.echo()
            return
        raise DemoFailed(f"{shlex.join(args)}`: it should have been refused")

    def last_trace_passed_over(self) -> bool:
        """Whether the newest block's draw passed over a validator that did not propose."""
        from ledger.chain.facade import Chain

        with Chain.open(self.home) as chain:
            return any(not entry.proposed for entry in chain.block(chain.height).trace)

    def unbonding_of(self, name: str) -> list[dict[str, int]]:
        """Read one account directly (no command is running, so the database is free)."""
        from ledger.chain.facade import Chain
        from wallet.keystore import Keystore

        address = Keystore(self.home / "wallets").load(name).address(0, 0)
        with Chain.open(self.home) as chain:
            return [{"amount": e.amount, "release_height": e.release_height} for e in chain.account(address).unbonding]

    # ---- the story -------------------------------------------------------------------------

    def tell(self) -> None:
        self.section(
            "1. Three people make wallets",
            "Each wallet is a BIP-39 recovery phrase (12 words here, 24 by default) from which keys are",
            "derived; the file on disk is encrypted with the password.",
        )
        for name in WALLETS:
            self.run("wallet", "new", name, "--words", "12", prefix="POSCTL_KDF=light ")

        bonds = [arg for name, amount in GENESIS_BOND.items() for arg in ("--bond", f"{name}={amount}")]
        allocs = [arg for name in WALLETS for arg in ("--alloc", f"{name}={ALLOCATION}")]
        self.section(
            "2. Genesis: everyone gets tokens, alice is the first validator",
            "--alloc gives liquid (spendable) tokens; --bond gives bonded stake, the only thing",
            "that counts in the lottery. A chain needs at least one validator or no block could",
            "ever be forged.",
        )
        self.run(
            "chain", "init", "--chain-id", CHAIN_ID, *allocs, *bonds,
            "--param", f"min_stake={MIN_STAKE}", "--param", f"unbonding_blocks={UNBONDING_BLOCKS}",
        )

        self.section(
            "3. Bob and carol stake; alice proposes; block 1",
            "A stake tx moves liquid tokens to bonded. It takes effect when a block includes it,",
            "and a block needs a lottery: here alice, the only validator so far, sends her BPM.",
        )
        for name, amount in STAKES.items():
            self.run("wallet", "stake", name, str(amount))
        self.run("wallet", "propose", "alice", "--bpm", "72")
        self.run("chain", "forge")
        self.run("chain", "validators")

        self.section(
            "4. Lottery rounds: every validator sends its heart rate",
            "Each round all three propose a BPM for the next height, with a VRF proof over that",
            "height's seed. The seed fixes an order over every eligible validator, weighted by bonded",
            "stake only (never the liquid balance): the first in that order who proposed wins, and its",
            "VRF output seeds the next block. Nothing the forger picks (time, txs, their order) enters",
            "the seed, so nobody can re-roll it; `chain show` explains each draw step by step.",
        )
        for number, round_bpms in enumerate(BPM_ROUNDS, start=1):
            self.note(f"round {number}")
            for name, bpm in round_bpms.items():
                self.run("wallet", "propose", name, "--bpm", str(bpm))
            self.run("chain", "forge")
        self.note("a forge with no proposals makes no block, and says why:")
        self.run("chain", "forge")
        self.note("few blocks, so the actual shares can stray far from the odds; over many they converge:")
        self.run("chain", "validators")
        self.run("chain", "show")

        self.section(
            "5. A missed turn",
            "Only carol proposes now. When the seed's order puts someone else first, that validator",
            "misses a turn (after max_missed in a row it is jailed) and the block goes down the fixed",
            "order to carol: leaving a proposal out can only hand the block on, never re-draw it.",
        )
        for attempt in range(MISSED_TURN_ATTEMPTS):
            self.run("wallet", "propose", "carol", "--bpm", str(62 + attempt))
            self.run("chain", "forge")
            if self.last_trace_passed_over():
                break
        self.run("chain", "validators")

        self.section(
            "6. Equivocation, caught and slashed",
            "bob signs two different proposals for the same height. His wallet's slashing protection",
            "refuses the second; forcing it (--allow-equivocation) produces evidence anyone can report.",
            f"The next block takes {SLASH_PERCENT} of bob's bonded stake, pays part of it to the block's",
            "validator, burns the rest, tombstones bob for good and starts unbonding what remains.",
        )
        first, second = self.home / "bob-a.json", self.home / "bob-b.json"
        self.run("wallet", "propose", "bob", "--bpm", "80", "--out", str(first))
        self.expect_refusal("wallet", "propose", "bob", "--bpm", "81", "--out", str(second))
        self.run("wallet", "propose", "bob", "--bpm", "81", "--out", str(second), "--allow-equivocation")
        self.run("chain", "evidence", str(first), str(second))
        self.run("wallet", "propose", "alice", "--bpm", "71")
        self.run("chain", "forge")
        self.run("chain", "validators")
        self.run("wallet", "show", "bob")

        sender, recipient, amount = TRANSFER
        self.section(
            "7. A transfer",
            f"{sender} sends {amount} liquid tokens to {recipient}. Alice proposes so that a block is forged.",
        )
        self.run("wallet", "send", sender, recipient, str(amount))
        self.run("wallet", "propose", "alice", "--bpm", "81")
        self.run("chain", "forge")
        self.run("wallet", "show", recipient)

        who, amount = UNSTAKE
        self.section(
            "8. Unstake, and the lock-up",
            f"{who} unstakes {amount}. The tokens leave the bonded stake at once (no more lottery",
            f"weight) but stay locked, unbonding, for {UNBONDING_BLOCKS} blocks before they are",
            "liquid again: a validator caught misbehaving during that time is still slashed.",
        )
        self.run("wallet", "unstake", who, str(amount))
        self.run("wallet", "propose", "alice", "--bpm", "74")
        self.run("chain", "forge")
        self.run("wallet", "show", who)
        for wait in range(UNBONDING_BLOCKS + 1):
            if not self.unbonding_of(who):
                break
            self.note(f"another block while {who}'s {amount} is locked (alice proposes)")
            self.run("wallet", "propose", "alice", "--bpm", str(66 + wait))
            self.run("chain", "forge")
        if self.unbonding_of(who):
            raise DemoFailed(f"wallet show {who}  ({who}'s unbonding was not released in time)")
        self.note(f"the lock-up is over: {who}'s {amount} is liquid again")
        self.run("wallet", "show", who)

        self.section(
            "9. Restart",
            "Every command above opened the database, did its work in one atomic batch and closed it.",
            "A brand-new process finds the chain where it was, and replays it from genesis: every",
            "block hash, signature, VRF proof, seed, draw, slashing and state root must come out the same.",
        )
        self.run_process("chain", "status")
        self.run_process("chain", "verify")
        self.run("chain", "show")


@click.command("demo")
@click.option(
    "--home", "demo_home", type=click.Path(file_okay=False, path_type=Path),
    help="Run the demo in exactly this directory (default: a new demos/<time> directory under "
    "the posctl home, i.e. under the global --home).",
)
@pass_app
@handles_errors
def demo(app: AppContext, demo_home: Path | None) -> None:
    """Run the whole proof-of-stake story end to end: wallets, genesis, stakes, lottery rounds
    with VRF proofs and draw traces, a missed turn, an equivocation caught and slashed, a
    transfer, an unstake through its lock-up, a restart and a full verify.

    Without --home the demo makes a fresh directory under the posctl home (~/.posctl/demos/…),
    never touching your own chain or wallets, and keeps it so you can explore it afterwards.
    """
    from ledger.chain.facade import Chain

    if demo_home is None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        home = (app.home / "demos" / stamp).resolve()
    else:
        home = demo_home.expanduser().resolve()
    if Chain.exists(home):
        raise fail(f"{home} already holds a chain: the demo needs a fresh home (omit --home for a new one)")
    taken = [name for name in WALLETS if (home / "wallets" / f"{name}.json").exists()]
    if taken:
        raise fail(f"{home} already has wallet(s) {', '.join(taken)}: the demo needs a fresh home")
    _tell(home)


def _tell(home: Path) -> None:
    click.secho("posctl demo: the tutorial's proof-of-stake story, with real commands", bold=True)
    click.echo(f"home: {home} (the demo's own chain and wallets, kept for you to explore)")
    click.echo(
        "The demo uses LIGHT key stretching (POSCTL_KDF=light, scrypt N=2^12) so it runs fast;\n"
        "that makes passwords cheap to guess: never use it for real wallets."
    )
    click.echo("To type these commands yourself:")
    click.echo(f"  export POSCTL_HOME={shlex.quote(str(home))} POSCTL_PASSWORD={DEMO_PASSWORD}")
    kept = f"what it did so far is in {home} (explore it, or delete it when you are done)"
    with demo_environment():
        try:
            Story(home).tell()
        except DemoFailed as exc:
            raise fail(f"the demo stopped at `posctl {exc}; {kept}") from None
        except (KeyboardInterrupt, click.Abort):  # the generic "nothing was changed" would be untrue
            # (a command the story runs in this process turns Ctrl-C into click.Abort)
            raise fail(f"the demo was interrupted; {kept}") from None
    click.secho("The demo finished: the chain verified after a restart.", bold=True)
    click.echo("Explore it yourself (and delete the directory when you are done):")
    click.echo(f"  posctl --home {shlex.quote(str(home))} chain show --last 3")
    click.echo(f"  posctl --home {shlex.quote(str(home))} chain validators")


__all__: Sequence[str] = ("demo",)
