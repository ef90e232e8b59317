"""The node's HTTP server in process: what the application sees of a request."""

from __future__ import annotations

import http.client
import json

from ledger.node.http_server import HttpLimits, HttpServer, bind_listener


def test_forwarding_headers_do_not_change_who_the_app_sees() -> None:
    """uvicorn by default believes X-Forwarded-For/-Proto from 127.0.0.1; the node is nobody's
    backend, so a local client must not be able to pose as another address or as HTTPS."""
    async def echo(scope, receive, send):  # type: ignore[no-untyped-def]
        body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    server = HttpServer(echo, bind_listener("127.0.0.1", 0), HttpLimits(), lambda line: None)
    server.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
        seen = json.loads(connection.getresponse().read())
        connection.close()
    finally:
        server.stop()
    assert seen == {"client": "127.0.0.1", "scheme": "http"}
