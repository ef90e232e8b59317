"""``posctl chain export``, ``import`` and ``backup``, through the real CLI in subprocesses.

A chain moved by export and import (or copied by backup, directly or through a running node)
must arrive with the same tip and state root and pass ``chain verify``; a file that is cut,
edited or aimed at a home that already holds a chain is refused with one line, leaving the
target home without a chain and without scratch files.
"""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ledger.chain.archive import IMPORT_SCRATCH, backup_chain, export_chain
from ledger.chain.facade import CHAIN_DIRNAME, Chain
from ledger.errors import LedgerError
from ledger.storage import schema
from ledger.storage.store import KeyValueStore, LevelDBStore
from tests.faultkit import ROOT, Node, env, fill_disk, needs_root, no_traceback, one_error_line, posctl, request, tmpfs
from tests.ledgerkit import make_chain, make_key, make_tx, propose
from tests.test_node import cookie_header

A, B, V = make_key("a"), make_key("b"), make_key("v")
HEIGHT = 8
TXS_PER_BLOCK = 3


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A home whose chain has HEIGHT blocks, each with a proposal and a few transfers."""
    home = tmp_path_factory.mktemp("source") / "home"
    with make_chain(home, {A.address: 10**6, B.address: 10**6}, {V.address: 500}) as chain:
        for height in range(1, HEIGHT + 1):
            chain.submit(propose(chain, V, 60 + height))
            for nonce in range((height - 1) * TXS_PER_BLOCK, height * TXS_PER_BLOCK):
                chain.submit(make_tx(A, nonce, "transfer", to=B.address, amount=nonce + 1))
            assert chain.forge().block is not None
    return home


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "chain.export"
    result = posctl(source, "chain", "export", str(path))
    assert result.returncode == 0, result.stderr
    return path


def status(home: Path) -> dict[str, Any]:
    result = posctl(home, "chain", "status", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_no_chain_left(home: Path) -> None:
    """Nothing partial: no chain directory with content, no import scratch, and posctl says so."""
    chain_dir = home / CHAIN_DIRNAME
    assert not chain_dir.exists() or not any(chain_dir.iterdir()), sorted(p.name for p in chain_dir.iterdir())
    assert not (home / IMPORT_SCRATCH).exists()
    result = posctl(home, "chain", "status")
    assert result.returncode == 1 and "no chain" in one_error_line(result)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def refused_import(tmp_path: Path, data: bytes) -> str:
    """The one error line of importing ``data`` into a new home, checked to be left without a chain."""
    edited = tmp_path / "edited.export"
    edited.write_bytes(data)
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(edited))
    assert result.returncode == 1
    line = one_error_line(result)
    assert_no_chain_left(target)
    return line


# ---- export and import ------------------------------------------------------------------------


def test_export_then_import_gives_the_same_chain(source, exported, tmp_path):
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(exported), "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no progress bar
    view = json.loads(result.stdout)
    assert view["height"] == HEIGHT and view["blocks"] == HEIGHT + 1
    assert view["txs"] == HEIGHT * (TXS_PER_BLOCK + 1)

    before, after = status(source), status(target)
    assert after["tip"] == before["tip"]
    assert after["state_root"] == before["state_root"]
    assert after["height"] == HEIGHT
    verify = posctl(target, "chain", "verify")
    assert verify.returncode == 0, verify.stderr
    assert not (target / IMPORT_SCRATCH).exists()

    again = tmp_path / "again.export"  # the imported chain exports to the very same bytes
    assert posctl(target, "chain", "export", str(again)).returncode == 0
    assert again.read_bytes() == exported.read_bytes()


def test_export_writes_into_a_pipe_through_a_link_or_to_stdout_without_replacing_them(source, exported, tmp_path):
    """A target that is not a regular file is written into, never renamed over: as root,
    `chain export /dev/full` once replaced the device node with a regular file. A symlink stays a
    link (its target gets the export), and `/dev/stdout` is the same as `-`."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = posctl(source, "chain", "export", str(fifo))
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert received == [exported.read_bytes()]
    assert fifo.is_fifo()

    real = tmp_path / "real.export"
    real.write_bytes(lines_of(exported)[0])  # an earlier export (cut short): replaceable
    link = tmp_path / "link.export"
    link.symlink_to(real)
    assert posctl(source, "chain", "export", str(link)).returncode == 0
    assert link.is_symlink() and real.read_bytes() == exported.read_bytes()
    assert not list(tmp_path.glob("*.partial"))

    to_stdout = posctl(source, "chain", "export", "/dev/stdout")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert to_stdout.stdout.encode() == exported.read_bytes()  # the export alone, no summary line after it

    missing = posctl(source, "chain", "export", str(tmp_path / "no" / "such.export"))
    assert missing.returncode == 1
    assert one_error_line(missing) == (
        f"error: cannot write the export to {tmp_path / 'no' / 'such.export'}: No such file or directory")


