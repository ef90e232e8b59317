"""A full disk, for real: the home on a 4 MiB tmpfs, filled by a file, a node and the CLI writing.

What a user relies on: every tx the node acknowledged (HTTP 200) is still pending or included
after space returns and the node restarts, and the chain verifies; the node stops on the
first failed write (503 to writes, one log line naming the cause, exit non-zero); a direct
command says "disk full" in one line.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from ledger.chain.facade import Chain
from ledger.errors import DiskFull
from tests.faultkit import Node, fill_disk, needs_root, one_error_line, posctl, request, tmpfs
from tests.ledgerkit import make_chain, make_key, make_tx, propose

A, B, V = make_key("a"), make_key("b"), make_key("v")

pytestmark = needs_root


@pytest.fixture(autouse=True)
def no_floor(monkeypatch):
    """A 4 MiB disk is below the default 50 MB floor: these tests reach the real ENOSPC."""
    monkeypatch.setenv("POSCTL_MIN_FREE_MB", "0")


def small_chain(home: Path) -> None:
    with make_chain(home, {A.address: 10**9, B.address: 10**9}, {V.address: 500}) as chain:
        chain.submit(propose(chain, V, 70))
        chain.forge()


def status_of(home: Path, tx_id: str) -> str:
    result = posctl(home, "chain", "tx", tx_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["status"]


def check_nothing_lost(home: Path, acknowledged: list[str]) -> None:
    verify = posctl(home, "chain", "verify")
    assert verify.returncode == 0, verify.stderr
    with Chain.open(home) as chain:
        for tx_id in acknowledged:
            assert chain.tx(bytes.fromhex(tx_id)).status in ("pending", "included"), tx_id


def submit_until_refused(node: Node, start_nonce: int, limit: int = 5000) -> tuple[list[str], int, dict]:
    """Submit transfers until one is refused; returns the acknowledged ids, the refusal status
    and body (connection errors count as refusals: the node may already be gone)."""
    acknowledged: list[str] = []
    for nonce in range(start_nonce, start_nonce + limit):
        try:
            status, body = node.submit(make_tx(A, nonce, "transfer", to=B.address, amount=1))
        except (OSError, http.client.HTTPException) as exc:  # the node has stopped
            return acknowledged, 0, {"error": str(exc)}
        if status != 200:
            return acknowledged, status, body
        acknowledged.append(body["tx_id"])
    raise AssertionError("the disk never filled")


def test_disk_full_during_submissions_stops_the_node_and_loses_nothing_acknowledged(tmp_path):
    with tmpfs(tmp_path / "mnt") as mnt:
        home = mnt / "home"
        small_chain(home)
        node = Node(home, tmp_path, POSCTL_MIN_FREE_MB="0")
        try:
            ids = []
            for nonce in range(20):  # some acknowledged before the disk fills
                status, body = node.submit(make_tx(A, nonce, "transfer", to=B.address, amount=1))
                assert status == 200, body
                ids.append(body["tx_id"])
            filler = fill_disk(mnt)
            more, status, body = submit_until_refused(node, 20)
            ids += more
            assert status in (503, 0), body
            if status == 503:
                assert body["type"] in ("DiskFull", "WriteFailed", "NodeUnavailable"), body
            # never a write after the failed one: nothing more is acknowledged, even with space back
            filler.unlink()
            for nonce in range(20 + len(more), 20 + len(more) + 5):
                try:
                    status, body = node.submit(make_tx(A, nonce, "transfer", to=B.address, amount=1))
                except (OSError, http.client.HTTPException):
                    break
                assert status == 503, body
            code = node.wait()
        finally:
            node.kill()
        output = node.output()
        assert code == 1, output
        failure_lines = [line for line in output.splitlines() if "storage failure" in line]
        assert len(failure_lines) >= 1 and "full" in failure_lines[0], output
        assert "Traceback" not in output, output
        assert "free some space" in output
        check_nothing_lost(home, ids)
        restarted = Node(home, tmp_path)
        try:
            status, body = request(restarted.port, "GET", "/status")
            assert status == 200 and body["mempool"] == len(ids)
        finally:
            restarted.stop()


def test_disk_full_while_forging_is_refused_in_one_line_and_nothing_is_lost(tmp_path):
    with tmpfs(tmp_path / "mnt") as mnt:
        home = mnt / "home"
        small_chain(home)
        with Chain.open(home) as chain:
            acknowledged = [chain.submit(propose(chain, V, 71)).hex()]
            for nonce in range(120):
                acknowledged.append(chain.submit(make_tx(A, nonce, "transfer", to=B.address, amount=1)).hex())
        filler = fill_disk(mnt)
        result = posctl(home, "chain", "forge", POSCTL_MIN_FREE_MB="0")
        assert result.returncode == 1, result.stdout
        line = one_error_line(result)
        assert "full" in line and "nothing acknowledged is lost" in line
        filler.unlink()
        check_nothing_lost(home, acknowledged)
        forged = posctl(home, "chain", "forge", "--json")
        assert forged.returncode == 0, forged.stderr
        assert json.loads(forged.stdout)["forged"] is True
        check_nothing_lost(home, acknowledged)


def test_the_free_space_floor_refuses_writes_before_the_disk_is_full(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "mnt") as mnt:
        home = mnt / "home"
        small_chain(home)
        fill_disk(mnt, leave=2 * 1024 * 1024)
        node = Node(home, tmp_path, POSCTL_MIN_FREE_MB="3")
        try:
            status, body = node.submit(make_tx(A, 0, "transfer", to=B.address, amount=1))
            assert status == 503 and body["type"] == "DiskFull", body
            assert "below the 3 MB floor" in body["error"]
            code = node.wait()
        finally:
            node.kill()
        assert code == 1
        monkeypatch.setenv("POSCTL_MIN_FREE_MB", "3")
        with Chain.open(home) as chain:
            with pytest.raises(DiskFull, match="floor"):
                chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=1))
            monkeypatch.setenv("POSCTL_MIN_FREE_MB", "0")  # space back, but this store stays stopped
            with pytest.raises(DiskFull, match="floor"):
                chain.submit(make_tx(A, 0, "transfer", to=B.address, amount=1))
        bad = posctl(home, "chain", "forge", POSCTL_MIN_FREE_MB="lots")
        assert "POSCTL_MIN_FREE_MB" in one_error_line(bad)
        check_nothing_lost(home, [])
