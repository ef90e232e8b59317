"""The node: a real ``posctl node run`` subprocess on a free 127.0.0.1 port in every test that
needs one — its routes, the CLI and NodeBackend against it, bad requests of every kind, one
writer per home, stale records, SIGTERM, and SIGKILL at random moments with submissions in
flight (nothing acknowledged is ever lost)."""

from __future__ import annotations

import dataclasses
import http.client
import itertools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.backend import DirectBackend, open_backend
from cli.node_backend import NodeBackend
from ledger.chain.facade import Chain
from ledger.errors import DuplicateTransaction, LedgerError, NodeUnavailable
from ledger.consensus.genesis import GenesisConfig
from ledger.node.api import _host_header_allowed, parse_listen
from ledger.node.cookie import authorization, read_cookie
from ledger.node.record import (
    NodeRecord,
    find_running_node,
    node_record_path,
    read_node_record,
    write_node_record,
)
from ledger.params import Params
from ledger.consensus.transactions import Transaction, make_transaction, sign_transaction
from tests.ledgerkit import Key, make_key, make_proposal

ROOT = Path(__file__).resolve().parents[1]
CHAIN_ID = "posctl-node-test"
START_TIMEOUT = 20.0


# ---- keys, txs, chains -------------------------------------------------------------------------


_KEY_LABELS = itertools.count()


def random_key() -> Key:
    """A fresh key for this test run, derived from a fixed label so every run uses the same keys."""
    return make_key(f"node-test-{next(_KEY_LABELS)}")


def signed(key: Key, nonce: int, kind: str, **fields: Any) -> Transaction:
    tx = make_transaction(kind, chain_id=CHAIN_ID, public_key=key.public, nonce=nonce, **fields)
    return sign_transaction(tx, key.private)


def proposal(port: int, key: Key, nonce: int, bpm: int = 72) -> Transaction:
    """A proposal for the running node's next block: height and seed from ``GET /status``."""
    status, view = request(port, "GET", "/status", timeout=5)
    if status != 200:
        raise OSError(f"GET /status answered {status}")
    return make_proposal(key, nonce, view["height"] + 1, bytes.fromhex(view["next_seed"]), bpm, CHAIN_ID)


@dataclass
class Setup:
    home: Path
    validator: Key
    users: list[Key]


def make_home(tmp_path: Path, users: int = 3) -> Setup:
    home = tmp_path / "home"
    validator = random_key()
    keys = [random_key() for _ in range(users)]
    config = GenesisConfig(
        params=Params(chain_id=CHAIN_ID),
        allocations={**{k.address: 1_000_000 for k in keys}, validator.address: 10_000},
        bonds={validator.address: 1_000},
        timestamp=1_700_000_000,
    )
    Chain.create(home, config).close()
    return Setup(home, validator, keys)


# ---- processes and HTTP ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSCTL_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    return env


def posctl(home: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "--home", str(home), *args],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=timeout,
    )


class NodeProcess:
    """``posctl node run`` as a child process, its output in a log file (never a full pipe)."""

    def __init__(self, home: Path, port: int | None = None, interval: float = 0.2, *extra: str) -> None:
        self.home = home
        self.port = port or free_port()
        self.log_path = home.parent / f"node-{self.port}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--home", str(home), "node", "run",
             "--listen", f"127.0.0.1:{self.port}", "--interval", str(interval), *extra],
            cwd=ROOT, env=clean_env(), stdout=self.log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_ready(self) -> "NodeProcess":
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited {self.proc.returncode}:\n{self.output()}")
            try:
                status, _ = request(self.port, "GET", "/status", timeout=1.0)
                if status == 200 and read_node_record(self.home) is not None:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"node did not answer within {START_TIMEOUT}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=15)
        self.log.close()


@pytest.fixture
def nodes():
    started: list[NodeProcess] = []

    def start(home: Path, *args: Any, ready: bool = True, **kwargs: Any) -> NodeProcess:
        node = NodeProcess(home, *args, **kwargs)
        started.append(node)
        return node.wait_ready() if ready else node

    yield start
    for node in started:
        if node.proc.poll() is None:
            node.kill()
        elif not node.log.closed:
            node.log.close()


