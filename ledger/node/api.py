"""The node's local HTTP JSON API: routing, request limits and the loopback guards.

HTTP plumbing only; every chain call goes through the :class:`ledger.node.Node`'s lock.

Routes (all JSON; errors are ``{"error": message, "type": ErrorClassName}``)::

    GET  /status                  chain status (same view as ``posctl chain status --json``)
    GET  /node                    this node: pid, address, url, started, chain id, interval
    GET  /blocks/latest           the tip block
    GET  /blocks/<height>         a block by height (a 64-hex-digit hash is accepted too)
    GET  /blocks/hash/<hex>       a block by hash
    GET  /blocks?from=A&to=B      blocks A..B ascending, at most 100 (``to`` defaults to A+99)
    GET  /blocks?last=N           the newest N blocks (at most 100), newest first
    GET  /txs/<id>                where a tx is: pending, included or evicted
    POST /txs                     submit a signed tx (body: its canonical JSON) → {"tx_id", "tx"}
    POST /evidence                two signed proposals {"first", "second"} → {"evidence_id", "evidence"}
    GET  /accounts/<address>      an account
    GET  /validators              everyone with bonded stake
    POST /forge                   forge now → the block, or {"forged": false, "reason": …}
    POST /backup                  {"dir": absolute path} → a consistent copy of the chain there
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from ledger.chain import views
from ledger.chain.facade import Chain
from ledger.errors import InvalidKey
from ledger.errors import (
    DatabaseCorrupted,
    DatabaseError,
    StorageFailure,
    EncodingError,
    InvalidAddress,
    InvalidEvidence,
    InvalidSignature,
    InvalidTransaction,
    LedgerError,
    MempoolFull,
    NodeUnavailable,
    NotFound,
)
from ledger.chain.mempool import decode_submission
from ledger.consensus.evidence import Evidence

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
"""The tutorial's port."""

MAX_BODY_BYTES = 64 * 1024
"""Request bodies above this are refused with 413 before they are read."""

MAX_DRAIN_BYTES = 1024 * 1024
"""How much of an oversized body is read and discarded, so the client sees the 413."""

MAX_BLOCKS_PER_REQUEST = 100
"""The most blocks one range request returns."""

REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request before the connection is dropped."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names a browser can only mean this machine by (DNS rebinding guard)."""

