"""The chain backend that talks to a running node's HTTP API.

It returns exactly what :class:`cli.direct_backend.DirectBackend` returns (the same ``ledger.chain.views``
dicts, after a JSON round trip that preserves them), and turns an API error
``{"error": message, "type": ErrorClassName}`` back into that ledger error class, so a command
prints the same line whether it opened the database itself or asked the node.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cli.direct_backend import parse_tx_id
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction
from ledger.crypto.address import parse_address
from ledger.chain.facade import not_a_block_ref
from ledger.errors import LedgerError, NodeError, NodeUnavailable
from ledger.node.api import MAX_BLOCKS_PER_REQUEST, MAX_HISTORY, MAX_MEMPOOL_LIST
from ledger.node.cookie import authorization, read_cookie
from ledger.node.record import NODE_RECORD_NAME, read_node_record

DEFAULT_TIMEOUT = 60.0
BACKUP_TIMEOUT = 24 * 3600.0
"""Seconds to wait for an answer; forging a full block can take a while."""

MAX_REPLY_BYTES = 256 * 1024 * 1024
"""The largest reply read: 100 full blocks of the default 1,000 txs are ~60 MB as JSON. A
process on the node's port that promises gigabytes gets an error, not the machine's memory."""

replied_from: ContextVar[str | None] = ContextVar("replied_from", default=None)
"""The URL of the last node that sent this command a reply: an error rendering outside data
is then reported as the node's (:func:`cli.context.handles_errors`), not as a traceback."""

IDLE_REOPEN = 4.0
"""Seconds after which a kept-alive connection is not reused: the node closes idle ones at 5."""


def _error_classes() -> dict[str, type[LedgerError]]:
    """Every LedgerError subclass by name: the whole tree lives in :mod:`ledger.errors`."""
    found: dict[str, type[LedgerError]] = {}
    stack: list[type[LedgerError]] = [LedgerError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.__name__, cls)
        stack.extend(cls.__subclasses__())
    return found


