"""The long-running node: a forger on a timer and a local HTTP JSON API, over one open chain.

LevelDB admits one process, so while a node runs it owns the database and every other
``posctl`` command reaches the chain through this API (DESIGN.md, decision 12). The node
records its pid and address in ``$home/node.json`` so commands can find it; a record left by a
killed node names a dead pid (or nothing answers at its address) and is ignored.

:class:`Chain` is not thread-safe, and plyvel iterators and the mempool's caches must not be
shared between threads, so **one lock serialises every chain call**: submissions, reads and
forging alike. A submission is acknowledged only after ``Chain.submit`` has done its synced
write, so ``kill -9`` at any moment loses nothing a client was told was accepted.

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
    GET  /accounts/<address>      an account
    GET  /validators              everyone with bonded stake
    POST /forge                   forge now → the block, or {"forged": false, "reason": …}
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

from ledger import views
from ledger.chain import Chain, ForgeResult
from ledger.crypto import InvalidKey
from ledger.errors import (
    DatabaseError,
    DatabaseLocked,
    EncodingError,
    InvalidAddress,
    InvalidSignature,
    InvalidTransaction,
    LedgerError,
    MempoolFull,
    NotFound,
)
from ledger.mempool import decode_submission

NODE_RECORD_NAME = "node.json"
"""The file in a posctl home that names the running node."""

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

PROBE_TIMEOUT = 2.0
"""Seconds a command waits for a recorded node to answer before ignoring the record."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names a browser can only mean this machine by (DNS rebinding guard)."""

RoundHook = Callable[[Chain], None]
"""Run under the lock before each forge attempt (``--dev`` proposes a BPM reading with it)."""

LogFunction = Callable[[str], None]


class NodeError(LedgerError):
    """A node that cannot start, or a request a node could not serve."""


class NodeRunning(NodeError):
    """A node already holds this home's database."""


class NodeUnavailable(NodeError):
    """A recorded node that stopped answering."""


# ---- the node record ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeRecord:
    """What ``$home/node.json`` says about the running node."""

    pid: int
    address: str
    """``host:port`` as bound (``[::1]:9000`` for IPv6)."""
    url: str
    started: str
    """UTC start time, ISO 8601."""

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "address": self.address, "url": self.url, "started": self.started}

    @classmethod
    def from_dict(cls, data: Any) -> "NodeRecord | None":
        if not isinstance(data, dict):
            return None
        pid, address, url, started = (data.get(k) for k in ("pid", "address", "url", "started"))
        if type(pid) is not int or pid <= 0 or not isinstance(address, str) or not isinstance(url, str):
            return None
        if not url.startswith("http://"):
            return None
        return cls(pid=pid, address=address, url=url, started=started if isinstance(started, str) else "")


def node_record_path(home: Path) -> Path:
    return Path(home) / NODE_RECORD_NAME


def read_node_record(home: Path) -> NodeRecord | None:
    """The record in ``home``, or ``None`` if there is none or it is unreadable."""
    try:
        raw = node_record_path(home).read_bytes()
    except OSError:
        return None
    try:
        return NodeRecord.from_dict(json.loads(raw))
    except ValueError:
        return None


