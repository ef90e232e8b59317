"""HTTP figures against a real ``posctl node run`` subprocess on a loopback port (issue 14, item 6).

Admission: 1, 4 and 16 keep-alive clients, one tx per ``POST /txs`` or batches of 100 (a JSON
array), with the node's signature engine forced to pycryptodome and left at its default
(coincurve, the ``fast`` extra, when installed). Each client is its own process with one
persistent connection over which it sends pre-formatted requests and reads the answers with a
minimal parser (see :func:`_client`): on 2 cores a client thread pool shares one GIL with the
measuring parent, ``http.client`` costs more CPU per request than the node's HTTP layer, and the
client side must not be what is measured. Every config gets a fresh
home with the same genesis, so the one pre-signed stream is valid on each; the node forges every
hour only, so nothing but admission takes its lock. Senders are split so no two clients share
one (the mempool refuses nonce gaps, so one sender's txs must arrive in order).

Status: ``GET /status`` latency, p50 and p99, under 200 concurrent keep-alive clients (asyncio,
raw sockets, one event loop, so the client adds no GIL hand-offs); the first request of each
client includes its connect, as a client sees it.

The CPU used by the node (with its admission workers) and by the clients is reported next to
each rate, so a reader can see which side a figure is bound by.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from bench.fixtures import World
from ledger.crypto import secp256k1
from ledger.node.record import read_node_record

CLIENT_COUNTS = (1, 4, 16)
BATCH = 100
ENGINE_NAMES = secp256k1.ENGINES
START_TIMEOUT = 30.0
NAGLE_TXS = 100
"""Txs of the one run with the client's Nagle algorithm left on."""
REPO = Path(__file__).resolve().parent.parent


def config_key(engine: str, clients: int, batch: int) -> str:
    return f"http_{'b100' if batch > 1 else '1tx'}_c{clients}_{engine}_per_s"


def engines() -> list[str]:
    """pycryptodome always; coincurve when the ``fast`` extra is installed."""
    return ["pycryptodome"] + (["coincurve"] if secp256k1.coincurve_available() else [])


# ---- the node ------------------------------------------------------------------------------


def _node_env(engine: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    if engine is not None:
        env[secp256k1.ENGINE_VARIABLE] = engine
    return env


@dataclass
class NodeProcess:
    proc: subprocess.Popen
    port: int
    engine: str
    log_path: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _get_json(port: int, path: str, timeout: float = 2.0) -> tuple[int, object]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def start_node(home: Path, engine: str | None) -> NodeProcess:
    """``posctl node run --listen 127.0.0.1:0`` on ``home``; the port is read from ``node.json``."""
    log_path = home.parent / f"{home.name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run",
             "--listen", "127.0.0.1:0", "--interval", "3600"],
            cwd=REPO, env=_node_env(engine), stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"node exited {proc.returncode}: {log_path.read_text()[-800:]}")
        record = read_node_record(home)
        if record is not None and record.pid == proc.pid:
            port = int(record.address.rpartition(":")[2])
            try:
                status, info = _get_json(port, "/node")
            except OSError:
                status, info = 0, None
            if status == 200 and isinstance(info, dict):
                node = NodeProcess(proc, port, str(info.get("signature_engine")), log_path)
                if engine is not None and node.engine != engine:
                    node.stop()
                    raise RuntimeError(f"node reports engine {node.engine}, expected {engine}")
                return node
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"node did not start within {START_TIMEOUT}s: {log_path.read_text()[-800:]}")


