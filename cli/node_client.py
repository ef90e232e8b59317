"""The chain backend that talks to a running node's HTTP API.

It returns exactly what :class:`cli.backend.DirectBackend` returns (the same ``ledger.chain.views``
dicts, after a JSON round trip that preserves them), and turns an API error
``{"error": message, "type": ErrorClassName}`` back into that ledger error class, so a command
prints the same line whether it opened the database itself or asked the node.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from ledger.crypto.address import parse_address
from ledger.errors import LedgerError, NotFound
from ledger.node.api import MAX_BLOCKS_PER_REQUEST
from ledger.errors import NodeError, NodeUnavailable
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction

DEFAULT_TIMEOUT = 60.0
"""Seconds to wait for an answer; forging a full block can take a while."""


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
    """The :class:`cli.backend.Backend` protocol over a running node's API."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # Never through a proxy: the node is on this machine, and http_proxy must not see it.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    # ---- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes | None = None, *, what: str = "") -> Any:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        request.add_header("Accept", "application/json")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"null")
            except (ValueError, OSError, http.client.HTTPException):
                payload = None
            raise error_from_api(payload, exc.code) from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NodeUnavailable(
                f"the node at {self.url} stopped answering ({reason}){what}: "
                "if it was stopped, run the command again and it will use the database directly"
            ) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise NodeError(f"the node at {self.url} sent a reply that is not JSON") from None

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
            raise NotFound(f"{ref!r} is neither a block height nor a 64-hex-digit block hash")
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
        from cli.backend import parse_tx_id

        return self._get("/txs/" + parse_tx_id(tx_id).hex())

    def account(self, address: str) -> dict[str, Any]:
        canonical = parse_address(address)  # the same refusal Chain.account gives
        return self._get("/accounts/" + quote(canonical, safe=""))

    def validators(self) -> list[dict[str, Any]]:
        return self._get("/validators")

    def submit(self, tx: Transaction) -> dict[str, Any]:
        what = f" while submitting tx {tx.id_hex}: check later with `posctl chain tx {tx.id_hex}`"
        return self._request("POST", "/txs", tx.encode(), what=what)

    def submit_evidence(self, evidence: Evidence) -> dict[str, Any]:
        return self._request("POST", "/evidence", evidence.encode(), what=f" while submitting evidence {evidence.id_hex}")

    def forge(self) -> dict[str, Any]:
        return self._request("POST", "/forge", b"")

    def backup(self, directory: str) -> dict[str, Any]:
        """The node copies a snapshot of its own database (it holds LevelDB's lock)."""
        return self._request("POST", "/backup", json.dumps({"dir": directory}).encode(), what=" while backing up")

    def close(self) -> None:
        pass


__all__ = ["NodeBackend", "error_from_api"]
