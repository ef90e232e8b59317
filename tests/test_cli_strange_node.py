"""A process on the node's port that is not the node we expect: the CLI stays one clear line.

``--node URL`` (or a stale ``node.json``) can point at another posctl version, or at anything
that answers ``GET /node`` like a node and then sends something else. Real ``posctl``
subprocesses talk to a fake node on loopback: replies of another shape, error bodies carrying
line breaks and terminal escape sequences, a broken status line, and a reply announcing
gigabytes. Each must end in one ``error:`` line naming the node, exit 1, no traceback, and the
announced gigabytes must not be read.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from cli.context import one_line
from tests.faultkit import one_error_line, posctl


class FakeNode:
    """Answers ``GET /node`` as a posctl node does, and every other request with ``reply``."""

    def __init__(self, reply: bytes, pid: int = 1, without: tuple[str, ...] = ()) -> None:
        self.reply = reply
        self.pid = pid
        self.without = without
        """Fields its ``GET /node`` answer leaves out."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.sent = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                if request.startswith(b"GET /node "):
                    info = {"pid": self.pid, "address": f"127.0.0.1:{self.port}", "url": self.url,
                            "started": "2026-01-01T00:00:00Z", "chain_id": "posctl-fake"}
                    body = json.dumps({k: v for k, v in info.items() if k not in self.without}).encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    return
                conn.sendall(self.reply)
                self.sent += len(self.reply)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()


def json_reply(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    made = posctl(home, "wallet", "new", "alice", "--words", "12", POSCTL_KDF="light", POSCTL_PASSWORD="pw")
    assert made.returncode == 0, made.stderr
    return home


@pytest.fixture
def fake() -> Iterator[list[FakeNode]]:
    started: list[FakeNode] = []
    yield started
    for node in started:
        node.close()


COMMANDS = [("chain", "status"), ("node", "status"), ("chain", "show", "--last", "2"), ("chain", "validators"),
            ("wallet", "send", "alice", "alice", "1", "-y")]


@pytest.mark.parametrize("body", [b"[1,2,3]", b'{"height":"x","tip":5,"chain_id":null}'], ids=["list", "fields"])
def test_a_reply_of_another_shape_is_one_line_naming_the_node(home: Path, fake, body: bytes) -> None:
    node = FakeNode(json_reply(body))
    fake.append(node)
    for command in COMMANDS:
        result = posctl(home, "--node", node.url, *command, POSCTL_KDF="light", POSCTL_PASSWORD="pw")
        assert result.returncode == 1, (command, result.stderr)
        line = one_error_line(result)
        assert line.startswith(f"error: the node at {node.url} sent a reply this posctl cannot read ("), line
        assert line.endswith("): is it a posctl node of the same version?"), line


def test_a_node_describing_itself_without_its_url_is_no_node(home: Path, fake) -> None:
    """`node status` ended in a `KeyError: 'url'` traceback on such a `GET /node` answer."""
    node = FakeNode(json_reply(b"{}"), without=("url",))
    fake.append(node)
    for command in (("node", "status"), ("node", "stop")):
        line = one_error_line(posctl(home, "--node", node.url, *command))
        assert line == f"error: no node is running at {node.url} (from --node or POSCTL_NODE)", line


def test_an_error_body_cannot_break_the_line_or_drive_the_terminal(home: Path, fake) -> None:
    body = json.dumps({"error": "boom\nsecond line\x1b[2J\x1b[31mred", "type": "NodeError"}).encode()
    node = FakeNode(json_reply(body, "500 Internal Server Error"))
    fake.append(node)
    result = posctl(home, "--node", node.url, "chain", "status")
    assert result.returncode == 1
    assert one_error_line(result) == "error: boom second line\\x1b[2J\\x1b[31mred"
    assert "\x1b" not in result.stderr


def test_a_broken_status_line_is_one_line(home: Path, fake) -> None:
    node = FakeNode(b"HTTP/1.1 abc\r\n\r\n")
    fake.append(node)
    result = posctl(home, "--node", node.url, "chain", "status")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"error: the node at {node.url} stopped answering (HTTP/1.1 abc): if it was stopped, run the command "
        "again and it will use the database directly")


def test_a_reply_announcing_gigabytes_is_refused_unread(home: Path, fake) -> None:
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2000000000\r\n\r\n"
            + b" " * 1_000_000)  # the start of the promised body: the client must stop here
    node = FakeNode(head)
    fake.append(node)
    started = time.monotonic()
    result = posctl(home, "--node", node.url, "chain", "status")
    assert result.returncode == 1
    assert one_error_line(result) == (
        f"error: the node at {node.url} announced a reply of 2000000000 bytes, above the 268435456 this client "
        "reads: ask for fewer blocks")
    assert time.monotonic() - started < 30


def test_one_line_keeps_text_and_escapes_controls() -> None:
    assert one_line("plain é text (ok)") == "plain é text (ok)"
    assert one_line("a\r\nb\tc") == "a  b c"
    assert one_line("x\x1b[31my\x00z\u200bw\u2028v") == "x\\x1b[31my\\x00z\\u200bw\\u2028v"
    assert one_line("trailing newline\n") == "trailing newline"