def _tree_cpu_seconds(root: int) -> float:
    """User+system CPU seconds of ``root`` and its live descendants (the admission workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(cpu.get(pid, 0.0) for pid in tree)


# ---- admission clients ---------------------------------------------------------------------


def _client(port: int, bodies: list[bytes], nagle: bool, barrier, results) -> None:  # type: ignore[no-untyped-def]
    """One keep-alive connection posting ``bodies`` in order; reports (accepted, first refusal,
    CPU seconds, finish time).

    The admission figures use :func:`_raw_exchange`: each request is pre-formatted and sent in
    one write, and only the status line, ``Content-Length`` and the JSON body are read back, so a
    client costs tens of microseconds a request (as a C load generator would) and the two cores
    are left to the node being measured. ``http.client`` costs about 220 us a request, which at
    16 clients took half a core from the node. ``nagle`` switches to ``http.client`` with Nagle's
    algorithm left on (its default), for the one figure that shows whether a plain
    ``http.client`` user such as the CLI meets the delayed-ACK stall (the node's own side of it
    is fixed in :func:`ledger.node.http_server.bind_listener`).
    """
    accepted, refusal, cpu0, waited = 0, "", time.process_time(), False
    sock: socket.socket | None = None
    connection: http.client.HTTPConnection | None = None
    try:
        if nagle:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("GET", "/status")
            connection.getresponse().read()
        else:
            sock = socket.create_connection(("127.0.0.1", port), timeout=120)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            exchange = _RawExchange(sock)
            exchange.send(_STATUS_REQUEST)
            exchange.response()
            requests = [_post_request(body) for body in bodies]
        barrier.wait()
        waited = True
        cpu0 = time.process_time()
        for index, body in enumerate(bodies):
            if connection is not None:
                connection.request("POST", "/txs", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                status, answer = response.status, json.loads(response.read())
            else:
                exchange.send(requests[index])
                status, answer = exchange.response()
            items = answer if isinstance(answer, list) else [dict(answer, status=status)]
            for item in items:
                if item.get("status") == 200:
                    accepted += 1
                elif not refusal:
                    refusal = str(item.get("error"))
    except Exception as exc:  # reported, never a hang: the parent checks every tx was accepted
        refusal = refusal or f"client failed: {type(exc).__name__}: {exc}"
        if not waited:
            barrier.abort()
    finally:
        if connection is not None:
            connection.close()
        if sock is not None:
            sock.close()
    results.put((accepted, refusal, time.process_time() - cpu0, time.monotonic()))


def _post_request(body: bytes) -> bytes:
    return (b"POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class _RawExchange:
    """Minimal HTTP/1.1 over one kept-alive socket: the node always answers with a
    ``Content-Length`` (never chunked), which is all this reads."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, request: bytes) -> None:
        self.sock.sendall(request)

    def response(self) -> tuple[int, object]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4:]
        lines = head.split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line[:15].lower() == "content-length:")
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), json.loads(body)

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("the node closed the connection")
        self.buffer += data


def _split(raw_txs: Sequence[bytes], senders: int, clients: int, count: int) -> list[list[bytes]]:
    """Each client's txs, in stream order: client c gets senders i with i % clients == c, among
    the first ``senders // clients * clients`` senders so every client has as many."""
    usable = senders // clients * clients
    per_client: list[list[bytes]] = [[] for _ in range(clients)]
    taken = 0
    for j, raw in enumerate(raw_txs):
        sender = j % senders  # fixtures.transfer_specs deals txs round-robin over the senders
        if sender >= usable:
            continue
        per_client[sender % clients].append(raw)
        taken += 1
        if taken >= count:
            break
    return per_client


def _bodies(txs: list[bytes], batch: int) -> list[bytes]:
    if batch == 1:
        return list(txs)
    return [b"[" + b",".join(txs[i:i + batch]) + b"]" for i in range(0, len(txs), batch)]


def admission(port: int, node_pid: int, raw_txs: Sequence[bytes], senders: int, clients: int, batch: int,
              count: int, nagle: bool = False) -> dict[str, float]:
    """Txs/s admitted by ``clients`` processes, and the cores node and clients used meanwhile."""
    per_client = _split(raw_txs, senders, clients, count)
    total = sum(len(txs) for txs in per_client)
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, _bodies(txs, batch), nagle, barrier, results)) for txs in per_client]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        for proc in procs:
            proc.kill()
        raise RuntimeError("HTTP admission: a client could not connect to the node") from None
    node_cpu0 = _tree_cpu_seconds(node_pid)
    started = time.monotonic()
    outcomes = [results.get(timeout=600) for _ in procs]
    node_cpu = _tree_cpu_seconds(node_pid) - node_cpu0
    for proc in procs:
        proc.join(timeout=30)
    elapsed = max(finished for *_, finished in outcomes) - started
    accepted = sum(a for a, *_ in outcomes)
    refusals = [r for _, r, *_ in outcomes if r]
    if accepted != total:
        raise RuntimeError(f"HTTP admission: {total - accepted} of {total} txs refused, first: {refusals[:1]}")
    return {"per_s": total / elapsed, "txs": total, "seconds": elapsed,
            "node_cores": node_cpu / elapsed, "client_cores": sum(o[2] for o in outcomes) / elapsed}