def error_from_api(payload: Any, status: int) -> LedgerError:
    """The ledger error an API error body stands for (a :class:`NodeError` if unknown)."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        message = payload["error"]
        kind = payload.get("type")
    else:
        message, kind = f"the node answered HTTP {status} without an error message", None
    cls = _error_classes().get(kind) if isinstance(kind, str) else None
    if cls is None:
        return NodeError(message)
    try:
        return cls(message)
    except TypeError:  # a subclass with a different constructor
        return NodeError(message)


class NodeBackend:
    """The :class:`cli.backend.Backend` protocol over a running node's API.

    One HTTP/1.1 connection is kept alive for every request of a command (never through a
    proxy: the node is on this machine, and ``http_proxy`` must not see it). Privileged routes
    get the node's cookie, read from the home at the moment they are called.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, home: Path | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.home = home
        parts = urlsplit(self.url)
        if parts.scheme != "http" or parts.hostname is None:
            raise NodeError(f"the node's address {url!r} is not an http:// URL: remove {NODE_RECORD_NAME} and retry")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    # ---- transport -------------------------------------------------------------------------

    def _open(self) -> http.client.HTTPConnection:
        stale = time.monotonic() - self._last_used > IDLE_REOPEN
        if self._connection is None or stale:
            self._drop()
            self._connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _exchange(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on the kept-alive connection; once more on a new one if the node had
        closed the old one before reading anything (an idle keep-alive timeout)."""
        for attempt in (1, 2):
            reused = self._connection is not None and attempt == 1
            connection = self._open()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                if (response.length or 0) > MAX_REPLY_BYTES:
                    raise NodeError(f"the node at {self.url} announced a reply of {response.length} bytes, above "
                                    f"the {MAX_REPLY_BYTES} this client reads: ask for fewer blocks")
                raw = response.read(MAX_REPLY_BYTES + 1)
                if len(raw) > MAX_REPLY_BYTES:
                    raise NodeError(f"the node at {self.url} sent a reply above the {MAX_REPLY_BYTES} bytes "
                                    "this client reads: ask for fewer blocks")
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self._drop()
                if reused:
                    continue
                raise
            except BaseException:
                self._drop()
                raise
            self._last_used = time.monotonic()
            if response.will_close:
                self._drop()
            return response.status, raw
        raise http.client.RemoteDisconnected("the node closed the connection")  # pragma: no cover

    def _check_cookie_goes_home(self, path: str) -> None:
        """The home's cookie goes only to the node the home records: sent to any ``--node`` URL,
        a mistyped or squatted port received it, and with it the real node's ``/backup`` wrote
        wherever that node's user may write."""
        record = read_node_record(self.home) if self.home is not None else None
        if record is None or record.url != self.url:
            recorded = f"the one it records is {record.url}" if record is not None else "it records none running"
            raise NodeError(f"{path} needs this home's node cookie, which posctl sends only to the node this home "
                            f"records ({recorded}), not to {self.url}: run the command without --node, or on "
                            "that node's own home")

    def _request(self, method: str, path: str, body: bytes | None = None, *, what: str = "",
                 privileged: bool = False) -> Any:
        headers = {"Accept": "application/json", "Host": f"{self._host}:{self._port}" if ":" not in self._host
                   else f"[{self._host}]:{self._port}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if privileged and self.home is not None:
            secret = read_cookie(self.home)
            if secret is not None:
                self._check_cookie_goes_home(path)
                headers["Authorization"] = authorization(secret)
        try:
            status, raw = self._exchange(method, path, body, headers)
        except (http.client.HTTPException, socket.timeout, OSError) as exc:
            cause = f"the node at {self.url} stopped answering ({str(exc).strip() or type(exc).__name__}){what}"
            raise NodeUnavailable(
                f"{cause}: if it was stopped, run the command again and it will use the database directly", cause
            ) from None
        replied_from.set(self.url)
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            if status != 200:
                raise error_from_api(None, status) from None
            raise NodeError(f"the node at {self.url} sent a reply that is not JSON") from None
        if status != 200:
            raise error_from_api(payload, status)
        return payload

    def _get(self, path: str) -> Any:
        return self._request("GET", path)

    # ---- the Backend protocol --------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._get("/status")

    def block(self, ref: str | None) -> dict[str, Any]:
        if ref is None:
            return self._get("/blocks/latest")
        if ref.strip().lower() == "latest" or not ref.strip():
            # Chain.block_by_ref's own refusal: "latest" is a route, not a reference.
            raise not_a_block_ref(ref)
        return self._get("/blocks/" + quote(ref, safe=""))

    def blocks_last(self, count: int) -> list[dict[str, Any]]:
        if count <= 0:
            return []
        blocks: list[dict[str, Any]] = self._get(f"/blocks?last={min(count, MAX_BLOCKS_PER_REQUEST)}")
        while len(blocks) < count and blocks and blocks[-1]["height"] > 0:
            lowest = blocks[-1]["height"]
            start = max(lowest - min(count - len(blocks), MAX_BLOCKS_PER_REQUEST), 0)
            page = self._get(f"/blocks?from={start}&to={lowest - 1}")
            if not page:
                break
            blocks.extend(reversed(page))
        return blocks

    def tx(self, tx_id: str) -> dict[str, Any]:
        return self._get("/txs/" + parse_tx_id(tx_id).hex())

    def account(self, address: str) -> dict[str, Any]:
        canonical = parse_address(address)  # the same refusal Chain.account gives
        return self._get("/accounts/" + quote(canonical, safe=""))

    def history(self, address: str, limit: int, before: tuple[int, int] | None = None) -> list[dict[str, Any]]:
        canonical = parse_address(address)
        page = "" if before is None else f"&before={before[0]}:{before[1]}"
        return self._get(f"/accounts/{quote(canonical, safe='')}/history?limit={min(limit, MAX_HISTORY)}{page}")

    def mempool(self, limit: int) -> dict[str, Any]:
        return self._get(f"/mempool?limit={min(limit, MAX_MEMPOOL_LIST)}")

    def validators(self) -> list[dict[str, Any]]:
        return self._get("/validators")

    def submit(self, tx: Transaction) -> dict[str, Any]:
        what = f" while submitting tx {tx.id_hex}: check later with `posctl chain tx {tx.id_hex}`"
        return self._request("POST", "/txs", tx.encode(), what=what)

    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]:
        return self._request("POST", "/evidence", evidence.encode(), what=f" while submitting evidence {evidence.id_hex}")

    def forge(self) -> dict[str, Any]:
        return self._request("POST", "/forge", b"", privileged=True)

    def backup(self, directory: str) -> dict[str, Any]:
        """The node copies a snapshot of its own database (it holds LevelDB's lock). A large chain
        takes longer than the usual timeout, and giving up early would report a node that is
        still copying as one that stopped answering: this one request waits as long as it takes."""
        previous, self.timeout = self.timeout, BACKUP_TIMEOUT
        self._drop()
        try:
            return self._request("POST", "/backup", json.dumps({"dir": directory}).encode(),
                                 what=" while backing up", privileged=True)
        finally:
            self._drop()
            self.timeout = previous

    def close(self) -> None:
        self._drop()


__all__ = ["NodeBackend", "error_from_api"]
