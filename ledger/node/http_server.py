"""The node's HTTP server: uvicorn (httptools parser) in a thread, hardened against slow clients.

uvicorn speaks HTTP/1.1 with keep-alive, but by itself it waits forever for a request that has
begun (its only timer runs between requests) and it has no cap on connections that keeps
answering when file descriptors run short. :class:`GuardedProtocol` adds both, plus JSON bodies
for the errors the server layer answers before the application sees a request:

* **one deadline per request**, armed when the connection opens or the request's first byte
  arrives and disarmed only when the whole request (headers and body) is in: a client that
  trickles a byte at a time cannot stretch it. A request cut short gets ``408`` (JSON) and the
  connection is closed; a connection that never sent a byte is simply closed.
* **a header size limit** (``431``, JSON), since llhttp itself accepts headers of any size.
* **a connection cap** below the process's file descriptor limit: when a new connection would
  pass it, the connection that has waited longest for its request to arrive (idle keep-alive or
  slow) is closed to make room. Clients whose requests arrive promptly are never the victims, so
  the node keeps answering them while hundreds of slow connections come and go.
* malformed requests (conflicting ``Content-Length``, bad framing) get ``400`` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import socket
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

LISTEN_BACKLOG = 2048
"""Pending connections the kernel queues before the server accepts them."""

FD_RESERVE = 256
"""File descriptors kept back from the connection cap: LevelDB's files, worker pipes, logs."""


def default_max_connections() -> int:
    """A connection cap that leaves :data:`FD_RESERVE` descriptors free under ``ulimit -n``."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, min(8192, soft - FD_RESERVE))


@dataclass(frozen=True)
class HttpLimits:
    """What a client may take of the node's time and memory."""

    request_timeout: float = 10.0
    """Seconds from a request's first byte (or the connection's opening) to its last."""
    keep_alive: float = 5.0
    """Seconds an idle kept-alive connection stays open between requests."""
    max_header_bytes: int = 16 * 1024
    """Request line and headers together; above this the answer is 431."""
    max_connections: int = field(default_factory=default_max_connections)
    """Open connections; a new one past this closes the longest-waiting slow or idle one."""


def json_error_bytes(status: int, reason: str, message: str, kind: str) -> bytes:
    """A complete ``Connection: close`` response with the API's JSON error body."""
    body = (json.dumps({"error": message, "type": kind}) + "\n").encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
    ).encode("ascii")
    return head + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request deadline, a header limit and a connection cap.

    Subclasses made by :func:`guarded_protocol` carry the limits and the shared table of
    connections waiting for a request (oldest first), from which the cap picks its victim.
    """

    limits: HttpLimits = HttpLimits()
    waiting: "OrderedDict[GuardedProtocol, None]" = OrderedDict()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        """Bytes fed while the current request's headers were incomplete."""
        self._header_size = 0
        """The current request's line and headers, as the parser reported them."""
        self._headers_done = False
        self._request_bytes = False
        self._refusal: bytes | None = None
        self._arm()
        self.waiting[self] = None
        if len(self.connections) > self.limits.max_connections:
            self._evict_one()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        super().connection_lost(exc)

    # ---- the deadline ----------------------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.request_timeout, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started = self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started
        if self._request_bytes and not started:
            self.transport.write(json_error_bytes(
                408, "Request Timeout",
                f"the request did not arrive completely within {self.limits.request_timeout:g} s", "RequestTimeout",
            ))
        self.transport.close()

    def _evict_one(self) -> None:
        for victim in self.waiting:
            if victim is not self and not victim.transport.is_closing():
                self.waiting.pop(victim, None)
                victim.transport.close()
                return

    # ---- bytes in --------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # bytes of a next request: its own deadline starts now
        self._request_bytes = True
        super().data_received(data)
        if self.parser is None or self.transport.is_closing():
            return
        if not self._headers_done:
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self.transport.write(self._headers_too_large())
                self.transport.close()

    def _headers_too_large(self) -> bytes:
        return json_error_bytes(
            431, "Request Header Fields Too Large",
            f"the request line and headers are above {self.limits.max_header_bytes} bytes", "HeadersTooLarge",
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._headers_done = False
        self._header_bytes = 0
        self._header_size = 0
        self._request_bytes = True
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._header_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        if self._header_size > self.limits.max_header_bytes:
            # Raising here stops the parser; uvicorn then calls send_400_response, which sends this.
            self._refusal = self._headers_too_large()
            raise ValueError("headers too large")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        self.waiting.pop(self, None)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._request_bytes = False
            self.waiting.pop(self, None)
            self.waiting[self] = None  # idle now: next in line after older waiters

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            self.transport.write(self._refusal)
            self.transport.close()
            return
        self.transport.write(json_error_bytes(
            400, "Bad Request",
            "the request is not valid HTTP/1.1 (bad framing, or conflicting Content-Length headers)",
            "BadRequest",
        ))
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedProtocol]:
    """A protocol class with its own limits and its own table of waiting connections."""
    return type("NodeHttpProtocol", (GuardedProtocol,), {"limits": limits, "waiting": OrderedDict()})


class _LogBridge(logging.Handler):
    """uvicorn's own errors go to the node's log, one line each."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._log(f"http: {record.getMessage()}")
        except Exception:  # never let logging take the server down
            pass


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket; raises OSError (address in use, permission) for the caller to word.

    The protocol is named (``IPPROTO_TCP``, not the default 0) because asyncio sets ``TCP_NODELAY``
    on accepted sockets only when their ``proto`` says TCP. Without it uvicorn's two writes per
    response (head, then body) meet Nagle's algorithm: the body waits for the client's delayed ACK
    of the head, about 40 ms on every kept-alive request after the first.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class HttpServer:
    """An ASGI app served by uvicorn on an already bound socket, in a background thread."""

    def __init__(self, app: Any, sock: socket.socket, limits: HttpLimits, log: Callable[[str], None]) -> None:
        self.sock = sock
        self.limits = limits
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "asyncio"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.ERROR)
            logger.propagate = False
            if not any(isinstance(h, _LogBridge) for h in logger.handlers):
                logger.addHandler(_LogBridge(log))
        # proxy_headers off: uvicorn's default trusts X-Forwarded-For/-Proto from 127.0.0.1, so
        # any local client could rewrite the address and scheme the app sees; the node is nobody's
        # backend, and it is one middleware less on every request.
        config = uvicorn.Config(
            app, http=guarded_protocol(limits), ws="none", lifespan="off", loop="asyncio",
            log_config=None, access_log=False, server_header=False, proxy_headers=False,
            timeout_keep_alive=int(max(1, limits.keep_alive)), timeout_graceful_shutdown=3,
            backlog=LISTEN_BACKLOG,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="posctl-node-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 10.0) -> None:
        """Serve in the background; returns once the server accepts connections."""
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < timeout:
            threading.Event().wait(0.01)
            waited += 0.01

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in progress finish (bounded), and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)
        try:
            self.sock.close()
        except OSError:
            pass
