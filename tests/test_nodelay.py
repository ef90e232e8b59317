"""The node answers a kept-alive request without waiting on Nagle's algorithm.

uvicorn writes a response in two parts (head, then body). On a socket without ``TCP_NODELAY`` the
body waits for the client's ACK of the head, which Linux delays by about 40 ms, so every
kept-alive request after the first took 40+ ms (the bench measured 22 single-tx POSTs a second
from one client). asyncio sets ``TCP_NODELAY`` on accepted sockets only when their ``proto`` is
``IPPROTO_TCP``, hence the listener names it.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
from pathlib import Path

from ledger.node.http_server import bind_listener
from tests.test_node import NodeProcess, make_home, signed


def test_the_listener_is_tcp_so_accepted_sockets_get_nodelay() -> None:
    sock = bind_listener("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_kept_alive_posts_are_not_held_by_delayed_acks(tmp_path: Path) -> None:
    setup = make_home(tmp_path)
    node = NodeProcess(setup.home, None, 3600.0).wait_ready()
    alice, bob = setup.users[0], setup.users[1]
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # only the node's side is tested
        samples = []
        for nonce in range(21):
            body = signed(alice, nonce, "transfer", to=bob.address, amount=1).encode()
            started = time.perf_counter()
            connection.request("POST", "/txs", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            samples.append(time.perf_counter() - started)
            assert response.status == 200, answer
        # with the stall every sample after the first is >= 40 ms; without it a few ms
        assert statistics.median(samples[1:]) < 0.025, samples
    finally:
        connection.close()
        node.stop()
