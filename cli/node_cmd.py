"""``posctl node``: run the long-lived forger with its local HTTP API.

The node itself lives in :mod:`ledger.node` and knows nothing of wallets. ``--dev`` is put
together here, like anvil: a dev chain whose validators are the ``dev``, ``dev2``, … wallets with
different stakes, and a round hook that has every one of them propose a BPM reading before each
forge attempt, so blocks flow at once and the stake-weighted draw shows from the first block.
``node status`` and ``node stop`` find the running node through the home's record (or
``--node``).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import click

from cli.context import (AppContext, Seconds, emit, fail, handles_errors, interrupts_reported_as, json_option,
                         pass_app, read_password_file)

DEFAULT_INTERVAL = 5.0
"""Seconds between forging rounds."""

DEV_INTERVAL = 2.0
"""Seconds between rounds with ``--dev``: blocks should be seen flowing."""

DEV_CHAIN_ID = "posctl-dev"
DEV_WALLET = "dev"
DEV_PASSWORD = "posctl-dev"
"""The dev wallet's password unless POSCTL_PASSWORD (or --password-file) says otherwise."""

DEV_BALANCE = 1_000_000
"""Liquid tokens of the dev wallet at genesis."""

DEV_BOND = 10_000
"""Bonded stake unit of the dev validators at genesis: with N of them, the first bonds N units,
the next N-1, …, the last one."""

DEFAULT_DEV_VALIDATORS = 3
MAX_DEV_VALIDATORS = 20

DEV_BPM_RANGE = (60, 100)
"""A resting heart rate: the dev validator's readings, clamped to the chain's BPM range."""


@click.group("node")
def node() -> None:
    """Run a long-lived forger with a local HTTP API; see whether one runs; stop it.

    While a node runs, every other posctl command on the same --home goes through its API
    (or the node at --node URL / POSCTL_NODE).
    """


