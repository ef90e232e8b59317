"""The node's HTTP JSON API: routes, request limits, the loopback guards and the cookie check.

HTTP only. The node is reached through :class:`NodeService`, a small interface that
:class:`ledger.node.service.Node` implements, so this module never imports the node. The server
underneath (uvicorn, with its timeouts and connection cap) is :mod:`ledger.node.http_server`;
the OpenAPI document is :mod:`ledger.node.openapi`.

Routes (JSON, except the explorer's pages; every error, whatever its status, is
``{"error": message, "type": ErrorClassName}``)::

    GET  /                        the route index; a browser (Accept: text/html) gets the explorer
    GET  /explorer/<name>         the explorer's scripts, style sheet and icon (:mod:`ledger.node.explorer`)
    GET  /status                  chain status (same view as ``posctl chain status --json``)
    GET  /node                    this node: pid, address, url, started, chain id, interval
    GET  /blocks/latest           the tip block
    GET  /blocks/<height>         a block by height (a 64-hex-digit hash, or a unique prefix of 8+
                                  hex digits, is accepted too)
    GET  /blocks/hash/<hex>       a block by hash
    GET  /blocks?from=A&to=B      blocks A..B ascending, at most 100 (``to`` defaults to A+99)
    GET  /blocks?last=N           the newest N blocks (at most 100), newest first
    GET  /txs/<id>                where a tx is: pending, included or evicted
    POST /txs                     a signed tx (its canonical JSON) → {"tx_id", "tx"}; or a JSON
                                  array of them → one answer per tx, in order: {"status",
                                  "tx_id"}, plus {"error", "type"} when refused
    POST /evidence                two signed proposals {"first", "second"} → {"evidence_id", "evidence"}
    GET  /accounts/<address>      an account
    GET  /accounts/<address>/history?limit=N&before=H[:I]
                                  the txs it sent or received, newest first (pending first);
                                  N defaults to 20, at most 100; ``before`` pages on: only the
                                  included txs before height H (index I), the last row's place
    GET  /mempool?limit=N         pending txs in arrival order (N defaults to 100, at most 1000),
                                  with the pool's count and bytes
    GET  /validators              every validator: bonded, or with a validator history
    POST /forge                   forge now (needs the cookie) → the block, or {"forged": false, …}
    POST /backup                  {"dir": absolute path} (needs the cookie) → a consistent copy there
    GET  /openapi.json            this API as an OpenAPI 3.1 document

A ledger error maps to the ``http_status`` its class declares (:mod:`ledger.errors`), so a new
error family (a storage failure answering 503, say) needs no change here.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import ipaddress
import json
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ledger import encoding
from ledger.chain import views
from ledger.chain.results import parse_history_cursor
from ledger.chain.facade import Chain, ForgeResult
from ledger.chain.mempool import Admission, decode_submission, decode_submitted_value
from ledger.consensus.evidence import Evidence
from ledger.consensus.transactions import Transaction
from ledger.errors import EncodingError, InvalidTransaction, LedgerError, redact_secrets
from ledger.node import explorer, openapi

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9000
"""The tutorial's port."""

MAX_BODY_BYTES = 64 * 1024
"""A single tx, evidence, or anything else posted: bodies above this get 413."""

MAX_BATCH_BODY_BYTES = 1024 * 1024
"""A JSON array of txs posted to ``/txs``."""

MAX_BATCH_TXS = 1000
"""The most txs one batch may carry."""

MAX_BLOCKS_PER_REQUEST = 100
"""The most blocks one range request returns."""

DEFAULT_HISTORY = 20
MAX_HISTORY = 100
"""History lines one request returns by default, and at most."""

