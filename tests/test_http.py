"""The node's HTTP layer against a real ``posctl node run`` on a free loopback port: keep-alive,
slow and stalled clients, file descriptors running short, JSON for every error status, the
cookie, batch submission, the kept-alive CLI client, and ``kill -9`` under concurrent batched
and single submissions (nothing acknowledged is lost)."""

from __future__ import annotations

import http.client
import json
import random
import resource
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cli.node_backend import NodeBackend
from ledger.chain.facade import Chain
from ledger.consensus.genesis import GenesisConfig
from ledger.node.cookie import authorization, cookie_path, read_cookie
from ledger.params import Params
from tests.test_node import (
    CHAIN_ID,
    ROOT,
    Key,
    NodeProcess,
    clean_env,
    cookie_header,
    free_port,
    make_home,
    random_key,
    request,
    signed,
)


class LimitedNode(NodeProcess):
    """``posctl node run`` with extra options and, optionally, a lower ``ulimit -n``."""

    def __init__(self, home: Path, *extra: str, nofile: int | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.log_path = home.parent / f"node-{self.port}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run",
             "--listen", f"127.0.0.1:{self.port}", "--interval", "3600", *extra],
            cwd=ROOT, env=clean_env(), stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=limit,
        )


@pytest.fixture
def node_at():
    started: list[LimitedNode] = []

    def start(home: Path, *extra: str, nofile: int | None = None) -> LimitedNode:
        node = LimitedNode(home, *extra, nofile=nofile)
        started.append(node)
        return node.wait_ready()  # type: ignore[return-value]

    yield start
    for node in started:
        if node.proc.poll() is None:
            node.kill()
        elif not node.log.closed:
            node.log.close()


