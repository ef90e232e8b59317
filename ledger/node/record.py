"""The node record: how commands find the node that holds a home's database.

A running node writes ``$home/node.json`` (pid, address, start time; 0600, written atomically)
and removes it when it stops. A record left by a killed node names a dead pid, or a process
that does not answer as that node, and is then ignored: the database is free again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.chain.facade import CHAIN_DIRNAME, Chain
from ledger.storage.files import fsync_directory
from ledger.storage.store import database_lock_holders
from ledger.errors import (
    DatabaseLocked,
    NodeRunning,
)

NODE_RECORD_NAME = "node.json"
"""The file in a posctl home that names the running node."""

PROBE_TIMEOUT = 2.0
"""Seconds a command waits for a recorded node to answer before ignoring the record."""

PROBE_MAX_BYTES = 64 * 1024
"""The most a probe reads of a node's answer."""


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
    except (ValueError, RecursionError):
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
    with contextlib.suppress(OSError):
        fsync_directory(path.parent)


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


def query_node(url: str, timeout: float = PROBE_TIMEOUT) -> dict[str, Any] | None:
    """What the node at ``url`` says about itself (``GET /node``), or ``None`` if nothing there
    answers as a posctl node."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    try:
        port = parts.port or 80
    except ValueError:
        return None
    connection = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
    try:
        connection.request("GET", "/node", headers={"Accept": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            return None
        info = json.loads(response.read(PROBE_MAX_BYTES))
    except (OSError, http.client.HTTPException, ValueError, RecursionError):
        return None
    finally:
        connection.close()
    # what `node status` and `node stop` read of it: a reply without them ended `node status` in a KeyError
    return info if isinstance(info, dict) and type(info.get("pid")) is int and isinstance(info.get("url"), str) else None


def probe_node(record: NodeRecord, timeout: float = PROBE_TIMEOUT) -> bool:
    """True if the node at ``record.url`` answers ``GET /node`` and is the recorded process."""
    info = query_node(record.url, timeout)
    return info is not None and info.get("pid") == record.pid


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


def find_unanswering_node(home: Path) -> NodeRecord | None:
    """The recorded node when it is alive and holds the chain but did not answer a probe (stopped
    with SIGSTOP, or busy for seconds): ``node status`` said no node was running, ``node stop``
    could not stop it, while every other command found the chain in use. A record naming a
    reused pid is not one: that process does not hold the chain's lock."""
    record = read_node_record(home)
    if record is None or not is_process_alive(record.pid):
        return None
    return record if record.pid in database_lock_holders(home / CHAIN_DIRNAME) else None


def check_no_running_node(home: Path) -> None:
    """Raise :class:`NodeRunning` if a live node already serves ``home``."""
    record = find_running_node(home)
    if record is not None:
        raise NodeRunning(f"a node is already running (pid {record.pid}, address {record.address})")


def open_node_chain(home: Path) -> Chain:
    """Open the chain for a new node; a second node on the same home gets a clear refusal."""
    check_no_running_node(home)
    try:
        chain = Chain.open(home)
    except DatabaseLocked:
        record = read_node_record(home)
        if record is not None and is_process_alive(record.pid):
            raise NodeRunning(f"a node is already running (pid {record.pid}, address {record.address})") from None
        raise
    try:
        chain.check_recent_blocks()  # Bitcoin Core's -checkblocks: find damage before forging on it
    except BaseException:
        chain.close()
        raise
    return chain