DEFAULT_MEMPOOL_LIST = 100
MAX_MEMPOOL_LIST = 1000
"""Pending txs one ``GET /mempool`` lists by default, and at most (the count covers them all)."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
"""Host names a browser can only mean this machine by (DNS rebinding guard)."""

API_THREADS = 4
"""Threads that run chain calls for the API (the node's lock serialises them anyway)."""

T = Any


class NodeService(Protocol):
    """What the API needs of a node. :class:`ledger.node.service.Node` is the implementation."""

    allow_remote: bool

    def read(self, func: Callable[[Chain], T]) -> T:
        """Run ``func`` on the chain under the node's lock (blocking)."""

    def cached_status(self) -> dict[str, Any] | None:
        """The status view if nothing changed since it was computed, without taking the lock."""

    def status(self) -> dict[str, Any]:
        """The status view (blocking)."""

    def admit(self, txs: Sequence[Transaction]) -> "concurrent.futures.Future[list[Admission]]":
        """Queue txs for admission; resolves once they are durable or refused."""

    def submit_evidence(self, evidence: Evidence) -> bytes:
        """Admit evidence (blocking); its id once durable."""

    def forge_once(self) -> ForgeResult:
        """Forge now (blocking)."""

    def backup(self, directory: Path) -> dict[str, Any]:
        """A consistent copy of the chain into the new directory (blocking)."""

    def info(self) -> dict[str, Any]:
        """This node: pid, address, url, start time, chain id, interval."""

    def authorised(self, authorization: str | None) -> bool:
        """True if an ``Authorization`` header presents the node's cookie."""

    def log(self, message: str) -> None:
        """One line in the node's log."""


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


def status_of(exc: LedgerError) -> int:
    """The HTTP status an error's class declares (500 for anything outside the tree)."""
    status = getattr(type(exc), "http_status", 500)
    return status if isinstance(status, int) and 400 <= status <= 599 else 500


def _refusal_status(exc: LedgerError) -> int:
    """A submission refused by a rule: 422 unless its class says otherwise (404, 503…)."""
    status = status_of(exc)
    return 422 if status == 400 else status


_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_RAW_JSON_HEADERS = [(b"content-type", b"application/json")] + [
    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in _JSON_HEADERS.items()]
""":data:`_JSON_HEADERS` and the media type, as an ASGI response start carries them."""


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload) + "\n").encode("utf-8")  # insertion order, as direct mode


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_json_bytes(payload), status, {**_JSON_HEADERS, **(headers or {})}, media_type="application/json")


async def send_json(send: Any, status: int, payload: Any) -> None:
    """What :func:`json_response` sends, straight to an ASGI ``send`` (no Response object)."""
    data = _json_bytes(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [*_RAW_JSON_HEADERS, (b"content-length", b"%d" % len(data))]})
    await send({"type": "http.response.body", "body": data})


def error_body(message: str, kind: str) -> dict[str, str]:
    return {"error": redact_secrets(message), "type": kind}


def error_response(status: int, message: str, kind: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status, error_body(message, kind), headers)


