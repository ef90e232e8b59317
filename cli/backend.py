"""Where a command's chain calls go: the database directly, or a running node's API.

LevelDB admits one process. While ``posctl node run`` holds the database, every other command
must go through its HTTP API; otherwise commands open the database themselves. Both backends
return the same JSON-ready views (``ledger.chain.views``), so output is identical either way.
This module holds the interface both implement and the choice between them; the two live side
by side in :mod:`cli.direct_backend` and :mod:`cli.node_backend` and import neither this module
nor each other's class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from cli.direct_backend import DirectBackend, parse_tx_id
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction


class Backend(Protocol):
    """The chain operations the CLI needs; every result is a JSON-ready view."""

    def status(self) -> dict[str, Any]: ...
    def block(self, ref: str | None) -> dict[str, Any]: ...
    def blocks_last(self, count: int) -> list[dict[str, Any]]: ...
    def tx(self, tx_id: str) -> dict[str, Any]: ...
    def account(self, address: str) -> dict[str, Any]: ...
    def history(self, address: str, limit: int, before: tuple[int, int] | None = None) -> list[dict[str, Any]]: ...
    def mempool(self, limit: int) -> dict[str, Any]: ...
    def validators(self) -> list[dict[str, Any]]: ...
    def submit(self, tx: Transaction) -> dict[str, Any]: ...
    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]: ...
    def forge(self) -> dict[str, Any]: ...
    def backup(self, directory: str) -> dict[str, Any]: ...
    def close(self) -> None: ...


def parse_node_url(text: str) -> str:
    """``--node``/``POSCTL_NODE`` as ``http://HOST:PORT`` (the scheme may be left out). Only a
    loopback host is accepted: the API has no authentication for reads and submissions, so
    posctl talks to nodes on this machine only. Raises ValueError saying why."""
    from urllib.parse import urlsplit

    from ledger.node.api import format_address, is_loopback_host

    value = text.strip()
    if "://" not in value:
        value = "http://" + value
    parts = urlsplit(value)
    if parts.scheme != "http":
        raise ValueError(f"{text!r}: the node speaks plain http on loopback, e.g. http://127.0.0.1:9000")
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname
    if not host or port is None or port <= 0 or parts.path not in ("", "/") or parts.query or parts.username:
        raise ValueError(f"{text!r} is not a node URL such as http://127.0.0.1:9000")
    if not is_loopback_host(host):
        raise ValueError(
            f"{text!r} is not a loopback address: posctl reaches only nodes on this machine "
            "(127.0.0.0/8, ::1, localhost)"
        )
    return f"http://{format_address(host, port)}"


def open_node_url(home: Path, url: str) -> Backend:
    """The node at ``url`` (from ``--node``), which must answer now: a mistyped port is one clear
    line, not a failure halfway through a command."""
    from cli.node_backend import NodeBackend
    from ledger.errors import NodeUnavailable
    from ledger.node.record import query_node

    if query_node(url) is None:
        raise NodeUnavailable(
            f"no posctl node answers at {url} (from --node or POSCTL_NODE): start one there with "
            "`posctl node run --listen HOST:PORT`, or drop --node to use this home's node or database"
        )
    return NodeBackend(url, home=home)


def open_backend(home: Path, node_url: str | None = None) -> Backend:
    """The node at ``node_url`` if given; else a running node's API if one holds this home,
    else the database directly.

    A node is running when ``$home/node.json`` names a live pid that answers ``GET /node``.
    A record left by a killed node is ignored (and removed when its pid is dead).
    """
    from ledger.node.record import find_running_node

    if node_url is not None:
        return open_node_url(home, node_url)
    record = find_running_node(home)
    if record is not None:
        from cli.node_backend import NodeBackend  # only when a node runs: it loads the HTTP stack

        return NodeBackend(record.url, home=home)
    return DirectBackend(home)


def require_no_node(home: Path, purpose: str = "use the chain database directly") -> None:
    """Refuse (one line, exit 1) while a node holds this home: for ``chain init``/``chain verify``.

    ``purpose`` completes "stop it first (Ctrl-C) to …", e.g. "verify the chain".
    """
    from ledger.errors import NodeRunning
    from ledger.node.record import find_running_node

    record = find_running_node(home)
    if record is not None:
        raise NodeRunning(
            f"a node is running (pid {record.pid}, address {record.address}): "
            f"stop it first (Ctrl-C) to {purpose}"
        )


__all__ = ["Backend", "DirectBackend", "open_backend", "open_node_url", "parse_node_url", "parse_tx_id",
           "require_no_node"]