# ---- status latency ------------------------------------------------------------------------

_STATUS_REQUEST = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _status_client(port: int, requests: int, go: asyncio.Event, latencies: list[float]) -> None:
    await go.wait()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(requests):
            writer.write(_STATUS_REQUEST)
            status = await _read_response(reader)
            if status != 200:
                raise RuntimeError(f"GET /status answered {status}")
            now = time.perf_counter()
            latencies.append(now - started)
            started = now
    finally:
        writer.close()


async def _status_run(port: int, clients: int, requests: int) -> tuple[list[float], float]:
    go = asyncio.Event()
    latencies: list[float] = []
    tasks = [asyncio.create_task(_status_client(port, requests, go, latencies)) for _ in range(clients)]
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - started


def status_latency(port: int, node_pid: int, clients: int, requests: int) -> dict[str, float]:
    """p50/p99 ms of ``GET /status`` with ``clients`` connections each asking ``requests`` times."""
    node_cpu0 = _tree_cpu_seconds(node_pid)
    cpu0 = time.process_time()
    latencies, elapsed = asyncio.run(_status_run(port, clients, requests))
    client_cpu = time.process_time() - cpu0
    node_cpu = _tree_cpu_seconds(node_pid) - node_cpu0
    ordered = sorted(latencies)
    return {
        "status_p50_ms_200c": statistics.median(ordered) * 1e3,
        "status_p99_ms_200c": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
        "status_max_ms_200c": ordered[-1] * 1e3,
        "status_per_s_200c": len(ordered) / elapsed,
        "status_node_cores_200c": node_cpu / elapsed,
        "status_client_cores_200c": client_cpu / elapsed,
    }


# ---- the whole HTTP part -------------------------------------------------------------------


def coincurve_ceiling(raw_txs: Sequence[bytes], count: int) -> float:
    """Raw coincurve verifications per second on this core, keys parsed beforehand (info only)."""
    import coincurve
    from coincurve.ecdsa import cdata_to_der, deserialize_compact

    from ledger.consensus.transactions import Transaction

    keys: dict[bytes, object] = {}
    work = []
    for raw in raw_txs[:count]:
        tx = Transaction.decode(raw)
        key = keys.get(tx.public_key)
        if key is None:
            key = keys[tx.public_key] = coincurve.PublicKey(tx.public_key)
        work.append((key, tx.signing_message(), cdata_to_der(deserialize_compact(tx.signature))))
    started = time.perf_counter()
    for key, message, der in work:
        if not key.verify(der, message):  # type: ignore[attr-defined]
            raise RuntimeError("coincurve ceiling: a fixture signature does not verify")
    return len(work) / (time.perf_counter() - started)