_NUMBER = re.compile(r"[0-9]{1,19}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def _query(request: Request) -> dict[str, list[str]]:
    text = request.scope.get("query_string", b"").decode("latin-1")
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise ApiError(400, "the query string is malformed") from None


def _query_int(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1 or not _NUMBER.fullmatch(values[0]):
        raise ApiError(400, f"query parameter {name!r} must be given once, as a whole number of 1 to 19 digits")
    return int(values[0])


def _refuse_unknown_query(request: Request, allowed: Sequence[str]) -> None:
    """A query parameter the route does not read is refused, not ignored: ``/validators?limit=1``
    answered every validator and ``/blocks/latest?last=5`` one block, as if they had been read."""
    unknown = sorted(set(_query(request)) - set(allowed))
    if unknown:
        names = f"{', '.join(allowed[:-1])} and {allowed[-1]}" if len(allowed) > 1 else "".join(allowed)
        takes = f"only {names}" if allowed else "none"
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}: this route takes {takes}")


def _limit(request: Request, default: int, most: int) -> int:
    """``?limit=N``: 1 to ``most``, ``default`` when absent."""
    limit = _query_int(_query(request), "limit")
    if limit is None:
        return default
    if not 1 <= limit <= most:
        raise ApiError(400, f"limit {limit} is out of range: use 1 to {most}")
    return limit


def _history_cursor(query: dict[str, list[str]]) -> tuple[int, int] | None:
    """``?before=HEIGHT[:INDEX]``: where the next page of a history starts, if given."""
    values = query.get("before")
    if values is None:
        return None
    if len(values) != 1:
        raise ApiError(400, "query parameter 'before' must be given once")
    try:
        return parse_history_cursor(values[0])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 (and the connection closed) once it passes ``limit``."""
    return await receive_body(request.scope, request.receive, limit)


async def receive_body(scope: dict[str, Any], receive: Any, limit: int) -> bytes:
    """:func:`read_body` for an ASGI route; :class:`ClientDisconnect` if the client goes away."""
    for name, value in scope["headers"]:
        if name == b"content-length":  # the Guard refused two; uvicorn, a malformed one
            text = value.decode("latin-1").strip()
            if not _NUMBER.fullmatch(text):
                raise ApiError(400, "the Content-Length header is not a number")
            if int(text) > limit:
                raise ApiError(413, f"the body is {int(text)} bytes, above the limit of {limit}", "PayloadTooLarge",
                               {"Connection": "close"})
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is above the limit of {limit} bytes", "PayloadTooLarge",
                           {"Connection": "close"})
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _decode_batch(body: bytes) -> list[Transaction | LedgerError]:
    """A JSON array of txs → each decoded tx, or the error that refused it."""
    try:
        items = json.loads(body, object_pairs_hook=encoding.reject_duplicate_keys)
    except EncodingError as exc:
        raise ApiError(400, f"the body is not a JSON array of transactions: {exc}", "InvalidTransaction") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not a JSON array of transactions: {encoding.json_error_text(exc)}",
                       "InvalidTransaction") from None
    if not isinstance(items, list) or not items:
        raise ApiError(400, "a batch is a non-empty JSON array of transactions", "InvalidTransaction")
    if len(items) > MAX_BATCH_TXS:
        raise ApiError(413, f"the batch holds {len(items)} txs, above the limit of {MAX_BATCH_TXS}",
                       "PayloadTooLarge")
    out: list[Transaction | LedgerError] = []
    for item in items:
        try:
            out.append(decode_submitted_value(item))
        except LedgerError as exc:
            out.append(exc)
        except (TypeError, ValueError) as exc:
            out.append(InvalidTransaction(f"undecodable transaction: {exc}"))
    return out


def _admission_view(tx: Transaction, result: Admission) -> tuple[int, dict[str, Any]]:
    if result.error is not None:
        return _refusal_status(result.error), error_body(str(result.error), type(result.error).__name__)
    return 200, {"tx_id": tx.id_hex, "tx": views.tx_view(tx)}


class Coalescer:
    """Submissions made in one turn of the event loop go to the node as one.

    Handing work to the admission pipeline's threads and back is what a single-tx POST cost most
    (measured: one hand-off per request halved a bare Starlette route's rate; one per loop turn
    cost a third as much). So every request of a turn adds its txs here, the first one schedules
    a flush for the end of the turn, and the flush makes **one** :meth:`NodeService.admit` call
    whose answer comes back to the loop in **one** callback and is dealt out by position. Each tx
    still gets its own verdict, in submission order, as the pipeline merges submissions anyway.
    """

    def __init__(self, service: NodeService) -> None:
        self.service = service
        self._waiting: list[tuple[list[Transaction], "asyncio.Future[list[Admission]]"]] = []

    def admit(self, txs: list[Transaction]) -> "asyncio.Future[list[Admission]]":
        """A future on the running loop: the txs' admissions, once durable or refused."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Admission]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush, loop)
        self._waiting.append((txs, future))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            answer = self.service.admit([tx for txs, _ in waiting for tx in txs])
        except Exception as exc:  # refused before queueing (not serving yet): everyone hears why
            self._deal(waiting, exc)
            return

        def done(answer: "concurrent.futures.Future[list[Admission]]") -> None:
            outcome = answer.exception() or answer.result()
            try:
                loop.call_soon_threadsafe(self._deal, waiting, outcome)
            except RuntimeError:  # the loop has closed (the server stopped): nobody is waiting
                pass

        answer.add_done_callback(done)

    @staticmethod
    def _deal(waiting: list[tuple[list[Transaction], "asyncio.Future[list[Admission]]"]],
              outcome: list[Admission] | BaseException) -> None:
        """Each submitter's slice of the admissions, in order, or the error that stopped them all."""
        start = 0
        for txs, future in waiting:
            end = start + len(txs)
            if not future.done():  # a client that went away cancelled its request
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome[start:end])
            start = end