def _parse_listen(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    from ledger.node.api import parse_listen

    try:
        return parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@node.command("run")
@click.option(
    "--listen", default="127.0.0.1:9000", show_default=True, callback=_parse_listen,
    envvar="POSCTL_LISTEN", help="HOST:PORT of the HTTP API (loopback unless --allow-remote; env POSCTL_LISTEN).",
)
@click.option(
    "--interval", type=Seconds(min=0.05, max=86400.0), default=None,
    help=f"Seconds between forging rounds [default: {DEFAULT_INTERVAL:g}; {DEV_INTERVAL:g} with --dev].",
)
@click.option(
    "--dev", is_flag=True,
    help=f"Create (or resume) a dev chain '{DEV_CHAIN_ID}' whose funded dev validators (wallets "
    f"'{DEV_WALLET}', '{DEV_WALLET}2', …, different stakes) all propose a BPM reading every round; their "
    f"recovery phrases are printed. Password: POSCTL_PASSWORD, else '{DEV_PASSWORD}'.",
)
@click.option(
    "--validators", "dev_validators", type=click.IntRange(1, MAX_DEV_VALIDATORS), default=None,
    help=f"With --dev on an empty home: how many dev validators, with different stakes "
    f"[default: {DEFAULT_DEV_VALIDATORS}].",
)
@click.option(
    "--allow-remote", is_flag=True,
    help="Allow --listen on a non-loopback address. Anyone who can reach it can read and submit; "
    "forging still needs the cookie ($POSCTL_HOME/.cookie).",
)
@click.option(
    "--request-timeout", type=Seconds(min=0.1, max=3600.0), default=10.0, show_default=True,
    help="Seconds a client has to send a whole request (headers and body); a slower one gets 408.",
)
@pass_app
@handles_errors
def run(app: AppContext, listen: tuple[str, int], interval: float | None, dev: bool, dev_validators: int | None,
        allow_remote: bool, request_timeout: float) -> None:
    """Forge a block every --interval seconds and serve the chain's HTTP JSON API.

    Quiet when there is nothing to forge; one line per block and per evicted tx otherwise.
    Stop it with Ctrl-C (or SIGTERM): the commit in progress finishes, then it exits 0.
    """
    from ledger.node.api import format_address, is_loopback_host
    from ledger.node.http_server import HttpLimits
    from ledger.node.service import Node, tune_garbage_collector
    from ledger.node.record import check_no_running_node, open_node_chain

    host, port = listen
    if not is_loopback_host(host):
        if not allow_remote:
            raise click.BadParameter(
                f"{format_address(host, port)} is not a loopback address and the API has no authentication: "
                "pass --allow-remote to bind it anyway",
                param_hint="'--listen'",
            )
        click.echo(
            f"warning: listening on {format_address(host, port)}: anyone who can reach it can submit "
            "transactions and forge blocks",
            err=True,
        )
    interval = interval if interval is not None else (DEV_INTERVAL if dev else DEFAULT_INTERVAL)

    if dev_validators is not None and not dev:
        raise click.UsageError("--validators is for --dev: a plain node forges whatever validators propose")
    check_no_running_node(app.home)
    hook = None
    if dev:
        chain, hook, banner = _prepare_dev(app, dev_validators)
    else:
        chain, banner = open_node_chain(app.home), []
    try:
        node_ = Node(chain, app.home, host=host, port=port, interval=interval, round_hook=hook,
                     allow_remote=allow_remote, log=_log_line, limits=HttpLimits(request_timeout=request_timeout))
    except BaseException:
        chain.close()
        raise
    with node_.stop_on_signals():  # before start(): `node stop` may signal us once the record exists
        try:
            node_.start()
        except BaseException:
            chain.close()
            raise
        tune_garbage_collector()
        node_.log(
            f"node listening on {node_.url}: chain {chain.params.chain_id} at height {chain.height}, "
            f"forging every {interval:g}s, pid {os.getpid()}; Ctrl-C to stop"
        )
        node_.log(f"explorer: open {node_.url}/ in a browser")
        for line in banner:
            node_.log(line)
        if hook is not None:
            hook.log = node_.log
            node_.log(f"node URL: {node_.url}/ ; in other terminals: `posctl chain status`, `posctl chain show`, "
                      "`posctl chain validators`, `posctl node status`")
        node_.run()
    if node_.failure is not None:
        raise fail(f"the node stopped after a storage failure: {node_.failure}")
    _log_line(f"{time.strftime('%Y-%m-%d %H:%M:%S')} node stopped")


def _log_line(line: str) -> None:
    try:
        click.echo(line)
    except OSError:
        pass


# ---- status and stop ---------------------------------------------------------------------------

STOP_TIMEOUT = 30.0
"""Seconds ``node stop`` waits for the node to finish its commit and exit."""


def _find_node(app: AppContext, stopping: bool = False) -> dict[str, Any]:
    """What the running node says about itself (``GET /node``): the one at --node, else the one
    this home records. One line, exit 1, if there is none. A recorded node that holds the chain
    but does not answer is named as such (``stopping``: returned, from its record, to be
    stopped), not reported as absent while every other command finds the chain in use."""
    from ledger.node.record import find_running_node, find_unanswering_node, query_node

    if app.node_url is not None:
        info = query_node(app.node_url)
        if info is None:
            raise fail(f"no node is running at {app.node_url} (from --node or POSCTL_NODE)")
        return info
    record = find_running_node(app.home)
    info = query_node(record.url) if record is not None else None
    if info is not None:
        return info
    silent = find_unanswering_node(app.home)
    if silent is not None and stopping:
        return {"pid": silent.pid, "url": silent.url, "answering": False}
    if silent is not None:
        raise fail(f"the node of {app.home} (pid {silent.pid}, {silent.url}) holds the chain but does not answer: it is "
                   f"busy, or stopped (`kill -CONT {silent.pid}` if you stopped it); `posctl node stop` stops it")
    raise fail(f"no node is running for {app.home}: start one with `posctl node run`")


def _uptime(started: str) -> int | None:
    """Seconds since the node's UTC start time (ISO 8601), or None if it is not one."""
    import calendar

    try:
        return max(0, int(time.time()) - calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")))
    except (TypeError, ValueError):
        return None


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@node.command("status")
@json_option
@pass_app
@handles_errors
def status(app: AppContext) -> None:
    """Show the running node: pid, URL, chain, height, uptime (exit 1 if none)."""
    from cli.node_backend import NodeBackend

    info = _find_node(app)
    backend = NodeBackend(info["url"], home=app.home)
    try:
        chain = backend.status()
    finally:
        backend.close()
    view = {
        "running": True, "pid": info["pid"], "url": info["url"], "address": info.get("address"),
        "home": info.get("home"), "chain_id": chain["chain_id"], "height": chain["height"],
        "mempool": chain["mempool"], "started": info.get("started"), "uptime_seconds": _uptime(info.get("started", "")),
        "interval": info.get("interval"),
    }

    def text(v: dict[str, Any]) -> str:
        return "\n".join([
            f"node running, pid {v['pid']}, {v['url']}",
            f"  chain       {v['chain_id']} at height {v['height']} ({v['mempool']} pending)",
            f"  uptime      {_duration(v['uptime_seconds'])} (since {v['started']})",
            f"  home        {v['home']}",
        ])

    emit(app, view, text)


@node.command("stop")
@click.option("--timeout", type=Seconds(min=0.1, max=3600.0), default=STOP_TIMEOUT, show_default=True,
              help="Seconds to wait for the node to exit.")
@json_option
@pass_app
@handles_errors
def stop(app: AppContext, timeout: float) -> None:
    """Stop the running node and wait until it is gone.

    Sends SIGTERM, as Ctrl-C in its terminal would: the commit in progress finishes first and
    nothing acknowledged is lost.
    """
    import signal

    from ledger.node.record import is_process_alive

    info = _find_node(app, stopping=True)
    pid = info["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
        if info.get("answering") is False:
            os.kill(pid, signal.SIGCONT)  # a node stopped with SIGSTOP would hold the SIGTERM for ever
    except ProcessLookupError:
        pass
    except PermissionError:
        raise fail(f"the node (pid {pid}) belongs to another user: stop it as that user") from None
    deadline = time.monotonic() + timeout
    with interrupts_reported_as(f"interrupted while waiting: the node (pid {pid}) was already asked to stop and "
                                "is stopping; `posctl node status` shows when it is gone"):
        while is_process_alive(pid):
            if time.monotonic() > deadline:
                raise fail(f"the node (pid {pid}) did not stop within {timeout:g}s: it may be finishing a long "
                           f"commit; wait and run `posctl node status`, or send Ctrl-C twice in its terminal")
            time.sleep(0.05)
    emit(app, {"stopped": True, "pid": pid, "url": info["url"]}, f"node stopped (pid {pid}, {info['url']})")


# ---- --dev -------------------------------------------------------------------------------------


def _dev_password(app: AppContext) -> tuple[str, str]:
    """(password, where it came from): --password-file, POSCTL_PASSWORD, else the default."""
    if app.password_file is not None:
        return read_password_file(app.password_file), f"from {app.password_file}"
    if os.environ.get("POSCTL_PASSWORD"):
        return os.environ["POSCTL_PASSWORD"], "from POSCTL_PASSWORD"
    return DEV_PASSWORD, f"'{DEV_PASSWORD}'"


def dev_wallet_names(count: int) -> list[str]:
    """``dev``, ``dev2``, ``dev3``…: the first keeps the name older dev chains used."""
    return [DEV_WALLET] + [f"{DEV_WALLET}{number}" for number in range(2, count + 1)]


def dev_bonds(count: int) -> list[int]:
    """Different stakes, so the draw's weighting shows: N, N-1, … 1 times ``DEV_BOND``."""
    return [DEV_BOND * (count - position) for position in range(count)]


def _prepare_dev(app: AppContext, validators: int | None) -> tuple[Any, Any, list[str]]:
    """Create the dev chain on an empty home, or resume it; unlock every dev wallet."""
    from ledger.chain.facade import Chain, ensure_home
    from ledger.consensus.genesis import GenesisConfig
    from ledger.node.record import open_node_chain
    from ledger.params import Params
    from wallet.keystore import Keystore
    from wallet.wallet_file import ScryptParams

    password, source = _dev_password(app)
    keystore = Keystore(app.wallets_dir)
    banner: list[str] = []
    if not Chain.exists(app.home):
        count = validators if validators is not None else DEFAULT_DEV_VALIDATORS
        names = dev_wallet_names(count)
        ensure_home(app.home)  # 0700 before the keystore creates it with its parents
        addresses: list[str] = []
        # an interruption leaves some dev wallets and no chain: a second run reuses them
        with interrupts_reported_as(f"interrupted while creating the dev chain in {app.home}: run the same "
                                    "command again to finish it (it reuses the dev wallets made so far)"):
            for name in names:
                if keystore.exists(name):
                    wallet_file = keystore.load(name)
                    banner.append(f"dev wallet '{name}' already existed: reusing it")
                else:
                    wallet_file, _mnemonic = keystore.create(name, password, kdf=ScryptParams.light())
                addresses.append(wallet_file.address(0, 0))
            config = GenesisConfig(
                params=Params(chain_id=DEV_CHAIN_ID),
                allocations={address: DEV_BALANCE for address in addresses},
                bonds=dict(zip(addresses, dev_bonds(count))),
                timestamp=int(time.time()),
            )
            chain = Chain.create(app.home, config)
        banner.append(f"created dev chain '{DEV_CHAIN_ID}' in {app.home} with {count} dev validators "
                      "(light scrypt wallets: for development only)")
    else:
        chain = open_node_chain(app.home)
        if chain.params.chain_id != DEV_CHAIN_ID or not keystore.exists(DEV_WALLET):
            found = chain.params.chain_id
            chain.close()
            raise fail(
                f"--dev needs an empty home or a dev chain with its '{DEV_WALLET}' wallet: {app.home} holds "
                f"chain '{found}'{'' if keystore.exists(DEV_WALLET) else ' and no dev wallet'}; "
                "drop --dev or choose another --home"
            )
        names = []
        for name in dev_wallet_names(MAX_DEV_VALIDATORS):  # dev, dev2, … as long as they exist
            if not keystore.exists(name):
                break
            names.append(name)
        banner.append(f"resuming dev chain '{DEV_CHAIN_ID}' in {app.home} with {len(names)} dev validators")
        if validators is not None and validators != len(names):
            banner.append(f"note: --validators {validators} applies to a new dev chain; this one keeps {len(names)}")
    try:
        proposer = DevProposer(app.wallets_dir)
        total = 0
        rows = []
        for name in names:
            unlocked = keystore.unlock(name, password)
            address = unlocked.address(0, 0)
            bonded = chain.account(address).bonded
            total += bonded
            proposer.add(name, unlocked.private_key(0, 0), address)
            rows.append((name, address, bonded, unlocked.mnemonic()))
    except BaseException:
        chain.close()
        raise
    width = max(len(name) for name in names)
    for number, (name, address, bonded, phrase) in enumerate(rows, 1):
        share = f"{100 * bonded / total:.1f}%" if total else "0%"
        banner.append(f"dev validator {number}/{len(rows)}: wallet '{name}'{' ' * (width - len(name))} {address} "
                      f"bonded {bonded} ({share} of the stake)")
        banner.append(f"  recovery phrase of '{name}': {phrase}")
    banner.append(f"password of every dev wallet: {source}; these keys are public: never use them for real funds")
    banner.append(f"all {len(rows)} dev validators propose every round: the lottery picks one per block by stake")
    return chain, proposer, banner


class DevProposer:
    """The ``--dev`` round hook: every dev validator proposes one BPM reading per round.

    A validator proposes only when its previous reading is no longer pending, so readings never
    pile up; the nonce is the account's next one counting pending txs, read under the node's
    lock. Each proposal passes the wallet's slashing protection first, so a ``posctl validator
    run dev`` started next to the dev node can never make a dev validator equivocate.
    """

    def __init__(self, wallets_dir: Any, rng: random.Random | None = None) -> None:
        self.wallets_dir = wallets_dir
        self.rng = rng or random.SystemRandom()
        self.validators: list[tuple[str, bytes, str]] = []
        self.last: dict[str, bytes] = {}
        self.problems: dict[str, str] = {}
        self.log: Any = None
        """Set by ``node run`` to the node's logger: why a dev validator is not proposing."""

    @property
    def address(self) -> str:
        """The first dev validator (the ``dev`` wallet)."""
        return self.validators[0][2]

    def add(self, name: str, private_key: bytes, address: str) -> None:
        self.validators.append((name, private_key, address))

    def __call__(self, chain: Any) -> None:
        from ledger.errors import LedgerError
        from wallet.errors import WalletError

        for name, key, address in self.validators:
            try:
                self._propose(chain, name, key, address)
                self.problems.pop(address, None)
            except (LedgerError, WalletError) as exc:
                if self.problems.get(address) != str(exc) and self.log is not None:
                    self.log(f"dev validator '{name}' did not propose: {exc}")
                self.problems[address] = str(exc)

    def _propose(self, chain: Any, name: str, key: bytes, address: str) -> None:
        from ledger.consensus.state import check_can_propose
        from ledger.errors import NotFound
        from wallet.protection import SlashingProtection
        from wallet.signing import build_bpm

        last = self.last.get(address)
        if last is not None:
            try:
                if chain.tx(last).status == "pending":
                    return
            except NotFound:
                pass
        params = chain.params
        height = chain.height + 1
        account = chain.account(address)
        check_can_propose(account.status, account.bonded, params, height, height)
        low = min(max(DEV_BPM_RANGE[0], params.bpm_min), params.bpm_max)
        high = max(min(DEV_BPM_RANGE[1], params.bpm_max), low)
        tx = build_bpm(key, params.chain_id, account.next_nonce, self.rng.randint(low, high), height, chain.next_seed)
        protection = SlashingProtection(self.wallets_dir, name)
        if height in protection.signed_heights(address, chain_id=params.chain_id):
            return  # signed elsewhere (a `validator run` of this wallet): never a second proposal
        protection.guard(tx)
        self.last[address] = chain.submit(tx)


__all__ = ["node", "DevProposer", "DEV_CHAIN_ID", "DEV_PASSWORD", "DEV_WALLET"]
