"""The node API described as an OpenAPI 3.1 document, served at ``GET /openapi.json``.

Written out by hand from the routes in :mod:`ledger.node.api` (a test checks that both list the
same routes, and fuzzes the running node from this document). Every route lists the errors it can
answer; every error has the one JSON body ``{"error": message, "type": ErrorClassName}``.
"""

from __future__ import annotations

import functools
from typing import Any

HEX64 = "^[0-9a-fA-F]{64}$"
BLOCK_REF = "^(?:[0-9]{1,19}|[0-9a-fA-F]{8,64})$"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error", "type"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong and what to do"},
        "type": {"type": "string", "description": "the error's class, e.g. NonceMismatch"},
    },
}

_ERROR_TEXT = {
    400: "malformed request: bad path parameter, query, body or HTTP framing",
    401: "this route needs the node's cookie ($POSCTL_HOME/.cookie) as HTTP Basic credentials",
    403: "the Host or Origin header does not name this machine",
    404: "no such route, block, tx or account",
    405: "the route exists with another method",
    408: "the request did not arrive completely in time",
    413: "the body is above the limit",
    422: "well-formed, but refused by a ledger rule",
    431: "the request line and headers are too large",
    500: "a bug in the node",
    503: "the node cannot serve this now (mempool full, shutting down, storage failure)",
    507: "the backup could not be written where asked (its disk full, read-only, no permission); the node goes on",
}

_COMMON = (400, 403, 404, 405, 408, 431, 503)