class PostTxs:
    """``POST /txs`` as a bare ASGI app: the one route a load of small requests hits.

    Every other route is a Starlette endpoint behind its middleware and router; this one is
    reached straight from :class:`Guard` (after its Host, Origin and Content-Length checks) and
    answers without a ``Request`` or ``Response`` object. Measured with 16 clients posting one tx
    each, alternating runs of 12,000 against the Starlette route: +8% over eleven pairs (nine won;
    its prototype +13% over seven rounds, where skipping only Starlette's layers gave +6%). Same
    limits, answers and error bodies as the other routes (:func:`receive_body`, :func:`send_json`,
    :func:`error_for`).
    """

    def __init__(self, api: "NodeApi") -> None:
        self.api = api

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            payload = await self.api.submit_txs(await receive_body(scope, receive, MAX_BATCH_BODY_BYTES))
        except ClientDisconnect:  # nobody to answer
            return
        except Exception as exc:
            await error_for(self.api.service, exc, scope["method"], scope["path"])(scope, receive, send)
            return
        await send_json(send, 200, payload)


class NodeApi:
    """The routes' logic over a :class:`NodeService`; blocking chain calls run in a thread pool."""

    def __init__(self, service: NodeService) -> None:
        self.service = service
        self.executor = concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="posctl-api")
        self.coalescer = Coalescer(service)
        self.post_tx = PostTxs(self)

    async def _run(self, func: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, func)

    async def _read(self, func: Callable[[Chain], T]) -> T:
        return await self._run(lambda: self.service.read(func))

    # ---- reads -----------------------------------------------------------------------------

    async def get_index(self, request: Request) -> Any:
        """The JSON route index, or the explorer's page for a browser (``Accept: text/html``)."""
        if explorer.wants_html(request.headers.get("accept")):
            return _asset_response("index.html", vary=True)
        return json_response(200, {"routes": [f"{method} {path}" for method, path, _ in ROUTES if path != "/"]},
                             {"Vary": "Accept"})

    async def get_explorer_asset(self, request: Request) -> Any:
        return _asset_response(request.path_params["name"])

    async def get_openapi(self, request: Request) -> Any:
        return openapi.document()

    async def get_status(self, request: Request) -> Any:
        cached = self.service.cached_status()
        return cached if cached is not None else await self._run(self.service.status)

    async def get_node(self, request: Request) -> Any:
        return self.service.info()

    async def get_latest_block(self, request: Request) -> Any:
        return views.block_view(await self._read(lambda chain: chain.block(chain.height)))

    async def get_block(self, request: Request) -> Any:
        ref = request.path_params["ref"]
        return views.block_view(await self._read(lambda chain: chain.block_by_ref(ref)))

    async def get_block_by_hash(self, request: Request) -> Any:
        text = request.path_params["hash"]
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a block hash: expected 64 hex digits")
        return views.block_view(await self._read(lambda chain: chain.block_by_hash(bytes.fromhex(text))))

    async def get_blocks(self, request: Request) -> Any:
        query = _query(request)
        start, end, last = _query_int(query, "from"), _query_int(query, "to"), _query_int(query, "last")
        if last is not None:
            if start is not None or end is not None:
                raise ApiError(400, "use either ?last=N or ?from=A&to=B, not both")
            count = min(last, MAX_BLOCKS_PER_REQUEST)
            return [views.block_view(b) for b in await self._read(lambda chain: list(chain.last_blocks(count)))]
        if start is None:
            raise ApiError(400, "say which blocks: ?from=A&to=B (at most 100) or ?last=N")
        stop = start + MAX_BLOCKS_PER_REQUEST - 1 if end is None else min(end, start + MAX_BLOCKS_PER_REQUEST - 1)
        return [views.block_view(b) for b in await self._read(lambda chain: list(chain.blocks(start, stop)))]

    async def get_tx(self, request: Request) -> Any:
        text = request.path_params["tx_id"]
        if not _HEX64.fullmatch(text):
            raise ApiError(400, f"{text!r} is not a transaction id: expected 64 hex digits")
        return views.tx_status_view(await self._read(lambda chain: chain.tx(bytes.fromhex(text))))

    async def get_account(self, request: Request) -> Any:
        address = request.path_params["address"]
        return views.account_view(await self._read(lambda chain: chain.account(address)))

    async def get_history(self, request: Request) -> Any:
        address = request.path_params["address"]
        limit = _limit(request, DEFAULT_HISTORY, MAX_HISTORY)
        before = _history_cursor(_query(request))
        return [views.history_view(entry)
                for entry in await self._read(lambda chain: chain.history(address, limit, before))]

    async def get_mempool(self, request: Request) -> Any:
        limit = _limit(request, DEFAULT_MEMPOOL_LIST, MAX_MEMPOOL_LIST)
        return views.mempool_view(await self._read(lambda chain: chain.pending_txs(limit)))

    async def get_validators(self, request: Request) -> Any:
        return [views.validator_view(row) for row in await self._read(lambda chain: chain.validators())]

    # ---- writes ----------------------------------------------------------------------------

    async def submit_txs(self, body: bytes) -> Any:
        """``POST /txs``: one tx or a JSON array of them (served by :class:`PostTxs`)."""
        if body.lstrip()[:1] == b"[":
            return await self._post_batch(body)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is {len(body)} bytes, above the limit of {MAX_BODY_BYTES} "
                                "for one tx (send a JSON array for a batch)", "PayloadTooLarge")
        try:
            tx = decode_submission(body)
        except LedgerError as exc:
            raise ApiError(400, str(exc), type(exc).__name__) from None
        result = (await self.coalescer.admit([tx]))[0]
        status, view = _admission_view(tx, result)
        if status != 200:
            raise ApiError(status, view["error"], view["type"])
        return view

    async def _post_batch(self, body: bytes) -> Any:
        decoded = _decode_batch(body)
        txs = [item for item in decoded if isinstance(item, Transaction)]
        results = iter(await self.coalescer.admit(txs) if txs else [])
        answers: list[dict[str, Any]] = []
        for item in decoded:
            if not isinstance(item, Transaction):
                answers.append({"status": 400, **error_body(str(item), type(item).__name__)})
                continue
            result = next(results)
            if result.error is None:  # the sender has the tx: its id is the answer, not an echo
                answers.append({"status": 200, "tx_id": item.id_hex})
            else:
                status, view = _admission_view(item, result)
                answers.append({"status": status, **view, "tx_id": item.id_hex})
        return answers

    async def post_evidence(self, request: Request) -> Any:
        """Evidence of equivocation: ``{"first": tx, "second": tx}`` (two signed proposals)."""
        body = await read_body(request, MAX_BODY_BYTES)
        try:
            evidence = Evidence.decode(body)
        except LedgerError as exc:
            raise ApiError(400, f"undecodable evidence: {exc}", type(exc).__name__) from None
        try:
            evidence_id = await self._run(lambda: self.service.submit_evidence(evidence))
        except LedgerError as exc:
            raise ApiError(_refusal_status(exc), str(exc), type(exc).__name__) from None
        return {"evidence_id": evidence_id.hex(), "evidence": views.evidence_view(evidence)}

    def _require_cookie(self, request: Request, what: str) -> None:
        if not self.service.authorised(request.headers.get("authorization")):
            raise ApiError(401, f"{what} needs the node's cookie: send the contents of $POSCTL_HOME/.cookie "
                                "as HTTP Basic credentials (posctl does this for you)", "Unauthorized",
                           {"WWW-Authenticate": 'Basic realm="posctl node"'})

    async def post_forge(self, request: Request) -> Any:
        self._require_cookie(request, "forging")
        await read_body(request, MAX_BODY_BYTES)
        return (await self._run(self.service.forge_once)).to_view()

    async def post_backup(self, request: Request) -> Any:
        """``{"dir": "/absolute/new/dir"}``: the node copies a snapshot of its database there (it
        holds LevelDB's lock, so only it can make a consistent copy while it runs). It writes files
        where it is told, so it needs the cookie, as forging does."""
        self._require_cookie(request, "a backup")
        body = await read_body(request, MAX_BODY_BYTES)
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        directory = parsed.get("dir") if isinstance(parsed, dict) else None
        if not isinstance(directory, str) or not directory.startswith("/"):
            raise ApiError(400, 'the body must be {"dir": "<absolute path of a new directory>"}')
        return await self._run(lambda: self.service.backup(Path(directory)))


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/", "get_index"),
    ("GET", "/explorer/{name}", "get_explorer_asset"),
    ("GET", "/openapi.json", "get_openapi"),
    ("GET", "/status", "get_status"),
    ("GET", "/node", "get_node"),
    ("GET", "/blocks", "get_blocks"),
    ("GET", "/blocks/latest", "get_latest_block"),
    ("GET", "/blocks/hash/{hash}", "get_block_by_hash"),
    ("GET", "/blocks/{ref}", "get_block"),
    ("GET", "/txs/{tx_id}", "get_tx"),
    ("POST", "/txs", "post_tx"),
    ("POST", "/evidence", "post_evidence"),
    ("GET", "/accounts/{address}", "get_account"),
    ("GET", "/accounts/{address}/history", "get_history"),
    ("GET", "/mempool", "get_mempool"),
    ("GET", "/validators", "get_validators"),
    ("POST", "/forge", "post_forge"),
    ("POST", "/backup", "post_backup"),
)
"""(method, path, :class:`NodeApi` method)."""