def single_run_txs(single_txs: int, clients: int) -> int:
    """Txs of a one-tx-per-POST run: ``single_txs`` per 4 clients (at least ``single_txs``). With a
    fixed 4,000 the 16-client runs lasted under 2 s, and on this shared 2-core machine a pair of
    whole bench runs then disagreed by ±20% where alternating 12,000-tx runs agreed."""
    return single_txs * max(1, clients // 4)


def run_http(world: World, raw_txs: Sequence[bytes], single_txs: int, batch_txs: int, status_clients: int,
             status_requests: int, log: Callable[[str], None], workdir: Path | None = None) -> dict[str, float]:
    """Every HTTP figure; each config on a fresh home and node."""
    figures: dict[str, float] = {}
    base = Path(tempfile.mkdtemp(prefix="http-", dir=workdir))
    senders = len(world.senders)
    homes = iter(range(1, 1000))

    def measure(engine: str | None, clients: int, batch: int, count: int, nagle: bool = False) -> dict[str, float]:
        home = base / f"node{next(homes)}"
        world.create_chain(home).close()
        node = start_node(home, engine)
        try:
            return admission(node.port, node.proc.pid, raw_txs, senders, clients, batch, count, nagle)
        finally:
            node.stop()

    for engine in engines():
        for batch, count in ((1, single_txs), (BATCH, batch_txs)):
            for clients in CLIENT_COUNTS:
                result = measure(engine, clients, batch, single_run_txs(count, clients) if batch == 1 else count)
                key = config_key(engine, clients, batch)
                figures[key] = result["per_s"]
                figures[key.replace("_per_s", "_node_cores")] = result["node_cores"]
                figures[key.replace("_per_s", "_client_cores")] = result["client_cores"]
                log(f"HTTP {engine} {clients} clients, {'batches of 100' if batch > 1 else 'one tx per POST'}: "
                    f"{result['per_s']:.0f} tx/s ({result['txs']} txs, {result['seconds']:.1f}s; node "
                    f"{result['node_cores']:.2f} cores, clients {result['client_cores']:.2f} cores)")
    result = measure(None, 1, 1, NAGLE_TXS, nagle=True)
    figures["http_1tx_c1_nagle_per_s"] = result["per_s"]
    log(f"HTTP one client, one tx per POST, Nagle left on: {result['per_s']:.0f} tx/s ({result['txs']} txs)")
    home = base / "status"
    world.create_chain(home).close()
    node = start_node(home, None)
    try:
        figures.update(status_latency(node.port, node.proc.pid, status_clients, status_requests))
    finally:
        node.stop()
    log(f"GET /status under {status_clients} clients: p50 {figures['status_p50_ms_200c']:.1f} ms, "
        f"p99 {figures['status_p99_ms_200c']:.1f} ms ({figures['status_per_s_200c']:.0f} req/s; node "
        f"{figures['status_node_cores_200c']:.2f} cores, client {figures['status_client_cores_200c']:.2f})")
    if secp256k1.coincurve_available():
        figures["verify_ceiling_coincurve_per_s"] = coincurve_ceiling(raw_txs, 3000)
    return figures


def add_ratios(figures: dict[str, float]) -> None:
    """Each HTTP admission rate as a multiple of the single-core pycryptodome verify ceiling."""
    ceiling = figures["verify_ceiling_per_s"]
    for key in list(figures):
        if key.startswith("http_") and key.endswith("_per_s"):
            figures[key.replace("_per_s", "_x_ceiling")] = figures[key] / ceiling


def table_rows() -> list[tuple[str, str, str, Callable[[dict[str, float]], bool] | None]]:
    """(key, unit, target, check) for every HTTP row of the table, in order."""
    rows: list[tuple[str, str, str, Callable[[dict[str, float]], bool] | None]] = []
    for engine in ENGINE_NAMES:
        for batch in (1, BATCH):
            for clients in CLIENT_COUNTS:
                key = config_key(engine, clients, batch)
                if batch > 1:
                    target, check = ">= 1.5x ceiling", _ratio_check(key, 1.5)
                elif clients == 16:
                    target, check = ">= 1.0x ceiling", _ratio_check(key, 1.0)
                else:
                    target, check = "", None
                rows.append((key, "txs/s", target, check))
    rows.append(("status_p50_ms_200c", "ms", "", None))
    rows.append(("status_p99_ms_200c", "ms", "< 100", lambda f: f["status_p99_ms_200c"] < 100))
    return rows


def _ratio_check(key: str, ratio: float) -> Callable[[dict[str, float]], bool]:
    return lambda f: f[key] >= ratio * f["verify_ceiling_per_s"]


def info_rows() -> list[tuple[str, str, str]]:
    rows = [("verify_ceiling_coincurve_per_s", "verif/s", "raw coincurve verifications on one core"),
            ("http_1tx_c1_nagle_per_s", "txs/s", "1 client, 1 tx/POST, http.client without TCP_NODELAY")]
    for engine in ENGINE_NAMES:
        for batch in (1, BATCH):
            for clients in CLIENT_COUNTS:
                key = config_key(engine, clients, batch)
                what = f"{engine}, {clients} clients, {'batch 100' if batch > 1 else '1 tx/POST'}"
                rows.append((key.replace("_per_s", "_x_ceiling"), "x", f"{what}: x pycryptodome ceiling"))
                if clients == CLIENT_COUNTS[-1]:  # all are in the JSON; the table shows the busiest
                    rows.append((key.replace("_per_s", "_node_cores"), "cores", f"{what}: CPU used by the node"))
                    rows.append((key.replace("_per_s", "_client_cores"), "cores", f"{what}: CPU used by the clients"))
    rows += [("status_max_ms_200c", "ms", "slowest GET /status under 200 clients"),
             ("status_per_s_200c", "req/s", "GET /status answered per second under 200 clients"),
             ("status_node_cores_200c", "cores", "CPU used by the node during the status run"),
             ("status_client_cores_200c", "cores", "CPU used by the asyncio client during the status run")]
    return rows