def test_export_replaces_only_an_empty_file_or_an_earlier_export(source, exported, tmp_path):
    """Given the path of a wallet file or of a file of the chain's own database, `chain export`
    replaced it and said "exported": the wallet was gone and the chain no longer opened (its
    `CURRENT` held the export). Any other existing file is now refused and left as it was."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    wallet = home / "wallets" / "alice.json"
    wallet.parent.mkdir()
    wallet.write_text('{"version": 1, "name": "alice"}\n')
    for victim in (home / "chain" / "CURRENT", wallet):
        before = victim.read_bytes()
        result = posctl(home, "chain", "export", str(victim))
        assert one_error_line(result) == (
            f"error: {victim} exists and is not a posctl chain export: choose another file (an export replaces only "
            "an empty file or an earlier export); nothing was written")
        assert victim.read_bytes() == before
    assert status(home)["height"] == HEIGHT
    for replaceable in (tmp_path / "empty.export", tmp_path / "earlier.export"):
        replaceable.write_bytes(b"" if replaceable.name == "empty.export" else exported.read_bytes()[:100])
        assert posctl(home, "chain", "export", str(replaceable)).returncode == 0
        assert replaceable.read_bytes() == exported.read_bytes()


def test_export_file_layout(exported):
    lines = lines_of(exported)
    assert len(lines) == 1 + 1 + (HEIGHT + 1) + 1  # header, genesis, blocks 0..HEIGHT, end line
    header = json.loads(lines[0])
    assert header["format"] == "posctl-chain-export" and header["height"] == HEIGHT
    end = json.loads(lines[-1])
    assert end["blocks"] == HEIGHT + 1
    assert all(line.endswith(b"\n") for line in lines)


def test_import_refuses_a_home_with_a_chain(source, exported):
    before = status(source)
    result = posctl(source, "chain", "import", str(exported))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "not empty" in line and "new --home" in line
    assert status(source) == before
    assert not (source / IMPORT_SCRATCH).exists()


@pytest.mark.parametrize("cut", ["end line", "last block", "mid-line", "header only"])
def test_import_refuses_a_truncated_file(exported, tmp_path, cut):
    lines = lines_of(exported)
    if cut == "end line":
        data = b"".join(lines[:-1])
    elif cut == "last block":
        data = b"".join(lines[:-2])
    elif cut == "mid-line":
        data = b"".join(lines[:6]) + lines[6][: len(lines[6]) // 2]
    else:
        data = lines[0]
    broken = tmp_path / "cut.export"
    broken.write_bytes(data)
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(broken))
    assert result.returncode == 1
    assert "truncated" in one_error_line(result)
    assert_no_chain_left(target)


def test_import_of_a_file_cut_after_its_genesis_line_says_where_it_ends(exported, tmp_path):
    """It said the file "ends after block -1 of 8"."""
    lines = lines_of(exported)
    broken = tmp_path / "cut.export"
    broken.write_bytes(lines[0] + lines[1])
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(broken))
    assert result.returncode == 1
    assert one_error_line(result) == (f"error: the export file ends after the genesis line, before block 0 of {HEIGHT}: "
                                      "it is truncated; export it again")
    assert_no_chain_left(target)


def _edit_genesis_line(line: bytes, how: str) -> bytes:
    config = json.loads(line)
    if how == "an amount changed":
        address = next(iter(config["allocations"]))
        config["allocations"][address] += 1
    elif how == "a wallet name":
        config["allocations"]["alice"] = 5
    elif how == "not JSON":
        return line[: len(line) // 2] + b"\n"
    elif how == "cut":
        return line[: len(line) // 2]
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode() + b"\n"


@pytest.mark.parametrize("how, message", [
    ("an amount changed", "block 0 does not match the genesis configuration on line 2"),
    ("a wallet name", "line 2 (genesis) is not a valid genesis configuration: 'alice' is not an address"),
    ("not JSON", "line 2 (genesis) is not a valid genesis configuration: the genesis line is not valid JSON"),
    ("cut", "ends at line 2, in or before the genesis: it is truncated"),
])
def test_import_refuses_a_genesis_line_it_cannot_trust(exported, tmp_path, how, message):
    """The genesis line is streamed into the scratch chain like a genesis file: what is wrong with
    it is named, and nothing is left behind."""
    lines = lines_of(exported)
    edited = _edit_genesis_line(lines[1], how)
    broken = tmp_path / "genesis.export"
    broken.write_bytes(lines[0] + edited + (b"".join(lines[2:]) if how != "cut" else b""))
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(broken))
    assert result.returncode == 1
    assert message in one_error_line(result)
    assert_no_chain_left(target)


def test_import_refuses_a_tampered_block_and_names_its_height(exported, tmp_path):
    lines = lines_of(exported)
    tampered_height = 5
    index = 2 + tampered_height  # header, genesis, then block 0 at index 2
    original = lines[index]
    assert json.loads(original)["header"]["height"] == tampered_height
    text = original.decode()
    needle = f'"amount":{(tampered_height - 1) * TXS_PER_BLOCK + 1},'
    assert needle in text, text[:400]
    lines[index] = text.replace(needle, f'"amount":{(tampered_height - 1) * TXS_PER_BLOCK + 2},', 1).encode()
    broken = tmp_path / "tampered.export"
    broken.write_bytes(b"".join(lines))

    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(broken))
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"block {tampered_height}" in line, line
    assert_no_chain_left(target)


def test_import_refuses_an_end_line_that_does_not_match(exported, tmp_path):
    lines = lines_of(exported)
    end = json.loads(lines[-1])
    end["tip"] = "00" * 32
    lines[-1] = (json.dumps(end, separators=(",", ":"), sort_keys=True) + "\n").encode()
    broken = tmp_path / "end.export"
    broken.write_bytes(b"".join(lines))
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(broken))
    assert result.returncode == 1
    assert "end line" in one_error_line(result)
    assert_no_chain_left(target)


@pytest.mark.parametrize("after", ["another export", "a line", "a blank line"])
def test_import_refuses_data_after_the_end_line(exported, tmp_path, after):
    """Anything after the end line was ignored: `cat a.export b.export > both.export` imported `a`
    alone and said nothing of `b`. A file is one export, ending at its end line, or refused."""
    lines = lines_of(exported)
    extra = {"another export": exported.read_bytes(), "a line": b'{"x":1}\n', "a blank line": b"\n"}[after]
    assert refused_import(tmp_path, b"".join(lines) + extra) == (
        f"error: data after the end line (line {len(lines) + 1}): the file is not one export as `posctl chain export` "
        "wrote it (exports joined, or lines added); import each export into its own --home")


def test_import_of_a_header_announcing_more_blocks_says_the_file_ends_before_them(exported, tmp_path):
    """It said "block 9 (line 12) is malformed: block is missing field 'evidence'" of the end line."""
    lines = lines_of(exported)
    header = json.loads(lines[0])
    header["height"] = HEIGHT + 2
    lines[0] = (json.dumps(header, separators=(",", ":"), sort_keys=True) + "\n").encode()
    assert refused_import(tmp_path, b"".join(lines)) == (
        f"error: the export file ends (its end line is line {HEIGHT + 4}) before block {HEIGHT + 1} of the "
        f"{HEIGHT + 3} blocks (heights 0..{HEIGHT + 2}) its header announces: the file was edited or cut; "
        "export it again")


@pytest.mark.parametrize("edit, line, found, expected", [
    ("block 1 deleted", 4, 2, 1),
    ("block 0 deleted", 3, 1, 0),
    ("blocks 3 and 4 swapped", 6, 4, 3),
])
def test_import_of_a_block_missing_or_out_of_order_names_the_line(exported, tmp_path, edit, line, found, expected):
    """With block 1's line deleted it said "block 1 does not verify: block 2 is out of order"."""
    lines = lines_of(exported)
    if edit == "block 1 deleted":
        del lines[3]
    elif edit == "block 0 deleted":
        del lines[2]
    else:
        lines[5], lines[6] = lines[6], lines[5]
    assert refused_import(tmp_path, b"".join(lines)) == (
        f"error: line {line} holds block {found} where block {expected} was expected: a block is missing or out "
        "of order (the file was edited); export it again")