QUERY_PARAMETERS: Mapping[str, tuple[str, ...]] = {
    "/blocks": ("from", "to", "last"),
    "/accounts/{address}/history": ("limit", "before"),
    "/mempool": ("limit",),
}
"""The query parameters a GET route reads, by its path in :data:`ROUTES`; the others read none.
Every GET route refuses any other with the same 400 (:func:`_refuse_unknown_query`), and
/openapi.json lists exactly these (a test checks)."""


def _asset_response(name: str, vary: bool = False) -> Response:
    """One of the explorer's files, with its Content-Security-Policy; 404 (JSON) for any other name."""
    found = explorer.asset(name)
    if found is None:
        raise ApiError(404, f"the explorer has no file {name!r}: open / in a browser", "NotFound")
    data, media_type = found
    headers = {**explorer.HEADERS, **({"Vary": "Accept"} if vary else {})}
    return Response(data, 200, headers, media_type=media_type)


def error_for(service: NodeService, exc: Exception, method: str, path: str) -> Response:
    """The JSON error answering ``exc``, raised by a route's handler."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.message, exc.kind, exc.headers)
    if isinstance(exc, LedgerError):
        return error_response(status_of(exc), str(exc), type(exc).__name__)
    service.log(f"internal error serving {method} {path}: {type(exc).__name__}: {exc}")  # a bug: keep serving
    return error_response(500, f"internal error: {type(exc).__name__}: {exc}", "InternalError")


def _endpoint(service: NodeService, handler: Callable[[Request], Awaitable[Any]],
              query: Sequence[str] | None = None) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` as a Starlette endpoint: its result as JSON, any error as the JSON error. With
    ``query`` (a GET route's :data:`QUERY_PARAMETERS`) a parameter not in it is refused first."""
    async def endpoint(request: Request) -> Response:
        try:
            if query is not None:
                _refuse_unknown_query(request, query)
            result = await handler(request)
        except ClientDisconnect:  # gone mid-body: nobody to answer, nothing to report
            return Response(status_code=400)
        except Exception as exc:
            return error_for(service, exc, request.method, request.url.path)
        return result if isinstance(result, Response) else json_response(200, result)

    return endpoint