def write_node_record(home: Path, record: NodeRecord) -> None:
    """Write the record atomically (temp file, fsync, rename), mode 0600."""
    path = node_record_path(home)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = (json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n").encode("ascii")
    try:
        temp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def remove_node_record(home: Path, record: NodeRecord) -> None:
    """Remove the record only if it still says what ``record`` says (never a newer node's)."""
    if read_node_record(home) != record:
        return
    try:
        node_record_path(home).unlink()
    except FileNotFoundError:
        pass


def is_process_alive(pid: int) -> bool:
    """True if ``pid`` names a running (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, though not ours
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rindex(b")") + 2:][:1] not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def probe_node(record: NodeRecord, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if the node at ``record.url`` answers ``GET /node`` and is the recorded process."""
    parts = urlsplit(record.url)
    if parts.hostname is None:
        return False
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        connection.request("GET", "/node", headers={"Accept": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return False
        info = json.loads(response.read(MAX_BODY_BYTES))
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()
    return isinstance(info, dict) and info.get("pid") == record.pid


def find_running_node(home: Path) -> NodeRecord | None:
    """The live node recorded in ``home``, else ``None``.

    A record whose pid is dead is removed; one whose process is alive but does not answer
    (a hung node, or a reused pid) is ignored and left in place.
    """
    record = read_node_record(home)
    if record is None:
        return None
    if not is_process_alive(record.pid):
        try:
            remove_node_record(home, record)
        except OSError:
            pass
        return None
    return record if probe_node(record) else None


def check_no_running_node(home: Path) -> None:
    """Raise :class:`NodeRunning` if a live node already serves ``home``."""
    record = find_running_node(home)
    if record is not None:
        raise NodeRunning(f"a node is already running (pid {record.pid}, address {record.address})")


def open_node_chain(home: Path) -> Chain:
    """Open the chain for a new node; a second node on the same home gets a clear refusal."""
    check_no_running_node(home)
    try:
        return Chain.open(home)
    except DatabaseLocked:
        record = read_node_record(home)
        if record is not None and is_process_alive(record.pid):
            raise NodeRunning(f"a node is already running (pid {record.pid}, address {record.address})") from None
        raise


# ---- addresses ---------------------------------------------------------------------------------


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


# ---- the API -----------------------------------------------------------------------------------


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
        ("GET", r"/accounts/([^/]+)", "get_account"),
        ("GET", r"/validators", "get_validators"),
        ("POST", r"/forge", "post_forge"),
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
        with self.node.lock:
            if self.node.closed:
                raise ApiError(503, "the node is shutting down: retry once it has stopped", "NodeUnavailable")
            return func(self.node.chain)

    # ---- reads -----------------------------------------------------------------------------

    def get_index(self, query: dict[str, list[str]], body: bytes) -> Any:
        return {"routes": [f"{r.method} {r.pattern.pattern}" for r in ROUTES if r.pattern.pattern != "/"]}

    def get_status(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self._call(lambda chain: chain.status())

    def get_node(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self.node.info()

    def get_latest_block(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self._call(lambda chain: views.block_view(chain.block(chain.height)))

    def get_block(self, query: dict[str, list[str]], body: bytes, ref: str) -> Any:
        return self._call(lambda chain: views.block_view(chain.block_by_ref(ref)))

    def get_block_by_hash(self, query: dict[str, list[str]], body: bytes, text: str) -> Any:
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a block hash: expected 64 hex digits")
        return self._call(lambda chain: views.block_view(chain.block_by_hash(bytes.fromhex(text))))

    def get_blocks(self, query: dict[str, list[str]], body: bytes) -> Any:
        unknown = sorted(set(query) - {"from", "to", "last"})
        if unknown:
            raise ApiError(400, f"unknown query parameter {unknown[0]!r}: use ?from=A&to=B or ?last=N")
        start, end, last = _query_int(query, "from"), _query_int(query, "to"), _query_int(query, "last")
        if last is not None:
            if start is not None or end is not None:
                raise ApiError(400, "use either ?last=N or ?from=A&to=B, not both")
            count = min(last, MAX_BLOCKS_PER_REQUEST)

            def newest(chain: Chain) -> list[dict[str, Any]]:
                top = chain.height
                return [views.block_view(chain.block(h)) for h in range(top, max(top - count, -1), -1)]

            return self._call(newest)
        if start is None:
            raise ApiError(400, "say which blocks: ?from=A&to=B (at most 100) or ?last=N")
        stop = start + MAX_BLOCKS_PER_REQUEST - 1 if end is None else min(end, start + MAX_BLOCKS_PER_REQUEST - 1)
        return self._call(lambda chain: [views.block_view(b) for b in chain.blocks(start, stop)])

    def get_tx(self, query: dict[str, list[str]], body: bytes, text: str) -> Any:
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a transaction id: expected 64 hex digits")
        return self._call(lambda chain: chain.tx(bytes.fromhex(text)))

    def get_account(self, query: dict[str, list[str]], body: bytes, address: str) -> Any:
        return self._call(lambda chain: chain.account(address))

    def get_validators(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self._call(lambda chain: chain.validators())

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

    def post_forge(self, query: dict[str, list[str]], body: bytes) -> Any:
        return self.node.forge_once().to_view()


def _status_of(exc: LedgerError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, DatabaseError):
        return 500
    if isinstance(exc, NodeUnavailable):
        return 503
    return 400


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing only: checks, routing, body limits, JSON in and out."""

    server: "_Server"
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], node: "Node") -> None:
        self.node = node
        super().__init__(address, _Handler)


class _Server6(_Server):
    address_family = socket.AF_INET6


# ---- the node ----------------------------------------------------------------------------------


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _print_line(line: str) -> None:
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


class Node:
    """One open chain served over HTTP and forged on a timer.

    ``start()`` binds and begins serving, then writes the node record; ``run()`` forges every
    ``interval`` seconds until SIGINT/SIGTERM (or :meth:`request_stop`), then :meth:`close`
    stops accepting, waits for the chain call in progress, closes the database and removes
    the record.
    """

    def __init__(
        self,
        chain: Chain,
        home: Path,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        interval: float = 5.0,
        round_hook: RoundHook | None = None,
        log: LogFunction | None = None,
        allow_remote: bool = False,
    ) -> None:
        if not interval > 0:
            raise NodeError(f"the forging interval must be positive, got {interval}")
        if not allow_remote and not is_loopback_host(host):
            raise NodeError(f"{host} is not a loopback address: binding it needs allow_remote")
        self.chain = chain
        self.home = Path(home)
        self.host = host
        self.port = port
        self.interval = interval
        self.round_hook = round_hook
        self.allow_remote = allow_remote
        self.lock = threading.Lock()
        self.closed = False
        self.api = NodeApi(self)
        self.started = _utc_now()
        self.record: NodeRecord | None = None
        self._log_sink = log or _print_line
        self._log_lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> None:
        """Bind, serve in a background thread, and record pid and address in the home."""
        server_class = _Server6 if ":" in self.host else _Server
        try:
            self._server = server_class((self.host, self.port), self)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise NodeError(
                f"cannot listen on {format_address(self.host, self.port)}: {reason}: "
                "choose another address with --listen"
            ) from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="posctl-node-http", daemon=True)
        self._thread.start()
        self.record = NodeRecord(pid=os.getpid(), address=self.address, url=self.url, started=self.started)
        write_node_record(self.home, self.record)

    def info(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "address": self.address,
            "url": self.url,
            "started": self.started,
            "home": str(self.home),
            "chain_id": self.chain.params.chain_id,
            "interval": self.interval,
        }

    def request_stop(self) -> None:
        self._stop.set()

    def run(self, *, install_signals: bool = True) -> None:
        """Forge every ``interval`` seconds until asked to stop; then close everything."""
        previous: dict[int, Any] = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda _s, _f: self._stop.set())
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.forge_once(quiet_errors=True)
                except Exception as exc:  # a bug or an I/O error: say so, keep the node up
                    self.log(f"forging failed: {type(exc).__name__}: {exc}")
        finally:
            self.close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def close(self) -> None:
        """Stop accepting, let the chain call in progress finish, close the DB, drop the record."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            if not self.closed:
                self.closed = True
                self.chain.close()
        if self.record is not None:
            try:
                remove_node_record(self.home, self.record)
            except OSError:
                pass
            self.record = None

    # ---- forging ---------------------------------------------------------------------------

    def forge_once(self, *, quiet_errors: bool = False) -> ForgeResult:
        """One round: the hook (if any), then a forge attempt; logs the block and evictions."""
        try:
            with self.lock:
                if self.closed:
                    raise NodeUnavailable("the node is shutting down: retry once it has stopped")
                if self.round_hook is not None:
                    try:
                        self.round_hook(self.chain)
                    except Exception as exc:  # a failed proposal must not stop the forger
                        self.log(f"round hook failed: {type(exc).__name__}: {exc}")
                result = self.chain.forge()
        except LedgerError as exc:
            if not quiet_errors:
                raise
            self.log(f"forging failed: {exc}")
            return ForgeResult(block=None, reason=str(exc), evicted=[])
        self._log_result(result)
        return result

    def _log_result(self, result: ForgeResult) -> None:
        height = result.block.height if result.block is not None else self.chain.tip.height + 1
        for tx_id, reason in result.evicted:
            self.log(f"evicted tx {tx_id} at height {height}: {reason}")
        block = result.block
        if block is not None:
            self.log(
                f"block {block.height} validator {block.header.validator} "
                f"participants {len(block.participants)} txs {len(block.txs)} hash {block.hash.hex()[:16]}"
            )

    def log(self, message: str) -> None:
        with self._log_lock:
            self._log_sink(f"{_timestamp()} {message}")


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MAX_BLOCKS_PER_REQUEST",
    "MAX_BODY_BYTES",
    "Node",
    "NodeError",
    "NodeRecord",
    "NodeRunning",
    "NodeUnavailable",
    "check_no_running_node",
    "find_running_node",
    "format_address",
    "is_loopback_host",
    "is_process_alive",
    "node_record_path",
    "open_node_chain",
    "parse_listen",
    "probe_node",
    "read_node_record",
    "remove_node_record",
    "write_node_record",
]