@pytest.mark.parametrize("refused", ["cut", "not an export", "not an export, from stdin"])
def test_a_refused_import_leaves_no_home_it_created(exported, tmp_path, refused):
    """A refused import left the home it was given (and its missing parents) behind, empty, 0700.
    A refused command changes nothing: the directories it made go again; one that was there
    before stays, with its mode."""
    source = tmp_path / "input.export"
    source.write_bytes(b"".join(lines_of(exported)[:-1]) if refused == "cut" else b'{"hello":"world"}\n')
    made = tmp_path / "made" / "for" / "it"
    if refused.endswith("stdin"):
        with open(source, "rb") as stdin:
            result = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(made), "chain", "import", "-"],
                                    cwd=ROOT, env=env(), stdin=stdin, capture_output=True, text=True, timeout=60)
    else:
        result = posctl(made, "chain", "import", str(source))
    assert result.returncode == 1 and one_error_line(result)
    assert not (tmp_path / "made").exists()

    existing = tmp_path / "existing"
    existing.mkdir(mode=0o750)
    existing.chmod(0o750)
    result = posctl(existing / "home", "chain", "import", str(source))
    assert result.returncode == 1 and one_error_line(result)
    assert sorted(existing.iterdir()) == [] and (existing.stat().st_mode & 0o777) == 0o750