def raw_exchange(port: int, data: bytes, timeout: float = 15.0) -> tuple[int, dict[str, str], Any]:
    """Send raw bytes, read one response (status, headers, JSON body) until the node closes or it is complete."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response: {buffer!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, json.loads(body[:length])


# ---- keep-alive --------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        connection.connect()
        local = connection.sock.getsockname()
        for i in range(30):
            connection.request("GET", "/status" if i % 2 else f"/accounts/{setup.users[0].address}")
            response = connection.getresponse()
            assert response.status == 200 and not response.will_close
            json.loads(response.read())
            assert connection.sock is not None and connection.sock.getsockname() == local
        tx = signed(setup.users[0], 0, "transfer", to=setup.users[1].address, amount=7)
        connection.request("POST", "/txs", tx.encode(), {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["tx_id"] == tx.id_hex
        assert connection.sock.getsockname() == local
    finally:
        connection.close()


def test_cli_client_keeps_its_connection(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    backend = NodeBackend(node.url, home=setup.home)
    try:
        assert backend.status()["height"] == 0
        first = backend._connection
        assert first is not None and first.sock is not None
        local = first.sock.getsockname()
        backend.account(setup.users[0].address)
        backend.validators()
        backend.submit(signed(setup.users[0], 0, "transfer", to=setup.users[1].address, amount=3))
        assert backend._connection is first and first.sock.getsockname() == local
        assert backend.forge()["forged"] is False  # with the cookie, read from the home
    finally:
        backend.close()


# ---- slow clients ------------------------------------------------------------------------------


def test_stalled_body_gets_408_with_json(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home, "--request-timeout", "1.5")
    started = time.monotonic()
    status, headers, body = raw_exchange(
        node.port, b"POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 300\r\n\r\n{\"chain_id\":")
    assert status == 408 and body["type"] == "RequestTimeout" and headers["content-type"] == "application/json"
    assert 1.0 < time.monotonic() - started < 6.0


def test_a_trickling_client_cannot_stretch_the_deadline(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home, "--request-timeout", "1.5")
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        request_bytes = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
        closed_at = None
        for byte in request_bytes:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            time.sleep(0.05)
            if time.monotonic() - started > 8:
                break
        if closed_at is None:
            status, _, body = read_response(sock)
            assert status == 408 and body["type"] == "RequestTimeout"
            closed_at = time.monotonic()
    assert closed_at - started < 6.0


def test_slow_connections_past_the_fd_limit_do_not_stop_the_node(tmp_path: Path, node_at) -> None:
    """1,500 slow connections against a node under ``ulimit -n 1024``: another client is still
    answered within a second, every time."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1500 + 200
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    setup = make_home(tmp_path)
    node = node_at(setup.home, nofile=1024)
    slow: list[socket.socket] = []
    latencies: list[float] = []
    stop = threading.Event()
    errors: list[str] = []

    def probe() -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                status, view = request(node.port, "GET", "/status", timeout=5)
                if status != 200 or view["chain_id"] != CHAIN_ID:
                    errors.append(f"status {status}")
            except (OSError, http.client.HTTPException) as exc:
                errors.append(repr(exc))
            latencies.append(time.monotonic() - began)
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for i in range(1500):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", node.port))
            except BlockingIOError:
                pass
            slow.append(sock)
            if i % 100 == 0:
                time.sleep(0.05)
        deadline = time.monotonic() + 3
        for sock in slow:  # each sends the start of a request and stalls
            try:
                sock.send(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            except OSError:
                pass
        while time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        prober.join(timeout=30)
        for sock in slow:
            sock.close()
    assert not prober.is_alive()
    assert errors == [], errors[:5]
    assert len(latencies) >= 10 and max(latencies) < 1.0, sorted(latencies)[-5:]
    assert node.proc.poll() is None
    assert request(node.port, "GET", "/status", timeout=2)[0] == 200


# ---- errors are JSON ---------------------------------------------------------------------------


def test_every_error_status_has_a_json_body(tmp_path: Path, node_at) -> None:
    home = tmp_path / "home"
    user, other, validator = random_key(), random_key(), random_key()
    Chain.create(home, GenesisConfig(
        params=Params(chain_id=CHAIN_ID, max_mempool_txs=1),
        allocations={user.address: 1_000, other.address: 1_000, validator.address: 10_000},
        bonds={validator.address: 1_000}, timestamp=1_700_000_000,
    )).close()
    node = node_at(home, "--request-timeout", "1.5")
    port = node.port
    host = b"Host: 127.0.0.1\r\n"
    seen: dict[int, dict[str, Any]] = {}

    def check(status: int, headers: dict[str, str], body: Any) -> None:
        assert headers["content-type"] == "application/json", (status, headers)
        assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"] and body["type"], body
        seen[status] = body

    check(*raw_exchange(port, b"GET /status HTTP/1.1\r\n" + host + b"Content-Length: 0\r\nContent-Length: 5\r\n\r\n"))
    check(*raw_exchange(port, b"POST /txs HTTP/1.1\r\n" + host + b"Content-Length: 3\r\n\r\nabc"))
    check(*raw_exchange(port, b"\x16\x03\x01 not http at all\r\n\r\n"))
    check(*raw_exchange(port, b"POST /forge HTTP/1.1\r\n" + host + b"Content-Length: 0\r\n\r\n"))
    check(*raw_exchange(port, b"POST /forge HTTP/1.1\r\n" + host + b"Authorization: Basic X19jb29raWVfXzp3cm9uZw==\r\n"
                              b"Content-Length: 0\r\n\r\n"))
    check(*raw_exchange(port, b"GET /status HTTP/1.1\r\nHost: evil.example\r\n\r\n"))
    check(*raw_exchange(port, b"GET /nope HTTP/1.1\r\n" + host + b"\r\n"))
    check(*raw_exchange(port, b"DELETE /status HTTP/1.1\r\n" + host + b"\r\n"))
    check(*raw_exchange(port, b"POST /txs HTTP/1.1\r\n" + host + b"Content-Length: 10\r\n\r\n{"))
    check(*raw_exchange(port, b"POST /txs HTTP/1.1\r\n" + host + b"Content-Length: 5000000\r\n\r\n"))
    check(*raw_exchange(port, b"GET /status HTTP/1.1\r\n" + host + b"X-Big: " + b"a" * 20000 + b"\r\n\r\n"))
    first = signed(user, 0, "transfer", to=other.address, amount=5)
    over = signed(other, 0, "transfer", to=user.address, amount=5)
    gap = signed(user, 5, "transfer", to=other.address, amount=5)
    for tx in (gap, first, over):
        data = tx.encode()
        answer = raw_exchange(port, b"POST /txs HTTP/1.1\r\n" + host + b"Content-Length: %d\r\n\r\n" % len(data) + data)
        if tx is first:
            assert answer[0] == 200 and answer[2]["tx_id"] == first.id_hex
        else:
            check(*answer)
    assert sorted(seen) == [400, 401, 403, 404, 405, 408, 413, 422, 431, 503]
    assert seen[401]["type"] == "Unauthorized" and seen[408]["type"] == "RequestTimeout"
    assert seen[422]["type"] == "NonceMismatch" and seen[503]["type"] == "MempoolFull"
    assert seen[431]["type"] == "HeadersTooLarge" and seen[413]["type"] == "PayloadTooLarge"


def test_conflicting_content_length_is_refused(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    tx = signed(setup.users[0], 0, "transfer", to=setup.users[1].address, amount=5).encode()
    status, _, body = raw_exchange(node.port, b"POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n"
                                              b"Content-Length: 2\r\n\r\n" % len(tx) + tx)
    assert status == 400 and "Content-Length" in body["error"]
    assert request(node.port, "GET", "/status")[1]["mempool"] == 0  # nothing was admitted


def test_post_txs_answers_like_every_json_route_and_a_client_leaving_mid_body_is_no_error(
        tmp_path: Path, node_at) -> None:
    """``POST /txs`` is served outside Starlette's layers (``PostTxs``): its answers must carry
    the same headers as the other JSON routes, other methods on /txs still get 405, and a client
    that goes away halfway through a body is nobody's internal error, on that route or another."""
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    host = b"Host: 127.0.0.1\r\n"
    first = signed(setup.users[0], 0, "transfer", to=setup.users[1].address, amount=5)
    tx = first.encode()
    status, headers, body = raw_exchange(node.port, b"POST /txs HTTP/1.1\r\n" + host +
                                         b"Content-Length: %d\r\n\r\n" % len(tx) + tx)
    assert status == 200 and body["tx_id"] == first.id_hex
    _, status_headers, _ = raw_exchange(node.port, b"GET /status HTTP/1.1\r\n" + host + b"\r\n")
    varying = ("content-length", "date")
    assert {k: v for k, v in headers.items() if k not in varying} == \
        {k: v for k, v in status_headers.items() if k not in varying}
    refused = raw_exchange(node.port, b"POST /txs HTTP/1.1\r\n" + host + b"Content-Length: 2\r\n\r\n[]")
    assert refused[0] == 400 and {k: v for k, v in refused[1].items() if k not in varying} == \
        {k: v for k, v in status_headers.items() if k not in varying}
    status, headers, body = raw_exchange(node.port, b"GET /txs HTTP/1.1\r\n" + host + b"\r\n")
    assert status == 405 and headers["allow"] == "POST" and body["type"] == "MethodNotAllowed"

    for path in (b"/txs", b"/evidence"):
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
            sock.sendall(b"POST " + path + b" HTTP/1.1\r\n" + host + b"Content-Length: 100\r\n\r\n{\"first\":")
            time.sleep(0.3)
    assert request(node.port, "GET", "/status")[1]["mempool"] == 1  # still serving; the one tx stands
    assert node.stop() == 0
    log = node.output()
    assert "internal error" not in log and "ClientDisconnect" not in log, log


# ---- the cookie --------------------------------------------------------------------------------


def test_forging_needs_the_cookie_which_is_new_at_each_start(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    status, body = request(node.port, "POST", "/forge")
    assert status == 401 and body["type"] == "Unauthorized" and ".cookie" in body["error"]
    wrong = {"Authorization": authorization("__cookie__:" + "0" * 64)}
    assert request(node.port, "POST", "/forge", headers=wrong)[0] == 401
    mode = stat.S_IMODE(cookie_path(setup.home).stat().st_mode)
    assert mode == 0o600
    first = read_cookie(setup.home)
    status, body = request(node.port, "POST", "/forge", headers=cookie_header(setup.home))
    assert status == 200 and body["forged"] is False
    assert request(node.port, "GET", "/status")[0] == 200  # reading needs no cookie
    assert node.stop() == 0
    assert not cookie_path(setup.home).exists()
    again = node_at(setup.home)
    second = read_cookie(setup.home)
    assert second is not None and second != first
    assert request(again.port, "POST", "/forge", headers={"Authorization": authorization(first or "")})[0] == 401
    assert request(again.port, "POST", "/forge", headers=cookie_header(setup.home))[0] == 200


# ---- batches -----------------------------------------------------------------------------------


def test_a_batch_answers_each_tx(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    alice, bob = setup.users[0], setup.users[1]
    good0 = signed(alice, 0, "transfer", to=bob.address, amount=5)
    good1 = signed(alice, 1, "stake", amount=10)
    gap = signed(alice, 9, "transfer", to=bob.address, amount=5)
    forged = signed(bob, 0, "transfer", to=alice.address, amount=5)
    tampered = signed(bob, 0, "transfer", to=alice.address, amount=6)
    tampered_bytes = json.loads(tampered.encode())
    tampered_bytes["signature"] = json.loads(forged.encode())["signature"]
    rich = signed(setup.users[2], 0, "transfer", to=alice.address, amount=10**12)
    items = [json.loads(good0.encode()), tampered_bytes, json.loads(good1.encode()), json.loads(gap.encode()),
             {"kind": "transfer"}, json.loads(rich.encode()), json.loads(good0.encode())]
    status, answers = request(node.port, "POST", "/txs", json.dumps(items).encode())
    assert status == 200 and len(answers) == len(items)
    assert [a["status"] for a in answers] == [200, 422, 200, 422, 400, 422, 422]
    assert answers[0] == {"status": 200, "tx_id": good0.id_hex}  # the sender has the tx: no echo
    assert answers[2] == {"status": 200, "tx_id": good1.id_hex}
    assert answers[1]["tx_id"] == tampered.id_hex and answers[6]["tx_id"] == good0.id_hex
    assert [a.get("type") for a in answers[1:]] == [
        "InvalidSignature", None, "NonceMismatch", "InvalidTransaction", "InsufficientBalance", "DuplicateTransaction"]
    assert request(node.port, "GET", f"/txs/{good1.id_hex}")[1]["status"] == "pending"
    assert request(node.port, "GET", "/status")[1]["mempool"] == 2
    assert request(node.port, "POST", "/txs", b"[]")[0] == 400


def test_hostile_json_bodies_get_a_400_that_says_what_is_wrong(tmp_path: Path, node_at) -> None:
    """Deeply nested arrays once made ``POST /txs`` answer 500 (a RecursionError, logged as an
    internal error), and a number of thousands of digits answered with Python's advice to call
    ``sys.set_int_max_str_digits()``."""
    setup = make_home(tmp_path)
    node = node_at(setup.home)
    huge = b"9" * 5000
    cases = [
        (b"[" * 100_000 + b"]" * 100_000, "the body is not a JSON array of transactions: nested too deeply"),
        (b'[{"amount":' + huge + b"}]",
         "the body is not a JSON array of transactions: a number has thousands of digits, far above any amount"),
        (b'{"amount":' + huge + b"}",
         "undecodable transaction: not valid JSON: a number has thousands of digits, far above any amount"),
    ]
    for body, error in cases:
        status, answer = request(node.port, "POST", "/txs", body)
        assert (status, answer) == (400, {"error": error, "type": "InvalidTransaction"})
    assert request(node.port, "GET", "/status")[1]["mempool"] == 0
    assert node.stop() == 0
    assert "internal error" not in node.output()


def test_single_posts_arriving_together_each_get_their_own_answer(tmp_path: Path, node_at) -> None:
    """Requests that arrive in one turn of the node's loop are admitted as one group (the API's
    coalescer); each connection must still get the answer for its own tx, in the order the
    mempool's rules give: of two txs spending one nonce, one is admitted, the other refused."""
    setup = make_home(tmp_path, users=6)
    node = node_at(setup.home)
    alice, bob = setup.users[0], setup.users[1]
    first = signed(alice, 0, "transfer", to=bob.address, amount=5)
    rival = signed(alice, 0, "transfer", to=bob.address, amount=6)
    forged = json.loads(signed(bob, 0, "transfer", to=alice.address, amount=7).encode())
    forged["signature"] = json.loads(first.encode())["signature"]
    others = [signed(key, 0, "stake", amount=10 + i) for i, key in enumerate(setup.users[2:])]
    bodies = [first.encode(), rival.encode(), json.dumps(forged, sort_keys=True, separators=(",", ":")).encode(),
              *(tx.encode() for tx in others)]
    sockets = [socket.create_connection(("127.0.0.1", node.port), timeout=15) for _ in bodies]
    try:
        for sock, body in zip(sockets, bodies):  # everything sent before anything is read
            sock.sendall(b"POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answers = [read_response(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    statuses = [status for status, _, _ in answers]
    rivals = sorted(statuses[:2])
    assert rivals == [200, 422], answers[:2]
    winner = 0 if statuses[0] == 200 else 1
    assert answers[winner][2]["tx_id"] == (first, rival)[winner].id_hex
    assert answers[1 - winner][2]["type"] in {"NonceMismatch", "DuplicateTransaction"}
    assert statuses[2] == 422 and answers[2][2]["type"] == "InvalidSignature", answers[2]
    for (status, _, body), tx in zip(answers[3:], others):
        assert status == 200 and body["tx_id"] == tx.id_hex and body["tx"]["amount"] == tx.amount
    assert request(node.port, "GET", "/status")[1]["mempool"] == 1 + len(others)


# ---- kill -9 under concurrent submissions ------------------------------------------------------


def _submitter(port: int, key: Key, peer: str, batch: int, stop: threading.Event, acked: list[str]) -> None:
    """One kept-alive client: batches of ``batch`` txs (or single POSTs when 1), acked ids recorded."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    nonce = 0
    try:
        while not stop.is_set():
            txs = [signed(key, nonce + i, "transfer", to=peer, amount=1) for i in range(batch)]
            body = txs[0].encode() if batch == 1 else b"[" + b",".join(tx.encode() for tx in txs) + b"]"
            connection.request("POST", "/txs", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            answers = [answer] if batch == 1 else answer
            if batch == 1 and response.status != 200:
                return
            for item in answers:
                if "tx_id" in item and item.get("status", 200) == 200:
                    acked.append(item["tx_id"])
                    nonce += 1
    except (OSError, http.client.HTTPException, ValueError):
        return  # killed mid-request: that submission was not acknowledged
    finally:
        connection.close()


def test_kill_9_under_concurrent_submitters_loses_nothing_acknowledged(tmp_path: Path, node_at) -> None:
    setup = make_home(tmp_path, users=6)
    rng = random.Random(secrets.randbits(32))
    print("kill delays from seed", rng.random())
    node = node_at(setup.home)
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_submitter, args=(node.port, key, setup.users[(i + 1) % 6].address,
                                                  1 if i % 2 else 25, stop, acked))
        for i, key in enumerate(setup.users)
    ]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(1.0, 2.5))
    node.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()
    assert len(acked) > 20
    with Chain.open(setup.home) as chain:
        for tx_id in acked:
            assert chain.tx(bytes.fromhex(tx_id)).status == "pending", tx_id
        assert chain.mempool.count >= len(acked)