def request(
    port: int, method: str, path: str, body: bytes | None = None,
    headers: dict[str, str] | None = None, timeout: float = 10.0,
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw
    finally:
        connection.close()


def cookie_header(home: Path) -> dict[str, str]:
    """The node's cookie as posctl sends it: privileged routes need it."""
    secret = read_cookie(home)
    assert secret is not None, "the node wrote no cookie"
    return {"Authorization": authorization(secret)}


def submit(port: int, tx: Transaction) -> tuple[int, Any]:
    return request(port, "POST", "/txs", tx.encode(), {"Content-Type": "application/json"})


# ---- unit pieces -------------------------------------------------------------------------------


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_listen("[::1]:9001") == ("::1", 9001)
    assert parse_listen(":9002") == ("127.0.0.1", 9002)
    for bad in ("9000", "host:port", "::1:9000", "127.0.0.1:70000", "[::1]9000"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_host_header_rules() -> None:
    for good in ("localhost", "localhost:9000", "127.0.0.1:9000", "[::1]:9000", "LOCALHOST:1", "127.0.0.2"):
        assert _host_header_allowed(good, allow_remote=False), good
    for bad in (None, "", "evil.example", "evil.example:9000", "10.0.0.1:9000", "localhost.evil.example",
                "127.0.0.1:x", "[::1", "localhost:9000:1"):
        assert not _host_header_allowed(bad, allow_remote=False), bad
    assert _host_header_allowed("10.0.0.1:9000", allow_remote=True)
    assert not _host_header_allowed("evil.example:9000", allow_remote=True)


# ---- every route -------------------------------------------------------------------------------


def test_every_route(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)  # forge only on request
    port = node.port
    alice, bob = setup.users[0], setup.users[1]

    status, info = request(port, "GET", "/node")
    assert status == 200 and info["pid"] == node.proc.pid and info["address"] == f"127.0.0.1:{port}"
    assert read_node_record(setup.home).pid == node.proc.pid
    assert oct(node_record_path(setup.home).stat().st_mode & 0o777) == "0o600"

    status, index = request(port, "GET", "/")
    assert status == 200 and "POST /txs" in index["routes"]

    status, view = request(port, "GET", "/status")
    assert status == 200 and view["height"] == 0 and view["chain_id"] == CHAIN_ID and view["mempool"] == 0

    bpm = proposal(port, setup.validator, 0, 72)
    transfer = signed(alice, 0, "transfer", to=bob.address, amount=250)
    for tx in (bpm, transfer):
        status, accepted = submit(port, tx)
        assert status == 200, accepted
        assert accepted["tx_id"] == tx.id_hex and accepted["tx"]["id"] == tx.id_hex
    status, where = request(port, "GET", f"/txs/{transfer.id_hex}")
    assert status == 200 and where["status"] == "pending"
    assert request(port, "GET", "/status")[1]["mempool"] == 2

    status, forged = request(port, "POST", "/forge", headers=cookie_header(setup.home))
    assert status == 200 and forged["forged"] is True and forged["height"] == 1
    assert forged["validator"] == setup.validator.address
    assert {t["id"] for t in forged["txs"]} == {bpm.id_hex, transfer.id_hex}

    status, where = request(port, "GET", f"/txs/{transfer.id_hex}")
    assert status == 200 and where["status"] == "included" and where["height"] == 1

    status, latest = request(port, "GET", "/blocks/latest")
    assert status == 200 and latest["height"] == 1 and latest["hash"] == forged["hash"]
    assert request(port, "GET", "/blocks/1")[1] == latest
    assert request(port, "GET", f"/blocks/hash/{latest['hash']}")[1] == latest
    assert request(port, "GET", f"/blocks/{latest['hash']}")[1] == latest
    status, genesis = request(port, "GET", "/blocks/0")
    assert status == 200 and genesis["height"] == 0

    status, blocks = request(port, "GET", "/blocks?from=0&to=1")
    assert status == 200 and [b["height"] for b in blocks] == [0, 1]
    assert [b["height"] for b in request(port, "GET", "/blocks?from=0")[1]] == [0, 1]
    assert [b["height"] for b in request(port, "GET", "/blocks?last=5")[1]] == [1, 0]
    assert request(port, "GET", "/blocks?last=0")[1] == []
    assert request(port, "GET", "/blocks?from=5&to=9")[1] == []

    status, account = request(port, "GET", f"/accounts/{bob.address}")
    assert status == 200 and account["balance"] == 1_000_250 and account["nonce"] == 0
    status, account = request(port, "GET", f"/accounts/{alice.address}")
    assert account["balance"] == 1_000_000 - 250 and account["nonce"] == 1 and account["next_nonce"] == 1

    status, validators = request(port, "GET", "/validators")
    assert status == 200 and [v["address"] for v in validators] == [setup.validator.address]
    assert validators[0]["blocks_won"] == 1

    status, nothing = request(port, "POST", "/forge", headers=cookie_header(setup.home))
    assert status == 200 and nothing["forged"] is False and "no proposal for this height" in nothing["reason"]

    assert node.stop() == 0
    assert "block 1 validator " + setup.validator.address in node.output()


def test_range_requests_are_capped(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    backend = NodeBackend(node.url, home=setup.home)
    for nonce in range(105):
        backend.submit(proposal(node.port, setup.validator, nonce, 60 + nonce % 40))
        assert backend.forge()["forged"] is True
    status, blocks = request(node.port, "GET", "/blocks?from=0&to=105")
    assert status == 200 and len(blocks) == 100 and blocks[0]["height"] == 0 and blocks[-1]["height"] == 99
    status, blocks = request(node.port, "GET", "/blocks?last=500")
    assert len(blocks) == 100 and blocks[0]["height"] == 105
    # NodeBackend pages past the cap, so it answers exactly like the direct backend.
    heights = [b["height"] for b in backend.blocks_last(250)]
    assert heights == list(range(105, -1, -1))
    assert [b["height"] for b in backend.blocks_last(101)] == list(range(105, 4, -1))
    assert backend.blocks_last(0) == []


# ---- NodeBackend and the CLI give what direct mode gives ---------------------------------------


def _calls(backend: Any, setup: Setup, tx_ids: list[str], block_hash: str) -> dict[str, Any]:
    results: dict[str, Any] = {}
    calls = {
        "status": lambda: backend.status(),
        "latest": lambda: backend.block(None),
        "block1": lambda: backend.block("1"),
        "block_hash": lambda: backend.block(block_hash),
        "block_hash_upper": lambda: backend.block(block_hash.upper()),
        "last3": lambda: backend.blocks_last(3),
        "last_all": lambda: backend.blocks_last(50),
        "validators": lambda: backend.validators(),
        "account": lambda: backend.account(setup.users[0].address),
        "account_upper": lambda: backend.account(setup.users[1].address.upper()),
        "account_empty": lambda: backend.account(setup.users[2].address),
        **{f"tx{i}": (lambda t=t: backend.tx(t)) for i, t in enumerate(tx_ids)},
        # refusals: same class, same message
        "no_block": lambda: backend.block("99"),
        "bad_ref": lambda: backend.block("zz"),
        "latest_ref": lambda: backend.block("latest"),
        "no_hash": lambda: backend.block("ab" * 32),
        "no_tx": lambda: backend.tx("00" * 32),
        "bad_tx_id": lambda: backend.tx("xyz"),
        "bad_address": lambda: backend.account("pos1notanaddress"),
        "typo_address": lambda: backend.account(setup.users[0].address[:-1] + ("q" if setup.users[0].address[-1] != "q" else "p")),
        "nonce_low": lambda: backend.submit(signed(setup.users[0], 0, "transfer", to=setup.users[1].address, amount=1)),
        "nonce_gap": lambda: backend.submit(signed(setup.users[0], 9, "transfer", to=setup.users[1].address, amount=1)),
        "too_much": lambda: backend.submit(signed(setup.users[1], 0, "stake", amount=10**12)),
        "bpm_range": lambda: backend.submit(make_proposal(setup.users[1], 0, 2, bytes(32), 999, CHAIN_ID)),
        "wrong_chain": lambda: backend.submit(make_proposal(setup.users[1], 0, 2, bytes(32), 70, "other-chain")),
    }
    for name, call in calls.items():
        try:
            results[name] = ("ok", call())
        except LedgerError as exc:
            results[name] = ("error", type(exc).__name__, str(exc))
    return results


def test_node_backend_matches_direct_backend(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    assert isinstance(open_backend(setup.home), NodeBackend)
    backend = NodeBackend(node.url, home=setup.home)
    alice, bob = setup.users[0], setup.users[1]
    ids = [backend.submit(proposal(node.port, setup.validator, 0, 80))["tx_id"],
           backend.submit(signed(alice, 0, "transfer", to=bob.address, amount=5))["tx_id"]]
    forged = backend.forge()
    assert forged["forged"] is True
    ids.append(backend.submit(signed(alice, 1, "stake", amount=500))["tx_id"])  # stays pending
    duplicate = backend.submit
    with pytest.raises(DuplicateTransaction) as node_dup:
        duplicate(signed(alice, 1, "stake", amount=500))
    via_node = _calls(backend, setup, ids, forged["hash"])
    assert node.stop() == 0

    direct = open_backend(setup.home)
    assert isinstance(direct, DirectBackend)
    try:
        via_direct = _calls(direct, setup, ids, forged["hash"])
        with pytest.raises(DuplicateTransaction) as direct_dup:
            direct.submit(signed(alice, 1, "stake", amount=500))
    finally:
        direct.close()
    assert via_node == via_direct
    assert (type(node_dup.value), str(node_dup.value)) == (type(direct_dup.value), str(direct_dup.value))
    assert via_node["tx2"][1]["status"] == "pending" and via_node["no_block"][1] == "NotFound"
    assert via_node["bad_ref"][1] == via_node["latest_ref"][1] == "InvalidReference"


def test_cli_prints_the_same_through_the_node(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    backend = NodeBackend(node.url, home=setup.home)
    tx_id = backend.submit(proposal(node.port, setup.validator, 0, 75))["tx_id"]
    backend.forge()
    commands = [
        ("chain", "status", "--json"), ("chain", "status"), ("chain", "show", "1"),
        ("chain", "show", "--last", "2", "--json"), ("chain", "tx", tx_id), ("chain", "validators"),
        ("chain", "show", "1e3"), ("chain", "show", "--", "-1"), ("chain", "show", "99"),
        ("chain", "tx", "00" * 32),
    ]
    via_node = [posctl(setup.home, *cmd) for cmd in commands]
    assert node.stop() == 0
    via_direct = [posctl(setup.home, *cmd) for cmd in commands]
    for cmd, a, b in zip(commands, via_node, via_direct):
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), cmd
    assert via_node[-1].returncode == 1 and via_node[-1].stderr.startswith("error: no transaction")
    for refused in via_node[-4:]:  # a ref that cannot be one, or names nothing: one line, exit status 1
        assert refused.returncode == 1 and refused.stderr.startswith("error: ") and refused.stderr.count("\n") == 1


def test_cli_forge_through_the_node(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    submit(node.port, proposal(node.port, setup.validator, 0, 75))
    result = posctl(setup.home, "chain", "forge", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["height"] == 1
    assert request(node.port, "GET", "/status")[1]["height"] == 1


# ---- bad requests ------------------------------------------------------------------------------


def test_bad_requests(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    port = node.port
    alice = setup.users[0]

    status, body = request(port, "POST", "/txs", b"x" * (70 * 1024))
    assert status == 413 and "limit" in body["error"]
    status, body = request(port, "POST", "/txs", b"this is not json")
    assert status == 400 and body["error"] and body["type"] == "InvalidTransaction"
    status, body = request(port, "POST", "/txs", b'{"kind": "bpm"}')
    assert status == 400 and "undecodable" in body["error"]
    pretty = json.dumps(signed(alice, 0, "stake", amount=1).to_dict(), indent=2).encode()
    status, body = request(port, "POST", "/txs", pretty)
    assert status == 400  # only the canonical encoding is accepted
    status, body = request(port, "POST", "/txs", b"")
    assert status == 400

    status, body = submit(port, signed(alice, 3, "stake", amount=10))
    assert status == 422 and body["type"] == "NonceMismatch" and "gap" in body["error"]
    tx = signed(alice, 0, "stake", amount=10)
    assert submit(port, tx)[0] == 200
    status, body = submit(port, tx)
    assert status == 422 and body["type"] == "DuplicateTransaction"
    status, body = submit(port, signed(setup.users[1], 0, "transfer", to=alice.address, amount=10**13))
    assert status == 422 and body["type"] == "InsufficientBalance"
    good = signed(alice, 1, "stake", amount=10)
    other = signed(setup.users[1], 0, "stake", amount=10)
    status, body = submit(port, dataclasses.replace(good, signature=other.signature))
    assert status == 422 and body["type"] == "InvalidSignature"

    assert request(port, "GET", "/nope")[0] == 404
    status, body = request(port, "GET", "/blocks/77")
    assert status == 404 and body["type"] == "NotFound"
    # a ref that cannot be a height or a hash is malformed input, as /blocks/hash/zz and /txs/zz are
    for ref, shown in (("-1", "-1"), ("1e3", "1e3"), ("%00", "\\x00"), ("%zz", "%zz"), ("1" * 70, "1" * 70)):
        assert request(port, "GET", f"/blocks/{ref}") == (400, {
            "error": f"'{shown}' is neither a block height nor a block hash (64 hex digits, or a unique prefix of "
                     "8 or more)", "type": "InvalidReference"}), ref
    assert request(port, "GET", f"/txs/{'ab' * 32}")[0] == 404
    assert request(port, "GET", "/txs/xyz")[0] == 400
    assert request(port, "GET", "/blocks/hash/xyz")[0] == 400
    status, body = request(port, "GET", "/accounts/pos1bad")
    assert status == 400 and body["type"] == "InvalidAddress"
    for query in ("/blocks", "/blocks?last=x", "/blocks?from=-1", "/blocks?last=1&from=0", "/blocks?page=2", "/blocks?last"):
        assert request(port, "GET", query)[0] == 400, query
    for query in ("/blocks?last=" + "9" * 20, "/blocks?last=1&last=2", "/blocks?last=-1"):
        assert request(port, "GET", query) == (400, {
            "error": "query parameter 'last' must be given once, as a whole number of 1 to 19 digits",
            "type": "BadRequest"}), query

    status, body = request(port, "GET", "/forge")
    assert status == 405 and body["type"] == "MethodNotAllowed"
    assert request(port, "DELETE", "/status")[0] == 405
    assert request(port, "PUT", "/txs")[0] == 405
    assert request(port, "HEAD", "/status")[0] == 405

    status, body = request(port, "GET", "/status", headers={"Host": f"evil.example:{port}"})
    assert status == 403 and body["type"] == "Forbidden"
    status, _ = request(port, "POST", "/forge", headers={"Host": "attacker.test"})
    assert status == 403
    status, _ = request(port, "POST", "/forge", headers={"Origin": "http://evil.example"})
    assert status == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert request(port, "GET", "/status", headers={"Host": host})[0] == 200, host

    # a chunked body is read whole (under the same size cap) and judged: an empty one is no tx
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(4096)
            assert chunk, reply
            reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body)["type"] == "InvalidTransaction", reply

    # the node is still healthy and nothing was admitted by the bad requests
    status, view = request(port, "GET", "/status")
    assert status == 200 and view["mempool"] == 1
    assert node.stop() == 0


def test_every_get_route_refuses_a_query_parameter_it_does_not_read(tmp_path: Path, nodes) -> None:
    """``/validators?limit=1`` answered every validator and ``/blocks/latest?last=5`` one block, while
    ``/blocks?page=2`` was refused: a parameter a route does not read is now refused on every GET route,
    with one error, and the ones it reads still work."""
    setup = make_home(tmp_path)
    port = nodes(setup.home, interval=3600).port
    address = setup.users[0].address
    for path in ("/", "/openapi.json", "/explorer/app.js", "/status", "/node", "/blocks/latest", "/blocks/0",
                 f"/txs/{'ab' * 32}", f"/blocks/hash/{'ab' * 32}", f"/accounts/{address}", "/validators"):
        assert request(port, "GET", path + "?limit=1") == (400, {
            "error": "unknown query parameter 'limit': this route takes none", "type": "BadRequest"}), path
        assert request(port, "GET", path + "?")[0] != 400, path  # an empty query is no parameter
    for path, takes in (("/blocks?last=1&page=2", "from, to and last"), ("/mempool?page=2", "limit"),
                        (f"/accounts/{address}/history?limit=1&page=2", "limit and before")):
        assert request(port, "GET", path) == (400, {
            "error": f"unknown query parameter 'page': this route takes only {takes}", "type": "BadRequest"}), path
    for path in ("/blocks?from=0&to=0", "/blocks?last=1", "/mempool?limit=1", f"/accounts/{address}/history?limit=1&before=1"):
        assert request(port, "GET", path)[0] == 200, path


# ---- one writer per home -----------------------------------------------------------------------


def test_second_node_on_the_same_home_is_refused(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    first = nodes(setup.home, interval=3600)
    second = nodes(setup.home, ready=False)
    assert second.proc.wait(timeout=30) == 1
    out = second.output().strip().splitlines()
    assert out == [f"error: a node is already running (pid {first.proc.pid}, address 127.0.0.1:{first.port})"]

    # with its record gone, the database lock is the backstop
    record = node_record_path(setup.home)
    saved = record.read_bytes()
    record.unlink()
    third = nodes(setup.home, ready=False)
    assert third.proc.wait(timeout=30) == 1
    lines = third.output().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "in use by another process" in lines[0]
    record.write_bytes(saved)

    # the first node never noticed
    assert request(first.port, "GET", "/status")[0] == 200
    assert first.stop() == 0


def test_port_in_use_is_one_line_error(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        node = nodes(setup.home, port, ready=False)
        assert node.proc.wait(timeout=30) == 1
    lines = node.output().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")
    assert not node_record_path(setup.home).exists()
    Chain.open(setup.home).close()  # the database was released


def test_non_loopback_listen_needs_allow_remote(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    result = posctl(setup.home, "node", "run", "--listen", f"0.0.0.0:{free_port()}")
    assert result.returncode == 2 and "--allow-remote" in result.stderr
    assert not node_record_path(setup.home).exists()


# ---- stale records -----------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_record_is_ignored(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    port = free_port()
    record = NodeRecord(pid=_dead_pid(), address=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}", started="x")
    write_node_record(setup.home, record)
    backend = open_backend(setup.home)
    try:
        assert isinstance(backend, DirectBackend) and backend.status()["height"] == 0
    finally:
        backend.close()
    assert not node_record_path(setup.home).exists()  # dead pid: removed

    # a live pid that does not answer (a reused pid, a hung node) is ignored but left alone
    alive = NodeRecord(pid=os.getpid(), address=f"127.0.0.1:{port}", url=f"http://127.0.0.1:{port}", started="x")
    write_node_record(setup.home, alive)
    assert find_running_node(setup.home) is None
    backend = open_backend(setup.home)
    assert isinstance(backend, DirectBackend)
    backend.close()
    assert read_node_record(setup.home) == alive

    node_record_path(setup.home).write_text("{not json")
    backend = open_backend(setup.home)
    assert isinstance(backend, DirectBackend)
    backend.close()


def test_stale_record_cli_uses_direct_mode(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    port = free_port()
    write_node_record(setup.home, NodeRecord(_dead_pid(), f"127.0.0.1:{port}", f"http://127.0.0.1:{port}", "x"))
    result = posctl(setup.home, "chain", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["height"] == 0
    assert not node_record_path(setup.home).exists()


# ---- shutdown ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero_and_removes_record(tmp_path: Path, nodes, sig: int) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home)
    ids = []
    alice, bob = setup.users[0], setup.users[1]
    for tx in (proposal(node.port, setup.validator, 0, 70),
               signed(alice, 0, "transfer", to=bob.address, amount=3),
               signed(alice, 1, "transfer", to=bob.address, amount=4)):
        status, body = submit(node.port, tx)
        assert status == 200, body
        ids.append(body["tx_id"])
    assert node.stop(sig) == 0
    assert not node_record_path(setup.home).exists()
    assert "node stopped" in node.output() and "Traceback" not in node.output()
    with Chain.open(setup.home) as chain:
        for tx_id in ids:
            assert chain.tx(bytes.fromhex(tx_id)).status in ("pending", "included")
        chain.verify()


def test_node_that_stops_answering_is_a_clear_error(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path)
    node = nodes(setup.home, interval=3600)
    backend = open_backend(setup.home)
    assert isinstance(backend, NodeBackend)
    node.kill()
    with pytest.raises(NodeUnavailable) as info:
        backend.status()
    assert "stopped answering" in str(info.value)
    assert find_running_node(setup.home) is None  # the next command goes direct


# ---- kill -9 with submissions in flight --------------------------------------------------------


def _client(port: int, key: Key, kind: str, stop: threading.Event, acked: list[str], peer: str) -> None:
    try:
        status, account = request(port, "GET", f"/accounts/{key.address}", timeout=5)
        if status != 200:
            return
        nonce = account["next_nonce"]
        while not stop.is_set():
            if kind == "bpm":
                tx = proposal(port, key, nonce, random.randint(40, 200))
            else:
                tx = signed(key, nonce, "transfer", to=peer, amount=random.randint(1, 50))
            status, body = submit(port, tx)
            if status != 200:
                # refused (not acknowledged): resync the nonce and go on
                status, account = request(port, "GET", f"/accounts/{key.address}", timeout=5)
                nonce = account["next_nonce"]
                continue
            acked.append(body["tx_id"])
            nonce += 1
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return  # the node was killed mid-request: that submission was not acknowledged


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path, nodes) -> None:
    setup = make_home(tmp_path, users=4)
    seed = secrets.randbits(32)
    print(f"random seed {seed}")  # printed so a failure can be replayed
    rng = random.Random(seed)
    acked: list[str] = []
    for _round in range(5):
        node = nodes(setup.home, interval=0.2)
        stop = threading.Event()
        threads = [threading.Thread(target=_client, args=(node.port, setup.validator, "bpm", stop, acked, ""))]
        for i, key in enumerate(setup.users):
            peer = setup.users[(i + 1) % len(setup.users)].address
            threads.append(threading.Thread(target=_client, args=(node.port, key, "transfer", stop, acked, peer)))
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.3, 1.5))
        node.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
            assert not thread.is_alive()
        assert find_running_node(setup.home) is None  # the killed node's record is recognised as stale
        with Chain.open(setup.home) as chain:
            for tx_id in acked:
                assert chain.tx(bytes.fromhex(tx_id)).status in ("pending", "included"), tx_id
            chain.verify()
    assert len(acked) > 20
    with Chain.open(setup.home) as chain:
        assert chain.height > 0


# ---- --dev -------------------------------------------------------------------------------------


def test_dev_mode_creates_and_resumes_a_dev_chain(tmp_path: Path, nodes) -> None:
    home = tmp_path / "dev-home"
    plain = nodes(home, ready=False)
    assert plain.proc.wait(timeout=30) == 1  # a plain `node run` needs a chain
    assert "posctl chain init" in plain.output()

    dev = nodes(home, None, 0.2, "--dev", "--validators", "1")
    deadline = time.monotonic() + 20
    while request(dev.port, "GET", "/status")[1]["height"] < 3:
        assert time.monotonic() < deadline, dev.output()
        time.sleep(0.1)
    status = request(dev.port, "GET", "/status")[1]
    assert status["chain_id"] == "posctl-dev" and status["eligible_validators"] == 1
    assert (home / "wallets" / "dev.json").exists()
    validators = request(dev.port, "GET", "/validators")[1]
    dev_address = validators[0]["address"]
    assert validators[0]["bonded"] > 0 and validators[0]["blocks_won"] >= 3
    assert f"wallet 'dev' {dev_address}" in dev.output() and "'posctl-dev'" in dev.output()
    assert dev.stop() == 0
    with Chain.open(home) as chain:
        height = chain.height
        chain.verify()

    again = nodes(home, None, 0.2, "--dev")
    deadline = time.monotonic() + 20
    while request(again.port, "GET", "/status")[1]["height"] < height + 2:
        assert time.monotonic() < deadline, again.output()
        time.sleep(0.1)
    assert "resuming dev chain" in again.output()
    assert again.stop() == 0


def test_dev_mode_refuses_a_non_dev_chain(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    result = posctl(setup.home, "node", "run", "--dev", "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert result.stderr.startswith("error: --dev needs an empty home or a dev chain")
    assert not node_record_path(setup.home).exists()


def test_the_serving_process_freezes_what_it_started_with_and_collects_young_objects_less_often() -> None:
    """``node run`` calls this once the node is up (in its own process: the settings are global)."""
    code = (
        "import gc, json\n"
        "from ledger.node.service import SERVING_GC_THRESHOLDS, tune_garbage_collector\n"
        "before = gc.get_freeze_count()\n"
        "tune_garbage_collector()\n"
        "print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold(), list(SERVING_GC_THRESHOLDS)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before, frozen, threshold, serving = json.loads(done.stdout)
    assert before == 0 and frozen > 10_000  # every module object loaded so far: full collections skip them
    assert threshold == serving and serving[0] > 700  # young collections rarer than Python's default