_REASONS = {404: "NotFound", 405: "MethodNotAllowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, as JSON."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    path = request.url.path
    if status == 404:
        message = f"no route {path}: see GET / for the routes"
    elif status == 405:
        message = f"{request.method} is not allowed on {path}: use {headers.get('allow', headers.get('Allow', 'GET'))}"
    else:
        message = str(getattr(exc, "detail", "")) or "the request could not be served"
    return error_response(status, message, _REASONS.get(status, "HttpError"), headers)


class Guard:
    """ASGI middleware: the Host/Origin checks, duplicate-header refusals, trailing slashes, and
    the shortcut past Starlette for the routes in ``shortcuts``."""

    def __init__(self, app: Any, service: NodeService, shortcuts: Mapping[tuple[str, str], Any] | None = None) -> None:
        self.app = app
        self.service = service
        self.shortcuts = dict(shortcuts or {})
        """(method, path) → an ASGI app that serves it without Starlette's layers (:class:`PostTxs`)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = None
        lengths = 0
        hosts = 0
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"content-length":
                lengths += 1
        problem: tuple[int, str, str] | None = None
        if lengths > 1:
            problem = (400, "more than one Content-Length header: send exactly one", "BadRequest")
        elif hosts != 1 or not _host_header_allowed(host, self.service.allow_remote):
            problem = (403, "the Host header must name this machine (localhost, 127.0.0.1 or [::1])", "Forbidden")
        elif not _origin_allowed(origin, self.service.allow_remote):
            problem = (403, "requests from web pages of other origins are refused", "Forbidden")
        if problem is not None:
            response = error_response(problem[0], problem[1], problem[2], {"Connection": "close"} if lengths > 1 else None)
            await response(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = dict(scope, path=path.rstrip("/") or "/")
        shortcut = self.shortcuts.get((scope["method"], scope["path"]))
        await (shortcut or self.app)(scope, receive, send)


def build_app(service: NodeService) -> tuple[Guard, NodeApi]:
    """The ASGI application over ``service`` (and the :class:`NodeApi` behind it, to close)."""
    api = NodeApi(service)
    handlers = {(method, path): getattr(api, name) for method, path, name in ROUTES}
    routes = [Route(path, handler if _is_asgi_app(handler) else
                    _endpoint(service, handler, QUERY_PARAMETERS.get(path, ()) if method == "GET" else None),
                    methods=[method], include_in_schema=False)
              for (method, path), handler in handlers.items()]
    for route in routes:
        route.methods.discard("HEAD")  # as before: a GET route is GET only  # type: ignore[union-attr]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.router.redirect_slashes = False
    # Guard serves a bare ASGI app (PostTxs) straight; its Starlette route stays, so the router
    # still answers other methods on that path with 405 and the Allow header
    shortcuts = {key: handler for key, handler in handlers.items() if _is_asgi_app(handler) and "{" not in key[1]}
    return Guard(app, service, shortcuts), api


def _is_asgi_app(handler: Any) -> bool:
    """A :class:`NodeApi` attribute named in :data:`ROUTES` is a request handler method, which
    :func:`_endpoint` wraps, or an ASGI app (:class:`PostTxs`), served as it is."""
    return not inspect.ismethod(handler)
