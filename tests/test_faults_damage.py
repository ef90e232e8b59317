"""Damaged chain files, through the real CLI: one line naming the cause and the remedy, the
right exit status, never a traceback; ``chain repair`` recovers wherever LevelDB can.

Every case damages a copy of one real chain (several tables, a live log with a pending tx).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger.chain.facade import Chain
from ledger.storage import schema
from tests.faultkit import ROOT, env, needs_root, no_traceback, one_error_line, posctl
from tests.ledgerkit import make_chain, make_key, make_tx, propose

A, B, V = make_key("a"), make_key("b"), make_key("v")
HEIGHT = 6
REPAIR = "posctl chain repair"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A chain at HEIGHT whose blocks sit in tables (each reopen turns the log into one) and
    whose newest write (a pending tx) sits in the log."""
    home = tmp_path_factory.mktemp("template") / "home"
    with make_chain(home, {A.address: 10**6, B.address: 10**6}, {V.address: 500}) as chain:
        pass
    for height in range(1, HEIGHT + 1):
        with Chain.open(home) as chain:
            chain.submit(propose(chain, V, 60 + height))
            for nonce in range((height - 1) * 5, height * 5):
                chain.submit(make_tx(A, nonce, "transfer", to=B.address, amount=1))
            assert chain.forge().block is not None
    with Chain.open(home) as chain:
        chain.submit(make_tx(B, 0, "stake", amount=100))
    return home