def test_import_into_a_home_whose_chain_is_a_file_says_so_as_chain_status_does(exported, tmp_path):
    """It printed a bare "error: Not a directory: HOME/chain"."""
    home = tmp_path / "home"
    home.mkdir()
    (home / CHAIN_DIRNAME).write_bytes(b"not a database\n")
    result = posctl(home, "chain", "import", str(exported))
    assert result.returncode == 1
    expected = f"error: {home / CHAIN_DIRNAME} is a file, not a chain database directory: move it aside"
    assert one_error_line(result) == expected
    assert one_error_line(posctl(home, "chain", "status")) == expected
    assert sorted(p.name for p in home.iterdir()) == [CHAIN_DIRNAME]
    assert (home / CHAIN_DIRNAME).read_bytes() == b"not a database\n"


def test_import_of_a_missing_file_changes_nothing(tmp_path):
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(tmp_path / "nowhere.export"))
    assert result.returncode == 1
    assert "cannot read" in one_error_line(result)
    assert not target.exists()


def test_import_of_something_else_is_refused(tmp_path):
    junk = tmp_path / "junk.export"
    junk.write_bytes(b'{"hello":"world"}\n')
    target = tmp_path / "target"
    result = posctl(target, "chain", "import", str(junk))
    assert result.returncode == 1
    assert "not a posctl chain export" in one_error_line(result)
    assert_no_chain_left(target)


