"""``posctl node``: run the long-lived forger with its local HTTP API.

The node itself lives in :mod:`ledger.node` and knows nothing of wallets. ``--dev`` is put
together here: a dev chain whose one validator is the ``dev`` wallet, and a round hook that
has that validator propose a BPM reading before every forge attempt, so blocks flow at once.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import click

from cli.context import AppContext, fail, handles_errors, pass_app

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
"""Bonded stake of the dev wallet at genesis: it is the chain's validator."""

DEV_BPM_RANGE = (60, 100)
"""A resting heart rate: the dev validator's readings, clamped to the chain's BPM range."""


@click.group("node")
def node() -> None:
    """Run a long-lived forger with a local HTTP API.

    While a node runs, every other posctl command on the same --home goes through its API.
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
    "--interval", type=click.FloatRange(min=0.05, max=86400.0), default=None,
    help=f"Seconds between forging rounds [default: {DEFAULT_INTERVAL:g}; {DEV_INTERVAL:g} with --dev].",
)
@click.option(
    "--dev", is_flag=True,
    help=f"Create (or resume) a dev chain '{DEV_CHAIN_ID}' whose funded, bonded wallet '{DEV_WALLET}' "
    f"proposes a BPM reading every round. Password: POSCTL_PASSWORD, else '{DEV_PASSWORD}'.",
)
@click.option(
    "--allow-remote", is_flag=True,
    help="Allow --listen on a non-loopback address. Anyone who can reach it can read and submit; "
    "forging still needs the cookie ($POSCTL_HOME/.cookie).",
)
@click.option(
    "--request-timeout", type=click.FloatRange(min=0.1, max=3600.0), default=10.0, show_default=True,
    help="Seconds a client has to send a whole request (headers and body); a slower one gets 408.",
)
@pass_app
@handles_errors
def run(app: AppContext, listen: tuple[str, int], interval: float | None, dev: bool, allow_remote: bool,
        request_timeout: float) -> None:
    """Forge a block every --interval seconds and serve the chain's HTTP JSON API.

    Quiet when there is nothing to forge; one line per block and per evicted tx otherwise.
    Stop it with Ctrl-C (or SIGTERM): the commit in progress finishes, then it exits 0.
    """
    from ledger.node.api import format_address, is_loopback_host
    from ledger.node.http_server import HttpLimits
    from ledger.node.service import Node
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

    check_no_running_node(app.home)
    hook = None
    if dev:
        chain, hook, banner = _prepare_dev(app)
    else:
        chain, banner = open_node_chain(app.home), []
    try:
        node_ = Node(chain, app.home, host=host, port=port, interval=interval, round_hook=hook,
                     allow_remote=allow_remote, log=_log_line, limits=HttpLimits(request_timeout=request_timeout))
        node_.start()
    except BaseException:
        chain.close()
        raise
    node_.log(
        f"node listening on {node_.url}: chain {chain.params.chain_id} at height {chain.height}, "
        f"forging every {interval:g}s, pid {os.getpid()}; Ctrl-C to stop"
    )
    node_.log(f"explorer: open {node_.url}/ in a browser")
    for line in banner:
        node_.log(line)
    node_.run()
    if node_.failure is not None:
        raise fail(f"the node stopped after a storage failure: {node_.failure}")
    _log_line(f"{time.strftime('%Y-%m-%d %H:%M:%S')} node stopped")


def _log_line(line: str) -> None:
    try:
        click.echo(line)
    except OSError:
        pass


# ---- --dev -------------------------------------------------------------------------------------


def _dev_password(app: AppContext) -> tuple[str, str]:
    """(password, where it came from): --password-file, POSCTL_PASSWORD, else the default."""
    if app.password_file is not None:
        try:
            text = app.password_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read password file {app.password_file}: {exc.strerror}") from None
        return text.rstrip("\r\n"), f"from {app.password_file}"
    if os.environ.get("POSCTL_PASSWORD"):
        return os.environ["POSCTL_PASSWORD"], "from POSCTL_PASSWORD"
    return DEV_PASSWORD, f"'{DEV_PASSWORD}'"


def _prepare_dev(app: AppContext) -> tuple[Any, Any, list[str]]:
    """Create the dev chain on an empty home, or resume it; unlock the dev wallet."""
    from ledger.chain.facade import Chain, ensure_home
    from ledger.consensus.genesis import GenesisConfig
    from ledger.node.record import open_node_chain
    from ledger.params import Params
    from wallet.keystore import Keystore, ScryptParams

    password, source = _dev_password(app)
    keystore = Keystore(app.wallets_dir)
    banner: list[str] = []
    if not Chain.exists(app.home):
        ensure_home(app.home)  # 0700 before the keystore creates it with its parents
        if keystore.exists(DEV_WALLET):
            wallet_file = keystore.load(DEV_WALLET)
            banner.append(f"dev wallet '{DEV_WALLET}' already existed: reusing it")
        else:
            wallet_file, _mnemonic = keystore.create(DEV_WALLET, password, kdf=ScryptParams.light())
            banner.append(f"created dev wallet '{DEV_WALLET}' (light scrypt: for development only)")
        address = wallet_file.address(0, 0)
        config = GenesisConfig(
            params=Params(chain_id=DEV_CHAIN_ID),
            allocations={address: DEV_BALANCE},
            bonds={address: DEV_BOND},
            timestamp=int(time.time()),
        )
        chain = Chain.create(app.home, config)
        banner.append(f"created dev chain '{DEV_CHAIN_ID}' in {app.home}")
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
        banner.append(f"resuming dev chain '{DEV_CHAIN_ID}' in {app.home}")
    try:
        unlocked = keystore.unlock(DEV_WALLET, password)
    except BaseException:
        chain.close()
        raise
    proposer = DevProposer(unlocked.private_key(0, 0), unlocked.address(0, 0))
    banner.append(f"dev validator {proposer.address} (wallet '{DEV_WALLET}', password {source}) proposes every round")
    return chain, proposer, banner


class DevProposer:
    """The ``--dev`` round hook: the dev validator proposes one BPM reading per round.

    It proposes only when its previous reading is no longer pending, so readings never pile up;
    the nonce is the account's next one counting pending txs, read under the node's lock.
    """

    def __init__(self, private_key: bytes, address: str, rng: random.Random | None = None) -> None:
        self.private_key = private_key
        self.address = address
        self.rng = rng or random.SystemRandom()
        self.last: bytes | None = None

    def __call__(self, chain: Any) -> None:
        from ledger.errors import NotFound
        from wallet.signing import build_bpm

        if self.last is not None:
            try:
                if chain.tx(self.last).status == "pending":
                    return
            except NotFound:
                pass
        params = chain.params
        low = min(max(DEV_BPM_RANGE[0], params.bpm_min), params.bpm_max)
        high = max(min(DEV_BPM_RANGE[1], params.bpm_max), low)
        account = chain.account(self.address)
        tx = build_bpm(self.private_key, params.chain_id, account.next_nonce, self.rng.randint(low, high),
                       chain.height + 1, chain.next_seed)
        self.last = chain.submit(tx)


__all__ = ["node", "DevProposer", "DEV_CHAIN_ID", "DEV_PASSWORD", "DEV_WALLET"]