@pytest.fixture
def home(template, tmp_path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(template, copy)
    return copy


def chain_file(home: Path, pattern: str) -> Path:
    found = sorted((home / "chain").glob(pattern), key=lambda p: p.stat().st_size, reverse=True)
    assert found, f"no {pattern} in {home / 'chain'}"
    return found[0]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def assert_ok_and_verifies(home: Path, height: int = HEIGHT) -> None:
    status = posctl(home, "chain", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["height"] == height
    verify = posctl(home, "chain", "verify")
    assert verify.returncode == 0, verify.stderr


def database_files(home: Path) -> dict[str, bytes]:
    """LevelDB's own files of the home's chain (not its LOCK and info logs), by name."""
    return {p.name: p.read_bytes() for p in (home / "chain").iterdir() if p.name not in ("LOCK", "LOG", "LOG.old")}


def repair(home: Path) -> subprocess.CompletedProcess[str]:
    """`chain repair`: a copy of the original aside when it verifies; when it does not, the
    original back under `chain/`, byte for byte (LevelDB's attempt opened where the original
    did not and passed for a chain missing blocks), and no copy left."""
    before = database_files(home)
    result = posctl(home, "chain", "repair")
    no_traceback(result)
    backups = list(home.glob("chain.before-repair-*"))
    if result.returncode == 0:
        assert len(backups) == 1, "repair copies the chain aside first"
    else:
        assert backups == [] and database_files(home) == before, "a failed repair puts the original back"
        assert "the chain is back as it was before the repair" in one_error_line(result)
    return result


# ---- damage the log: LevelDB drops a torn tail, the chain stays whole ---------------------------


def test_torn_log_tail_is_dropped_and_the_chain_verifies(home):
    log = chain_file(home, "*.log")
    with open(log, "r+b") as handle:
        handle.truncate(log.stat().st_size - 9)
    assert_ok_and_verifies(home)


def test_truncated_log_loses_only_the_unflushed_tail(home):
    chain_file(home, "*.log").write_bytes(b"")
    assert_ok_and_verifies(home)


# ---- damage a table: reported as damage, with the remedy ---------------------------------------


def test_flipped_table_bytes_are_caught_by_checksums_not_shown_as_data(home):
    table = chain_file(home, "*.ldb")
    flip(table, table.stat().st_size // 3)
    verify = posctl(home, "chain", "verify")
    assert verify.returncode == 1
    line = one_error_line(verify)
    assert "damaged" in line and "checksum" in line and REPAIR in line
    result = repair(home)
    if result.returncode == 0:  # the damaged block held nothing the chain still needs
        assert "repaired and verified" in result.stdout
        assert_ok_and_verifies(home)
    else:  # it held part of the chain: said so, and the damaged original is back
        line = one_error_line(result)
        assert "does not verify" in line or "recovered no usable chain" in line
        assert "restore the chain from a backup" in line
        assert REPAIR in one_error_line(posctl(home, "chain", "verify"))  # refused as before, not used


def test_flipped_table_magic_is_one_line_from_status_verify_and_node(home):
    table = chain_file(home, "*.ldb")
    flip(table, table.stat().st_size - 1)
    for args in (("chain", "status"), ("chain", "show"), ("chain", "verify"),
                 ("node", "run", "--listen", "127.0.0.1:0")):
        result = posctl(home, *args)
        assert result.returncode == 1, (args, result.stdout)
        line = one_error_line(result)
        assert "bad magic number" in line and REPAIR in line, line


def test_missing_current_is_damage_not_no_chain_and_repair_recovers_everything(home):
    (home / "chain" / "CURRENT").unlink()
    tables = sorted(p.name for p in (home / "chain").glob("*.ldb"))
    status = posctl(home, "chain", "status")
    assert status.returncode == 1
    line = one_error_line(status)
    assert "no CURRENT file" in line and REPAIR in line and "chain init" not in line
    # the remedy names the home it was given with: `posctl chain repair` alone repaired another one
    assert line.endswith(f"(with --home {home}, as here)")
    from_env = subprocess.run([sys.executable, "-m", "cli.main", "chain", "status"], cwd=ROOT,
                              env=env(POSCTL_HOME=str(home)), capture_output=True, text=True, timeout=60)
    assert REPAIR in one_error_line(from_env) and "--home" not in from_env.stderr  # inherited: nothing to add
    init = posctl(home, "chain", "init", "--bond", f"{V.address}=500")
    assert init.returncode == 1
    assert REPAIR in one_error_line(init)
    assert sorted(p.name for p in (home / "chain").glob("*.ldb")) == tables, "init deleted nothing"
    result = repair(home)
    assert result.returncode == 0, result.stderr
    assert f"heights 0..{HEIGHT}" in result.stdout
    assert_ok_and_verifies(home)


def test_damaged_manifest_is_repaired_with_every_block(home):
    manifest = chain_file(home, "MANIFEST-*")
    flip(manifest, 12)
    status = posctl(home, "chain", "status")
    assert status.returncode == 1
    line = one_error_line(status)
    assert "damaged" in line and REPAIR in line
    result = repair(home)
    assert result.returncode == 0, result.stderr
    assert_ok_and_verifies(home)


def test_missing_table_file_is_named_and_repair_says_what_it_could_not_recover(home):
    table = chain_file(home, "*.ldb")
    table.unlink()
    status = posctl(home, "chain", "status")
    assert status.returncode == 1
    line = one_error_line(status)
    assert "missing files" in line and table.name in line and REPAIR in line
    result = repair(home)
    if result.returncode != 0:  # the original, as it was: every command refuses it again, none builds on it
        for args in (("chain", "status"), ("chain", "forge")):
            assert "missing files" in one_error_line(posctl(home, *args))
    else:
        assert_ok_and_verifies(home, json.loads(posctl(home, "chain", "status", "--json").stdout)["height"])


def test_a_repair_that_recovers_no_chain_puts_the_original_back(home):
    """LevelDB's attempt opened where the original did not (its rebuilt MANIFEST no longer lists
    what was lost) and was left in place: `chain status` showed a height, `chain forge` built on
    a chain missing blocks. Now the original goes back, byte for byte, and is refused as before."""
    for table in (home / "chain").glob("*.ldb"):
        table.unlink()
    result = repair(home)  # checks the bytes and that no copy is left
    assert result.returncode == 1 and "recovered no usable chain" in one_error_line(result)
    for args in (("chain", "status"), ("chain", "forge"), ("chain", "verify")):
        assert "missing files" in one_error_line(posctl(home, *args))


def test_a_failed_repair_that_cannot_put_the_original_back_says_where_it_is(home, monkeypatch):
    import errno

    from click.testing import CliRunner

    import ledger.chain.repair as repair_module
    from cli.main import posctl as cli

    for table in (home / "chain").glob("*.ldb"):
        table.unlink()

    def publish_directory(_source, _target):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(repair_module, "publish_directory", publish_directory)
    result = CliRunner().invoke(cli, ["--home", str(home), "chain", "repair"])
    copies = sorted(home.glob("chain.before-repair-*"))
    assert result.exit_code == 1 and len(copies) == 1
    line = result.stderr.strip()
    assert f"the original could not be put back (No space left on device): the original is kept at {copies[0]}" in line
    assert "is back as it was" not in line and len(line.splitlines()) == 1


def test_a_damaged_log_record_makes_the_pending_loss_unknown_not_zero(home):
    """The "before" count came from a relaxed read, which had already dropped the damaged record
    (the pending stake): the repair said "0 pending txs lost" for a tx the user was told was
    accepted. A read with every check on fails there, so the loss is unknown."""
    log = chain_file(home, "*.log")
    flip(log, log.stat().st_size - 20)
    result = repair(home)
    assert result.returncode == 0, result.stderr
    assert "pending txs kept, unknown pending txs lost" in result.stdout, result.stdout
    assert_ok_and_verifies(home)


def test_a_table_cut_short_is_damage_with_its_remedy(home):
    """LevelDB reads past the end of a truncated table as `IO error: …ldb: Invalid argument`; it
    was reported as a plain read failure, naming no cause and no remedy."""
    table = chain_file(home, "*.ldb")
    with open(table, "r+b") as handle:
        handle.truncate(table.stat().st_size // 2)
    for args in (("chain", "verify"), ("chain", "status")):
        result = posctl(home, *args)
        if result.returncode == 0:  # status may read nothing from that table
            continue
        line = one_error_line(result)
        assert "is damaged" in line and REPAIR in line, line
    assert posctl(home, "chain", "verify").returncode == 1


# ---- locks, permissions, versions ---------------------------------------------------------------


def test_a_stale_lock_file_is_no_obstacle(home):
    lock = home / "chain" / "LOCK"
    assert lock.exists()  # LevelDB leaves it; no process holds it
    assert_ok_and_verifies(home)


def test_a_live_lock_is_reported_as_in_use_after_a_short_wait(home):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from ledger.storage.store import LevelDBStore; "
         "s = LevelDBStore.open(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
         str(home / "chain")],
        cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = posctl(home, "chain", "status")
        assert result.returncode == 1
        assert "in use by another process" in one_error_line(result)
    finally:
        holder.kill()
        holder.wait()


@needs_root
def test_a_read_only_home_is_not_taken_for_a_busy_one(home, tmp_path):
    view = tmp_path / "ro-home"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(home), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        started = time.monotonic()
        result = posctl(view, "chain", "status")
        elapsed = time.monotonic() - started
        assert result.returncode == 1
        line = one_error_line(result)
        assert "read-only file system" in line and "in use" not in line
        assert elapsed < 2.5, "no lock wait for a read-only home"
    finally:
        subprocess.run(["umount", str(view)], check=False)


def test_another_schema_version_is_refused_with_what_to_do(home):
    with Chain.open(home) as chain:
        chain.store.write({schema.SCHEMA_VERSION_KEY: b"9"})
    result = posctl(home, "chain", "status")
    assert result.returncode == 1
    assert "schema version 9" in one_error_line(result) and "matching posctl" in result.stderr


def test_chain_init_refuses_a_chain_directory_holding_anything(tmp_path):
    home = tmp_path / "home"
    (home / "chain").mkdir(parents=True)
    (home / "chain" / "notes.txt").write_text("mine")
    result = posctl(home, "chain", "init", "--bond", f"{V.address}=500")
    assert result.returncode == 1
    assert "not empty" in one_error_line(result)
    assert (home / "chain" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("step", ["copytree", "repair_database"])
def test_an_interrupted_repair_names_the_copy_it_kept(home, monkeypatch, step):
    """A Ctrl-C while the database is copied aside removes the half copy ("nothing was changed"
    is then true); one during LevelDB's repair names the copy of the database as it was, which
    "aborted: nothing was changed" used to hide. In process, the step wrapped to raise there."""
    from click.testing import CliRunner

    import ledger.chain.repair as repair_module
    from cli.main import posctl as cli

    (home / "chain" / "CURRENT").unlink()
    original_copy = shutil.copytree

    def copytree(*args, **kwargs):
        original_copy(*args, **kwargs)  # the whole copy is made, then the Ctrl-C lands
        raise KeyboardInterrupt

    def repair_database(_path):
        raise KeyboardInterrupt

    if step == "copytree":
        monkeypatch.setattr(repair_module.shutil, "copytree", copytree)
    else:
        monkeypatch.setattr(repair_module, "repair_database", repair_database)
    result = CliRunner().invoke(cli, ["--home", str(home), "chain", "repair"])
    copies = sorted(home.glob("chain.before-repair-*"))
    assert result.exit_code == 1
    if step == "copytree":
        assert result.stderr.strip() == "error: aborted: nothing was changed"
        assert copies == []
    else:
        assert len(copies) == 1
        assert result.stderr.strip() == (f"error: interrupted during the repair: the database as it was before is "
                                         f"kept at {copies[0]}; run `posctl chain repair` again (it starts from "
                                         f"the database as it is now) (with --home {home}, as here)")
    monkeypatch.undo()
    for copy in copies:  # (the helper below expects the one copy its own run makes)
        shutil.rmtree(copy)
    again = repair(home)  # from the database as the interruption left it
    assert again.returncode == 0, again.stderr
    assert_ok_and_verifies(home)


KILL_DURING_THE_COPY = '''
import os, shutil, signal

original = shutil.copy2
copied = []


def copy2(source, target, *args, **kwargs):
    """Copy one file of the database, then die as a kill -9 would: a copy cut mid-way."""
    if copied:
        os.kill(os.getpid(), signal.SIGKILL)
    copied.append(source)
    return original(source, target, *args, **kwargs)


shutil.copy2 = copy2
'''


def test_a_repair_killed_while_it_copies_the_chain_aside_leaves_no_half_copy(home, tmp_path):
    """`chain repair` keeps "the untouched original" as `chain.before-repair-*` and tells the user
    to restore from it if need be; killed while copying it, it left a part of the database under
    that name, which a user could later take for the original. Now the copy is built under a
    hidden name and renamed once every file is on disk; the next repair removes the part."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_DURING_THE_COPY)
    killed = posctl(home, "chain", "repair", PYTHONPATH=f"{hook}{os.pathsep}{ROOT}")
    assert killed.returncode == -9, killed.stderr
    assert list(home.glob("chain.before-repair-*")) == []
    result = repair(home)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".")) == []
    assert_ok_and_verifies(home)


def test_repair_refuses_while_another_process_holds_the_database(home):
    """LevelDB's repair takes no lock: run beside a process that had the database open (a direct
    `chain forge`, `wallet send`, …), `chain repair` copied a database being written, moved the
    holder's live log into `lost/` under it — where the holder's next writes would be lost —
    and then called the chain unrecoverable. Now it holds LevelDB's lock itself and refuses."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ledger.storage.store import plyvel; db = plyvel.DB(sys.argv[1]); "
         "print('open', flush=True); sys.stdin.read()", str(home / "chain")],
        cwd=ROOT, env=env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "open\n"
        before = sorted(p.name for p in (home / "chain").iterdir())  # as the holder's opening left it
        result = posctl(home, "chain", "repair")
    finally:
        holder.communicate("")
    assert result.returncode == 1 and one_error_line(result) == (
        f"error: the chain database at {home / 'chain'} is in use by another process (another posctl command, or a "
        "running `posctl node run`): retry when it is done, or stop the node"), result.stderr
    assert list(home.glob("chain.before-repair-*")) == []
    assert sorted(p.name for p in (home / "chain").iterdir()) == before
    assert_ok_and_verifies(home)
