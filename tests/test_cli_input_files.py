"""Files named on the command line that are not what the command reads: one line, exit 1.

A mistaken argument — an export of gigabytes where a signed tx file belongs, ``/dev/zero``, a
binary file as a password file — must be refused without being read whole and without a
traceback (``node run --dev --password-file`` once raised ``UnicodeDecodeError``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.faultkit import ROOT, env, one_error_line, posctl

LIGHT = {"POSCTL_KDF": "light", "POSCTL_PASSWORD": "pw"}


def test_a_file_far_larger_than_a_tx_is_refused_unread(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args in (("chain", "submit", "/dev/zero"), ("chain", "evidence", "/dev/zero", "/dev/zero")):
        started = time.monotonic()
        result = posctl(home, *args, timeout=30)
        assert result.returncode == 1, result.stderr
        assert one_error_line(result) == (
            "error: /dev/zero is larger than 1048576 bytes: it is not a signed transaction file")
        assert time.monotonic() - started < 20


def test_password_files_that_are_not_text_or_far_too_long(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert posctl(home, "wallet", "new", "alice", "--words", "12", **LIGHT).returncode == 0
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00password")
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * 100_000)
    cases = [
        (("--password-file", str(binary), "node", "run", "--dev"), f"error: password file {binary} is not UTF-8 text"),
        (("--password-file", str(huge), "wallet", "passwd", "alice", "--new-password-file", str(binary)),
         f"error: {huge} is larger than 65536 bytes: it is not a password file"),
        (("--password-file", "/dev/zero", "wallet", "passwd", "alice", "--new-password-file", str(binary)),
         "error: /dev/zero is larger than 65536 bytes: it is not a password file"),
    ]
    for args, line in cases:
        result = posctl(home / "dev" if "--dev" in args else home, *args, timeout=30, POSCTL_KDF="light")
        assert result.returncode == 1, (args, result.stderr)
        assert one_error_line(result) == line
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    result = posctl(home, "--password-file", str(pw), "wallet", "passwd", "alice", "--new-password-file", str(binary),
                    POSCTL_KDF="light")
    assert result.returncode == 1
    assert one_error_line(result) == f"error: new password file {binary} is not UTF-8 text"
    assert not (home / "dev").exists()


def test_recover_reads_no_more_of_stdin_than_a_phrase_could_need(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for extra in ((), ("--passphrase",)):
        result = subprocess.run([sys.executable, "-m", "cli.main", "--home", str(home), "wallet", "recover", "w", *extra],
                                input="abandon " * 20_000, capture_output=True, text=True, cwd=ROOT,
                                env=env(**LIGHT), timeout=30)
        assert result.returncode == 1, result.stderr
        assert one_error_line(result) == ("error: stdin holds more than 65536 characters where the recovery phrase "
                                          "belongs: pipe in the phrase alone; nothing was written")
        assert not (home / "wallets" / "w.json").exists()