def _errors(*extra: int) -> dict[str, Any]:
    return {
        str(code): {"description": _ERROR_TEXT[code],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for code in sorted(set(_COMMON + extra))
    }


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, "content": {"application/json": {"schema": schema}}}}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query_param(name: str, description: str, maximum: int | None = None, minimum: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


OBJECT = {"type": "object"}
BLOCK = {"$ref": "#/components/schemas/Block"}
TX = {"$ref": "#/components/schemas/Transaction"}


def _operation(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **more}


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The whole document (built once; callers must not modify it)."""
    paths: dict[str, Any] = {
        "/": {"get": _operation(
            "the list of routes as JSON; a browser (an Accept header naming text/html) gets the explorer's page",
            {"200": {"description": "the routes, or the explorer's HTML page",
                     "content": {"application/json": {"schema": OBJECT}, "text/html": {"schema": {"type": "string"}}}},
             **_errors()},
        )},
        "/explorer/{name}": {"get": _operation(
            "a file of the block explorer (its scripts, style sheet and icon)",
            {"200": {"description": "the file",
                     "content": {media: {"schema": {"type": "string"}}
                                 for media in ("text/html", "text/javascript", "text/css", "image/svg+xml")}},
             **_errors()},
            parameters=[_path_param("name", "a file name, e.g. app.js")],
        )},
        "/openapi.json": {"get": _operation("this document", {**_ok("OpenAPI 3.1", OBJECT), **_errors()})},
        "/status": {"get": _operation("chain status (as `posctl chain status --json`)",
                                      {**_ok("status", {"$ref": "#/components/schemas/Status"}), **_errors()})},
        "/node": {"get": _operation("this node: pid, address, url, start time, chain id, interval",
                                    {**_ok("node", OBJECT), **_errors()})},
        "/blocks": {"get": _operation(
            "a range of blocks: ?from=A&to=B ascending (at most 100) or ?last=N newest first",
            {**_ok("blocks", {"type": "array", "items": BLOCK}), **_errors()},
            parameters=[_query_param("from", "first height"), _query_param("to", "last height (default from+99)"),
                        _query_param("last", "the newest N blocks")],
        )},
        "/blocks/latest": {"get": _operation("the tip block", {**_ok("block", BLOCK), **_errors()})},
        "/blocks/hash/{hash}": {"get": _operation(
            "a block by hash", {**_ok("block", BLOCK), **_errors()},
            parameters=[_path_param("hash", "64 hex digits", {"type": "string", "pattern": HEX64})],
        )},
        "/blocks/{ref}": {"get": _operation(
            "a block by height, by 64-hex-digit hash, or by a unique hash prefix of 8+ hex digits",
            {**_ok("block", BLOCK), **_errors()},
            parameters=[_path_param("ref", "a height (up to 19 digits), a block hash, or a unique prefix of one; "
                                           "anything else is malformed (400), a well-formed one naming no block 404",
                                    {"type": "string", "pattern": BLOCK_REF})],
        )},
        "/txs/{tx_id}": {"get": _operation(
            "where a tx is: pending, included (height, index) or evicted (reason)",
            {**_ok("location", {"type": "object", "required": ["status", "tx"],
                                "properties": {"status": {"enum": ["pending", "included", "evicted"]}, "tx": TX}}),
             **_errors()},
            parameters=[_path_param("tx_id", "64 hex digits", {"type": "string", "pattern": HEX64})],
        )},
        "/txs": {"post": _operation(
            "submit one signed tx (its canonical JSON), or a JSON array of up to 1000; acknowledged once durable",
            {**_ok("the tx accepted; for an array, one answer per tx in order, each with its own status and "
                   "tx_id (an accepted tx is not echoed back: the sender has it)", {
                "oneOf": [
                    {"$ref": "#/components/schemas/Accepted"},
                    {"type": "array", "items": {"type": "object", "required": ["status"],
                                                "properties": {"status": {"type": "integer"}, "tx_id": {"type": "string"},
                                                               "error": {"type": "string"},
                                                               "type": {"type": "string"}}}},
                ]}), **_errors(413, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "oneOf": [TX, {"type": "array", "items": TX, "minItems": 1, "maxItems": 1000}]}}}},
        )},
        "/evidence": {"post": _operation(
            "evidence of equivocation: two signed proposals of one validator for one height",
            {**_ok("evidence accepted", {"type": "object", "required": ["evidence_id", "evidence"]}),
             **_errors(413, 422)},
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["first", "second"],
                "properties": {"first": TX, "second": TX}}}}},
        )},
        "/accounts/{address}": {"get": _operation(
            "an account: balance, nonce, bond, unbonding, pending count",
            {**_ok("account", OBJECT), **_errors()},
            parameters=[_path_param("address", "a pos1… bech32 address")],
        )},
        "/accounts/{address}/history": {"get": _operation(
            "the txs an address sent or received, newest first: its pending txs first, then the "
            "included ones (and its genesis funding at height 0)",
            {**_ok("history", {"type": "array", "items": {"$ref": "#/components/schemas/HistoryEntry"}}),
             **_errors()},
            parameters=[_path_param("address", "a pos1… bech32 address"),
                        _query_param("limit", "how many lines (default 20)", maximum=100, minimum=1),
                        {"name": "before", "in": "query", "required": False,
                         "description": "the next page: only included txs before HEIGHT (or HEIGHT:INDEX), "
                                        "the height and index of the previous page's last line",
                         "schema": {"type": "string", "pattern": "^[0-9]{1,19}(:[0-9]{1,10})?$"}}],
        )},
        "/mempool": {"get": _operation(
            "pending txs in arrival order, with the pool's count and size in bytes",
            {**_ok("mempool", {"type": "object", "required": ["count", "bytes", "txs"], "properties": {
                "count": {"type": "integer"}, "bytes": {"type": "integer"},
                "txs": {"type": "array", "items": {"type": "object",
                                                   "required": ["id", "kind", "sender", "nonce", "size"]}}}}),
             **_errors()},
            parameters=[_query_param("limit", "how many txs to list (default 100)", maximum=1000, minimum=1)],
        )},
        "/validators": {"get": _operation("every validator: bonded, or with a validator history (jailed, tombstoned, slashed)",
                                          {**_ok("validators", {"type": "array", "items": OBJECT}), **_errors()})},
        "/forge": {"post": _operation(
            "forge the next block now (privileged: needs the cookie)",
            {**_ok("the block with forged=true, or forged=false and the reason", {
                "type": "object", "required": ["forged", "evicted"]}), **_errors(401, 413)},
            security=[{"cookie": []}],
        )},
        "/backup": {"post": _operation(
            "copy a consistent snapshot of the chain into a new directory (privileged: needs the cookie)",
            {**_ok("what was copied: the new home, height and files", OBJECT), **_errors(401, 413, 507)},
            requestBody={"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["dir"],
                "properties": {"dir": {"type": "string", "description": "absolute path of a new directory"}}}}}},
            security=[{"cookie": []}],
        )},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "posctl node API", "version": "2",
                 "description": "A single posctl node's local JSON API. Loopback only unless the node was "
                                "started with --allow-remote. Errors are always JSON."},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": ERROR_SCHEMA,
                "Transaction": {"type": "object", "description": "a signed tx in canonical JSON (sorted keys, "
                                "no whitespace); see ledger/consensus/transactions.py",
                                "required": ["chain_id", "kind", "nonce", "public_key", "signature"]},
                "Accepted": {"type": "object", "required": ["tx_id", "tx"],
                             "properties": {"tx_id": {"type": "string", "pattern": HEX64}, "tx": TX}},
                "Block": {"type": "object", "required": ["height", "hash", "prev_hash", "txs"]},
                "Status": {"type": "object", "required": ["chain_id", "height", "tip", "mempool"]},
                "HistoryEntry": {"type": "object", "required": [
                    "tx_id", "height", "index", "kind", "direction", "counterparty", "amount", "status"],
                    "properties": {
                        "tx_id": {"type": ["string", "null"], "description": "null for the genesis entry"},
                        "height": {"type": ["integer", "null"], "description": "null while pending"},
                        "index": {"type": ["integer", "null"], "description": "position in the block"},
                        "kind": {"type": "string", "description": "a tx kind, or genesis"},
                        "direction": {"enum": ["sent", "received"]},
                        "counterparty": {"type": ["string", "null"], "description": "the other side of a transfer"},
                        "amount": {"type": ["integer", "null"]},
                        "status": {"enum": ["pending", "included"]}}},
            },
            "securitySchemes": {"cookie": {"type": "http", "scheme": "basic",
                                           "description": "user and password: the contents of $POSCTL_HOME/.cookie"}},
        },
    }