class CountingStore(KeyValueStore):
    """Delegates to a real LevelDB store, counting reads of block records."""

    def __init__(self, inner: LevelDBStore) -> None:
        self.inner = inner
        self.block_reads = 0

    def get(self, key: bytes) -> bytes | None:
        if key.startswith(schema.BLOCK_PREFIX):
            self.block_reads += 1
        return self.inner.get(key)

    def iterate(self, prefix: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.iterate(prefix, reverse=reverse)

    def write(self, changes) -> None:  # type: ignore[no-untyped-def]
        self.inner.write(changes)

    def close(self) -> None:
        self.inner.close()


def test_export_streams_block_by_block(source, tmp_path):
    """Each block is read from the database just before its line is written, never all first."""
    store = CountingStore(LevelDBStore.open(source / CHAIN_DIRNAME))
    reads_at_write: list[int] = []

    class Out:
        def __init__(self) -> None:
            self.lines = 0

        def write(self, data: bytes) -> int:
            if data.endswith(b"\n"):  # a line ends (the genesis comes in parts)
                self.lines += 1
                if 3 <= self.lines <= HEIGHT + 3:  # block lines
                    reads_at_write.append(store.block_reads)
            return len(data)

    with Chain(store, source) as chain:
        store.block_reads = 0
        report = export_chain(chain, Out())  # type: ignore[arg-type]
    assert report.blocks == HEIGHT + 1
    assert reads_at_write == list(range(1, HEIGHT + 2))


def on_terminal(home: Path, *args: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """Run posctl with its stderr on a pseudo-terminal; returns the process and what the terminal got."""
    main, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cli.main", "--home", str(home), *args],
            cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=secondary, timeout=60,
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO once the writer is gone (Linux)
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if secondary != -1:
            os.close(secondary)
        os.close(main)
    return proc, b"".join(chunks).decode(errors="replace")


def test_progress_bar_only_on_a_terminal(source, exported, tmp_path):
    target = tmp_path / "target"
    proc, terminal = on_terminal(target, "chain", "import", str(exported))
    assert proc.returncode == 0, terminal
    assert f"importing blocks 0..{HEIGHT}" in terminal
    assert "imported and verified" in proc.stdout.decode()

    proc, terminal = on_terminal(source, "chain", "export", str(tmp_path / "again.export"))
    assert proc.returncode == 0, terminal
    assert f"exporting blocks 0..{HEIGHT}" in terminal

    quiet = posctl(source, "chain", "export", str(tmp_path / "quiet.export"))  # stderr a pipe: no bar
    assert quiet.returncode == 0 and quiet.stderr == ""


# ---- backup ---------------------------------------------------------------------------------------


def test_backup_directly(source, tmp_path):
    copy = tmp_path / "backup"
    result = posctl(source, "chain", "backup", str(copy), "--json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    before = status(source)
    assert view["tip"] == before["tip"] and view["height"] == HEIGHT
    assert status(copy)["tip"] == before["tip"]
    assert status(copy)["state_root"] == before["state_root"]
    verify = posctl(copy, "chain", "verify")
    assert verify.returncode == 0, verify.stderr

    again = posctl(source, "chain", "backup", str(copy))
    assert again.returncode == 1
    assert "not an empty directory" in one_error_line(again)
    assert status(copy)["tip"] == before["tip"]


def test_backup_into_a_non_empty_directory_is_refused(source, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine\n")
    result = posctl(source, "chain", "backup", str(occupied))
    assert result.returncode == 1
    assert "not an empty directory" in one_error_line(result)
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]


def test_backup_into_the_chain_database_itself_is_refused(source, tmp_path):
    """`chain backup HOME/chain/copy` made a LevelDB copy inside the live database directory
    (where `chain repair` would then copy it along with the database)."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    inside = home / CHAIN_DIRNAME / "copy"
    result = posctl(home, "chain", "backup", str(inside))
    assert one_error_line(result) == (
        f"error: {inside} is inside the chain's own database ({home / CHAIN_DIRNAME}): a copy there would sit among "
        "the files it copies; choose a directory outside it")
    assert not inside.exists() and status(home)["height"] == HEIGHT


def test_backup_through_a_running_node(source, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(source, home)
    node = Node(home, tmp_path)
    try:
        refused = tmp_path / "refused"
        code, body = request(node.port, "POST", "/backup", json.dumps({"dir": str(refused)}).encode())
        assert code == 401, body
        assert not refused.exists()

        assert node.submit(make_tx(B, 0, "transfer", to=A.address, amount=5))[0] == 200
        copy = tmp_path / "backup"
        result = posctl(home, "chain", "backup", str(copy), "--json")
        assert result.returncode == 0, result.stderr
        view = json.loads(result.stdout)
        assert view["height"] == HEIGHT
        running = status(home)  # through the node
        assert view["tip"] == running["tip"]
        assert node.proc.poll() is None, "the node keeps running"
    finally:
        assert node.stop() == 0, node.output()
    no_traceback(subprocess.CompletedProcess([], 0, node.output(), ""))
    assert status(copy)["tip"] == view["tip"]
    assert status(copy)["mempool"] == 1  # the pending tx was in the snapshot
    verify = posctl(copy, "chain", "verify")
    assert verify.returncode == 0, verify.stderr


LONG_NAME = "a" * 300
"""A file name above the 255 bytes Linux file systems allow: every call on it fails with ENAMETOOLONG."""


def test_a_backup_path_no_directory_can_have_is_refused_in_one_line(source, tmp_path):
    """Through a node, a NUL byte in the path answered 500 `internal error: ValueError: embedded null
    byte` and a name too long 500 `internal error: OSError: [Errno 36]…` (the CLI printing that, the node
    logging an internal error): both are the caller's input, refused with 400 and one line, as directly."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    too_long = tmp_path / LONG_NAME
    expected = f"cannot create backup directory {too_long}: File name too long: choose another"
    assert one_error_line(posctl(home, "chain", "backup", str(too_long))) == f"error: {expected}"
    nul = tmp_path / "nul\0byte"  # JSON can carry one; a command line cannot
    nul_refusal = f"cannot create backup directory {str(nul)!r}: a path cannot hold a NUL byte: choose another"
    with Chain.open(home) as chain, pytest.raises(LedgerError) as refused:
        backup_chain(chain, nul)
    assert str(refused.value) == nul_refusal and type(refused.value) is LedgerError

    node = Node(home, tmp_path)
    try:
        result = posctl(home, "chain", "backup", str(too_long))
        assert result.returncode == 1 and one_error_line(result) == f"error: {expected}"
        for directory, message in ((too_long, expected), (nul, nul_refusal)):
            code, body = request(node.port, "POST", "/backup", json.dumps({"dir": str(directory)}).encode(),
                                 cookie_header(home))
            assert (code, body) == (400, {"error": message, "type": "LedgerError"})
        assert node.proc.poll() is None and status(home)["height"] == HEIGHT
    finally:
        assert node.stop() == 0, node.output()
    assert "internal error" not in node.output()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("nul", "aaa"))) == []  # nothing created


def test_export_to_a_name_too_long_says_it_cannot_be_written(source, tmp_path):
    """It said the file "exists and cannot be read to check that it is an earlier export"."""
    too_long = tmp_path / LONG_NAME
    result = posctl(source, "chain", "export", str(too_long))
    assert result.returncode == 1
    assert one_error_line(result) == f"error: cannot write the export to {too_long}: File name too long"


@needs_root
def test_a_backup_that_runs_out_of_space_leaves_nothing_behind(source, tmp_path):
    with tmpfs(tmp_path / "small", "1m") as small:
        fill_disk(small, leave=16 * 1024)
        copy = small / "backup"
        result = posctl(source, "chain", "backup", str(copy))
        assert result.returncode == 1
        line = one_error_line(result)
        assert "full" in line or "space" in line, line
        assert not copy.exists()
    assert status(source)["height"] == HEIGHT


SLOW_BACKUP = '''
import time
from ledger.storage import store

store.LevelDBStore.backup_to.__defaults__ = (1,)  # one synced batch per key...
real = store.plyvel.DB


class Copy:
    """...and each takes 20 ms more: a backup of this small chain lasts as one of a large one."""

    def __init__(self, db):
        self.db = db

    def write_batch(self, **kwargs):
        batch = self.db.write_batch(**kwargs)
        write = batch.write

        class Slow:
            put = batch.put

            def write(self):
                time.sleep(0.02)
                write()

        return Slow()

    def close(self):
        self.db.close()


def DB(name, **kwargs):
    db = real(name, **kwargs)
    return Copy(db) if kwargs.get("error_if_exists") else db  # the backup's copy only


store.plyvel.DB = DB
'''


def start_slow_backup(home: Path, tmp_path: Path) -> tuple[Node, Path, subprocess.Popen[str]]:
    """A node whose backups copy slowly, and a `chain backup` through it, started."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_BACKUP)
    node = Node(home, tmp_path, PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    copy = tmp_path / "backup"
    backup = subprocess.Popen([sys.executable, "-m", "cli.main", "--home", str(home), "chain", "backup", str(copy)],
                              cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(copy.glob(".*")):  # the copy is being written
        assert backup.poll() is None and time.monotonic() < deadline, backup.communicate()
        time.sleep(0.01)
    return node, copy, backup


def test_a_node_goes_on_admitting_while_it_writes_a_backup(source, tmp_path):
    """A backup through a node held the node's lock for the whole copy: every submission waited
    for it (0.84 s at 200,000 accounts, growing with the state). The node now takes only the
    snapshot under its lock, and the backup is still of that moment."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    node, copy, backup = start_slow_backup(home, tmp_path)
    try:
        started = time.monotonic()
        assert node.submit(make_tx(B, 0, "transfer", to=A.address, amount=5))[0] == 200
        answered = time.monotonic() - started
        assert backup.poll() is None, "the backup should still be copying"
        out, err = backup.communicate(timeout=60)
        assert backup.returncode == 0, err
        assert answered < 1.0, f"a submission waited {answered:.2f} s for the backup"
    finally:
        assert node.stop() == 0, node.output()
    assert status(copy)["mempool"] == 0  # the copy is of the moment the backup began
    assert posctl(copy, "chain", "verify").returncode == 0


def test_a_second_backup_into_the_same_directory_waits_its_turn(source, tmp_path):
    """With the copy made outside the node's lock, a second backup into the directory of one in
    progress found only its `.chain.partial` — what a killed backup leaves — and cleared it,
    failing both. It is refused instead, and the first one finishes."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    node, copy, backup = start_slow_backup(home, tmp_path)
    try:
        second = posctl(home, "chain", "backup", str(copy))
        assert one_error_line(second) == (f"error: a backup into {copy} is being written right now: wait for it to "
                                          "finish, or choose another directory")
        out, err = backup.communicate(timeout=60)
        assert backup.returncode == 0, err
    finally:
        assert node.stop() == 0, node.output()
    assert posctl(copy, "chain", "verify").returncode == 0


def test_a_node_stopping_abandons_its_backup_at_once(source, tmp_path):
    """Stopped while it writes a backup, the node ends the copy at its next batch (it may not
    close the database under a reader), says so to the client, and leaves nothing of it."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    node, copy, backup = start_slow_backup(home, tmp_path)
    started = time.monotonic()
    assert node.stop() == 0, node.output()
    assert time.monotonic() - started < 5
    out, err = backup.communicate(timeout=30)
    assert backup.returncode == 1 and err.strip() == (
        "error: the node is stopping: the backup was abandoned and nothing of it kept; back up again once the node "
        "runs (or directly, once it has stopped)"), err
    assert not copy.exists()
    assert posctl(home, "chain", "verify").returncode == 0


@needs_root
def test_a_backup_a_full_disk_refuses_through_a_node_leaves_the_node_running(source, tmp_path):
    """The node stopped itself ("storage failure, stopping the node") when the disk a backup was
    going to (a USB stick, a small partition) was full: the copy's write error was taken for a
    failure of the chain's own storage. It is the backup's: 507, one line, and the node goes on."""
    home = tmp_path / "home"
    shutil.copytree(source, home)
    node = Node(home, tmp_path)
    try:
        with tmpfs(tmp_path / "small", "1m") as small:
            fill_disk(small, leave=16 * 1024)
            result = posctl(home, "chain", "backup", str(small / "backup"))
            line = one_error_line(result)
            assert line.startswith(f"error: cannot write the backup at {small / 'backup'}: its disk is full (") \
                and line.endswith(
                "): free some space there or choose another directory; the chain itself is unaffected"), line
            assert not (small / "backup").exists()
        assert node.proc.poll() is None, node.output()
        assert node.submit(make_tx(B, 0, "transfer", to=A.address, amount=5))[0] == 200
        assert status(home)["mempool"] == 1  # through the node, still serving
    finally:
        assert node.stop() == 0, node.output()
    assert "storage failure" not in node.output(), node.output()


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_interrupted_export_or_import_says_whether_it_finished(source, exported, tmp_path, monkeypatch, where):
    """A Ctrl-C once the export file was renamed into place, or once the imported chain was moved
    into the home, was reported as "aborted: nothing was changed"; before that point it is true.
    In process (CliRunner), with the step that finishes each one wrapped to raise at that point."""
    from click.testing import CliRunner

    import ledger.chain.archive as archive
    from cli.main import posctl as cli

    original_replace, original_import = os.replace, archive.import_chain

    def replace(*args: Any, **kwargs: Any) -> None:
        if where == "after":
            original_replace(*args, **kwargs)
        raise KeyboardInterrupt

    def import_chain(*args: Any, **kwargs: Any) -> Any:
        if where == "after":
            original_import(*args, **kwargs)
        raise KeyboardInterrupt

    target = tmp_path / "again.export"
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", replace)
        result = CliRunner().invoke(cli, ["--home", str(source), "chain", "export", str(target)])
    home = tmp_path / "home"
    with monkeypatch.context() as patch:
        patch.setattr(archive, "import_chain", import_chain)
        imported = CliRunner().invoke(cli, ["--home", str(home), "chain", "import", str(exported)])
    assert result.exit_code == imported.exit_code == 1
    if where == "before":
        assert result.stderr.strip() == imported.stderr.strip() == "error: aborted: nothing was changed"
        assert not target.exists() and not (tmp_path / "again.export.partial").exists()
        assert_no_chain_left(home)
    else:
        assert result.stderr.strip() == f"error: interrupted after the export was written to {target}: it is complete"
        assert target.read_bytes() == exported.read_bytes()
        assert imported.stderr.strip() == (f"error: interrupted after the chain was imported and verified into {home}: "
                                           "`posctl chain status` shows it")
        assert status(home)["tip"] == status(source)["tip"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_interrupted_backup_says_whether_it_finished(source, tmp_path, monkeypatch, where):
    from click.testing import CliRunner

    import ledger.chain.archive as archive
    from cli.main import posctl as cli

    original = archive.backup_chain

    def backup_chain(*args: Any, **kwargs: Any) -> Any:
        if where == "after":
            original(*args, **kwargs)
        raise KeyboardInterrupt

    copy = tmp_path / "backup"
    monkeypatch.setattr(archive, "backup_chain", backup_chain)
    result = CliRunner().invoke(cli, ["--home", str(source), "chain", "backup", str(copy)])
    assert result.exit_code == 1
    if where == "before":
        assert result.stderr.strip() == "error: aborted: nothing was changed"
        assert not Chain.exists(copy)
    else:
        assert result.stderr.strip() == (f"error: interrupted after the backup was written to {copy}: check it with "
                                         f"`posctl --home {copy} chain verify`")
        assert status(copy)["tip"] == status(source)["tip"]


KILL_ONCE_THE_TIP_IS_COPIED = '''
import os, signal
from ledger.storage import schema, store

plyvel = store.plyvel  # plyvel, or plyvel-next where plyvel has no wheels (Python 3.13+)

store.LevelDBStore.backup_to.__defaults__ = (1,)  # one synced batch per key: each lands on its own


class Batch:
    def __init__(self, batch):
        self.batch, self.tip = batch, False

    def put(self, key, value):
        self.tip = self.tip or key == schema.TIP_KEY
        self.batch.put(key, value)

    def write(self):
        self.batch.write()
        if self.tip:  # a kill -9 the moment the copy holds the tip, with the tx index still to come
            os.kill(os.getpid(), signal.SIGKILL)


class Copy:
    def __init__(self, db):
        self.db = db

    def write_batch(self, **kwargs):
        return Batch(self.db.write_batch(**kwargs))

    def close(self):
        self.db.close()


real = plyvel.DB


def DB(name, **kwargs):
    db = real(name, **kwargs)
    return Copy(db) if kwargs.get("error_if_exists") else db  # the backup's copy only


plyvel.DB = DB
'''


def test_a_backup_killed_mid_copy_never_passes_for_a_backup(source, tmp_path):
    """LevelDB copies keys in order and the tip comes before the tx index, so a copy killed half
    way opened as a chain: `chain status` showed the source's height and tip in a backup that
    could not find its txs. Now the copy is renamed into place only once whole; the next backup
    into the same directory clears what the killed one left."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_ONCE_THE_TIP_IS_COPIED)
    copy = tmp_path / "backup"
    killed = posctl(source, "chain", "backup", str(copy), PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    assert killed.returncode == -9, killed.stderr
    assert_no_chain_left(copy)
    again = posctl(source, "chain", "backup", str(copy))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in copy.iterdir()) == [CHAIN_DIRNAME]
    assert status(copy)["tip"] == status(source)["tip"]
    verify = posctl(copy, "chain", "verify")
    assert verify.returncode == 0, verify.stderr


KILL_WHILE_DELETING = '''
import os, shutil, signal

original = shutil.rmtree


def rmtree(path, *args, **kwargs):
    """Delete the database's MANIFEST, then die as a kill -9 would: a clean-up cut mid-way."""
    names = os.listdir(path) if os.path.isdir(path) else []
    if "CURRENT" in names:
        os.unlink(os.path.join(path, next(name for name in names if name.startswith("MANIFEST-"))))
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path, *args, **kwargs)


shutil.rmtree = rmtree
'''


def test_chain_init_killed_while_it_removes_a_refused_genesis_leaves_no_damaged_chain(tmp_path):
    """A refused genesis (here an allocation to a wallet that does not exist) is deleted again;
    a kill -9 in the middle of that deletion left a chain directory without its MANIFEST, which
    every later `chain init` refused as damaged. Now the directory is renamed aside before it is
    deleted, and the next `chain init` finishes the deletion."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_WHILE_DELETING)
    genesis = tmp_path / "genesis.json"
    genesis.write_text(json.dumps({"params": {"chain_id": "posctl-refused"}, "bonds": {V.address: 500},
                                   "allocations": {A.address: 1000, "nobody": 5}}))
    home = tmp_path / "home"
    killed = posctl(home, "chain", "init", "--genesis", str(genesis), PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    assert killed.returncode == -9, killed.stderr
    assert_no_chain_left(home)
    genesis.write_text(json.dumps({"params": {"chain_id": "posctl-refused"}, "bonds": {V.address: 500},
                                   "allocations": {A.address: 1000}}))
    again = posctl(home, "chain", "init", "--genesis", str(genesis))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in home.iterdir()) == [CHAIN_DIRNAME]
    assert posctl(home, "chain", "verify").returncode == 0


HOLD_BEFORE_OPENING = '''
import os, time
from ledger.storage.store import LevelDBStore

original = LevelDBStore.open.__func__


def open_(cls, path, **kwargs):
    """Stop just before `chain init` opens (and makes) its database, until the test says go."""
    if kwargs.get("create"):
        open(os.environ["POSCTL_TEST_WAITING"], "w").close()
        while not os.path.exists(os.environ["POSCTL_TEST_GO"]):
            time.sleep(0.01)
    return original(cls, path, **kwargs)


LevelDBStore.open = classmethod(open_)
'''


def test_chain_init_clears_the_scratch_of_a_killed_import(exported, tmp_path):
    """A `kill -9` of `chain import` leaves its scratch chain (as large as the import got) hidden
    in the home; only another import cleared it. `chain init` there now clears it too."""
    home = tmp_path / "home"
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal\nfrom ledger.chain import archive\noriginal = archive.publish_directory\n"
        "def publish_directory(*args):\n    os.kill(os.getpid(), signal.SIGKILL)  # the import, whole, not moved\n"
        "archive.publish_directory = publish_directory\n")
    killed = posctl(home, "chain", "import", str(exported), PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    assert killed.returncode == -9 and (home / IMPORT_SCRATCH / CHAIN_DIRNAME).is_dir(), killed.stderr
    init = posctl(home, "chain", "init", "--alloc", f"{A.address}=1000", "--bond", f"{V.address}=500")
    assert init.returncode == 0, init.stderr
    assert not (home / IMPORT_SCRATCH).exists()


@pytest.mark.parametrize("other", ["init", "import"])
def test_a_chain_made_while_another_init_waits_is_never_deleted_by_it(source, exported, tmp_path, other):
    """Two commands creating a chain in one home at once: the first `chain init` has looked and
    found no chain directory, then the other makes a whole chain and says so. The first then
    found that chain, refused ("a chain already exists") and deleted the directory it believed
    it had made: a chain reported created (or imported) was gone (2 of 6 runs of two plain
    `chain init` started together). Now creating holds the home: the other is refused at once
    and the first makes its chain."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOLD_BEFORE_OPENING)
    home, waiting, go = tmp_path / "home", tmp_path / "waiting", tmp_path / "go"
    first = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--home", str(home), "chain", "init", "--chain-id", "posctl-first",
         "--alloc", f"{A.address}=1000", "--bond", f"{V.address}=500"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env(PYTHONPATH=f"{hook}{os.pathsep}{ROOT}",
                                                   POSCTL_TEST_WAITING=str(waiting), POSCTL_TEST_GO=str(go)))
    try:
        deadline = time.monotonic() + 30
        while not waiting.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.01)
        if other == "init":
            second = posctl(home, "chain", "init", "--chain-id", "posctl-second", "--alloc", f"{A.address}=1000",
                            "--bond", f"{V.address}=500")
        else:
            second = posctl(home, "chain", "import", str(exported))
    finally:
        go.touch()
        out, err = first.communicate(timeout=60)
    assert 0 in (first.returncode, second.returncode), (err, second.stderr)
    assert posctl(home, "chain", "status").returncode == 0, "a chain reported created is gone"
    assert second.returncode == 1 and one_error_line(second) == (
        f"error: another posctl command is creating a chain in {home} right now (`chain init` or `chain import`): "
        "wait for it to finish, then see `posctl chain status`"), second.stderr
    assert first.returncode == 0, err
    assert status(home)["chain_id"] == "posctl-first"