if TYPE_CHECKING:
    from ledger.node.service import Node


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` → (host, port); raises ValueError saying why."""
    value = text.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1:end + 2] != ":":
            raise ValueError(f"{text!r} is not HOST:PORT (IPv6 addresses look like [::1]:9000)")
        host, port_text = value[1:end], value[end + 2:]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not HOST:PORT, e.g. 127.0.0.1:9000")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9000")
    host = host or DEFAULT_HOST
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_header_allowed(value: str | None, allow_remote: bool) -> bool:
    """Loopback names only; with ``allow_remote`` also any IP literal (still never a DNS name)."""
    if not value:
        return False
    host = value.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and not re.fullmatch(r":\d{1,5}", host[end + 1:])):
            return False
        name = host[1:end]
    else:
        name, sep, port = host.partition(":")
        if sep and not re.fullmatch(r"\d{1,5}", port):
            return False
    name = name.lower()
    if name in LOOPBACK_NAMES or is_loopback_host(name):
        return True
    if not allow_remote:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _origin_allowed(value: str | None, allow_remote: bool) -> bool:
    """No ``Origin`` (curl, posctl) or one served from this machine."""
    if value is None:
        return True
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or parts.hostname is None:
        return False
    return _host_header_allowed(parts.netloc, allow_remote)


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error": message, "type": kind}``."""

    def __init__(self, status: int, message: str, kind: str = "BadRequest", headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: str
    """Name of the :class:`NodeApi` method; it gets the match groups, the query and the body."""


ROUTES: tuple[Route, ...] = tuple(
    Route(method, re.compile(pattern), handler)
    for method, pattern, handler in (
        ("GET", r"/", "get_index"),
        ("GET", r"/status", "get_status"),
        ("GET", r"/node", "get_node"),
        ("GET", r"/blocks", "get_blocks"),
        ("GET", r"/blocks/latest", "get_latest_block"),
        ("GET", r"/blocks/hash/([^/]+)", "get_block_by_hash"),
        ("GET", r"/blocks/([^/]+)", "get_block"),
        ("GET", r"/txs/([^/]+)", "get_tx"),
        ("POST", r"/txs", "post_tx"),
        ("POST", r"/evidence", "post_evidence"),
        ("GET", r"/accounts/([^/]+)", "get_account"),
        ("GET", r"/validators", "get_validators"),
        ("POST", r"/forge", "post_forge"),
        ("POST", r"/backup", "post_backup"),
    )
)

_NUMBER = re.compile(r"[0-9]{1,19}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _query_int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1 or not _NUMBER.fullmatch(values[0]):
        raise ApiError(400, f"query parameter {name!r} must be one non-negative integer")
    return int(values[0])


class NodeApi:
    """The routes' logic over a :class:`Node`: every chain call under the node's lock."""

    def __init__(self, node: "Node") -> None:
        self.node = node

    def _call(self, func: Callable[[Chain], Any]) -> Any:
        """Run ``func`` under the node's lock. Callers render views after it returns, so the
        lock is held for the database work only, not for building JSON."""
        try:
            return self.node.call(func)
        except (StorageFailure, DatabaseCorrupted) as exc:
            raise ApiError(503, f"the node is stopping after a storage failure: {exc}", type(exc).__name__) from None

    # ---- reads -----------------------------------------------------------------------------

    def get_index(self, query: dict[str, list[str]], body: bytes) -> Any:
        return {"routes": [f"{r.method} {r.pattern.pattern}" for r in ROUTES if r.pattern.pattern != "/"]}

    def get_status(self, query: dict[str, list[str]], body: bytes) -> Any:
        return views.status_view(self._call(lambda chain: chain.status()))

    def get_node(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self.node.info()

    def get_latest_block(self, query: dict[str, list[str]], body: bytes) -> Any:
        return views.block_view(self._call(lambda chain: chain.block(chain.height)))

    def get_block(self, query: dict[str, list[str]], body: bytes, ref: str) -> Any:
        return views.block_view(self._call(lambda chain: chain.block_by_ref(ref)))

    def get_block_by_hash(self, query: dict[str, list[str]], body: bytes, text: str) -> Any:
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a block hash: expected 64 hex digits")
        return views.block_view(self._call(lambda chain: chain.block_by_hash(bytes.fromhex(text))))

    def get_blocks(self, query: dict[str, list[str]], body: bytes) -> Any:
        unknown = sorted(set(query) - {"from", "to", "last"})
        if unknown:
            raise ApiError(400, f"unknown query parameter {unknown[0]!r}: use ?from=A&to=B or ?last=N")
        start, end, last = _query_int(query, "from"), _query_int(query, "to"), _query_int(query, "last")
        if last is not None:
            if start is not None or end is not None:
                raise ApiError(400, "use either ?last=N or ?from=A&to=B, not both")
            count = min(last, MAX_BLOCKS_PER_REQUEST)

            return [views.block_view(b) for b in self._call(lambda chain: list(chain.last_blocks(count)))]
        if start is None:
            raise ApiError(400, "say which blocks: ?from=A&to=B (at most 100) or ?last=N")
        stop = start + MAX_BLOCKS_PER_REQUEST - 1 if end is None else min(end, start + MAX_BLOCKS_PER_REQUEST - 1)
        return [views.block_view(b) for b in self._call(lambda chain: list(chain.blocks(start, stop)))]

    def get_tx(self, query: dict[str, list[str]], body: bytes, text: str) -> Any:
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a transaction id: expected 64 hex digits")
        return views.tx_status_view(self._call(lambda chain: chain.tx(bytes.fromhex(text))))

    def get_account(self, query: dict[str, list[str]], body: bytes, address: str) -> Any:
        return views.account_view(self._call(lambda chain: chain.account(address)))

    def get_validators(self, query: dict[str, list[str]], body: bytes) -> Any:
        return [views.validator_view(row) for row in self._call(lambda chain: chain.validators())]

    # ---- writes ----------------------------------------------------------------------------

    def post_tx(self, query: dict[str, list[str]], body: bytes) -> Any:
        try:
            tx = decode_submission(body)
        except LedgerError as exc:
            raise ApiError(400, str(exc), type(exc).__name__) from None
        try:
            tx_id = self._call(lambda chain: chain.submit(tx))
        except MempoolFull as exc:
            raise ApiError(503, str(exc), type(exc).__name__) from None
        except (InvalidTransaction, InvalidSignature, InvalidAddress, InvalidKey, EncodingError) as exc:
            raise ApiError(422, str(exc), type(exc).__name__) from None
        return {"tx_id": tx_id.hex(), "tx": views.tx_view(tx)}

    def post_evidence(self, query: dict[str, list[str]], body: bytes) -> Any:
        """Evidence of equivocation: ``{"first": tx, "second": tx}`` (two signed proposals)."""
        try:
            evidence = Evidence.decode(body)
        except LedgerError as exc:
            raise ApiError(400, f"undecodable evidence: {exc}", type(exc).__name__) from None
        try:
            evidence_id = self._call(lambda chain: chain.submit_evidence(evidence))
        except (InvalidEvidence, InvalidTransaction) as exc:
            raise ApiError(422, str(exc), type(exc).__name__) from None
        return {"evidence_id": evidence_id.hex(), "evidence": views.evidence_view(evidence)}

    def post_forge(self, query: dict[str, list[str]], body: bytes) -> Any:
        try:
            return self.node.forge_once().to_view()
        except (StorageFailure, DatabaseCorrupted) as exc:
            raise ApiError(503, f"the node is stopping after a storage failure: {exc}", type(exc).__name__) from None

    def post_backup(self, query: dict[str, list[str]], body: bytes) -> Any:
        """``{"dir": "/absolute/new/dir"}``: the node copies a snapshot of its database there
        (it holds LevelDB's lock, so only it can make a consistent copy while it runs)."""
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        directory = request.get("dir") if isinstance(request, dict) else None
        if not isinstance(directory, str) or not directory.startswith("/"):
            raise ApiError(400, 'the body must be {"dir": "<absolute path of a new directory>"}')
        try:
            return self.node.backup(Path(directory))
        except (StorageFailure, DatabaseCorrupted) as exc:
            raise ApiError(503, f"the node is stopping after a storage failure: {exc}", type(exc).__name__) from None


def _status_of(exc: LedgerError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, (StorageFailure, DatabaseCorrupted)):
        return 503
    if isinstance(exc, DatabaseError):
        return 500
    if isinstance(exc, NodeUnavailable):
        return 503
    return 400


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing only: checks, routing, body limits, JSON in and out."""

    server: "ApiServer"
    timeout = REQUEST_TIMEOUT
    server_version = "posctl-node"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the node logs blocks, not requests."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_OPTIONS(self) -> None:
        self._dispatch("OPTIONS")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        node = self.server.node
        try:
            result = self._handle(method, node)
        except ApiError as exc:
            self._send(exc.status, {"error": exc.message, "type": exc.kind}, exc.headers, method)
        except LedgerError as exc:
            self._send(_status_of(exc), {"error": str(exc), "type": type(exc).__name__}, None, method)
        except Exception as exc:  # a bug: report it, keep serving
            node.log(f"internal error serving {method} {self.path}: {type(exc).__name__}: {exc}")
            self._send(500, {"error": f"internal error: {type(exc).__name__}: {exc}", "type": "InternalError"}, None, method)
        else:
            self._send(200, result, None, method)

    def _handle(self, method: str, node: "Node") -> Any:
        if not _host_header_allowed(self.headers.get("Host"), node.allow_remote):
            raise ApiError(403, "the Host header must name this machine (localhost, 127.0.0.1 or [::1])", "Forbidden")
        if not _origin_allowed(self.headers.get("Origin"), node.allow_remote):
            raise ApiError(403, "requests from web pages of other origins are refused", "Forbidden")
        parts = urlsplit(self.path)
        path = parts.path if parts.path == "/" else parts.path.rstrip("/")
        route, groups = None, ()
        allowed: list[str] = []
        for candidate in ROUTES:
            match = candidate.pattern.fullmatch(path)
            if match is None:
                continue
            if candidate.method != method:
                allowed.append(candidate.method)
                continue
            route, groups = candidate, match.groups()
            break
        if route is None:
            if allowed:
                raise ApiError(405, f"{method} is not allowed on {path}: use {', '.join(sorted(set(allowed)))}",
                               "MethodNotAllowed", {"Allow": ", ".join(sorted(set(allowed)))})
            raise ApiError(404, f"no route {path}: see GET / for the routes", "NotFound")
        try:
            query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ApiError(400, "the query string is malformed") from None
        body = self._read_body() if method == "POST" else b""
        args = [unquote(group) for group in groups]
        return getattr(node.api, route.handler)(query, body, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            raise ApiError(411, "send the body with a Content-Length, not chunked", "LengthRequired")
        text = self.headers.get("Content-Length")
        if text is None:
            return b""
        if not _NUMBER.fullmatch(text.strip()):
            raise ApiError(400, "the Content-Length header is not a number")
        length = int(text)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._drain(length)
            raise ApiError(413, f"the body is {length} bytes, above the limit of {MAX_BODY_BYTES}", "PayloadTooLarge")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ApiError(400, "the body is shorter than its Content-Length")
        return body

    def _drain(self, length: int) -> None:
        """Read (a bounded part of) an oversized body so the client gets to read our 413."""
        remaining = min(length, MAX_DRAIN_BYTES)
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None, method: str) -> None:
        data = (json.dumps(payload) + "\n").encode("utf-8")  # insertion order, as direct mode
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client went away; nothing to tell it


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], node: "Node") -> None:
        self.node = node
        super().__init__(address, _Handler)


class ApiServer6(ApiServer):
    address_family = socket.AF_INET6
