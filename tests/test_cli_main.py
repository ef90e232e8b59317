"""The root command: version, help, and one-line errors for usage mistakes."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from cli.main import posctl


def test_version_and_help():
    result = CliRunner().invoke(posctl, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("posctl, version ")
    result = CliRunner().invoke(posctl, ["--help"])
    assert result.exit_code == 0
    for group in ("wallet", "chain", "node", "demo"):
        assert f"  {group} " in result.stdout
    assert "_POSCTL_COMPLETE" in result.stdout  # shell completion is documented


def test_usage_errors_are_one_line_exit_2():
    for args in (["wallet", "stake", "alice", "1.5"], ["chain", "bogus"], ["--nope"]):
        result = CliRunner().invoke(posctl, ["--home", "/nonexistent-posctl-home", *args])
        assert result.exit_code == 2, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], lines
        assert result.stdout == ""


def test_help_does_not_import_the_ledger_or_the_wallet():
    """`posctl --help` stays fast because command modules load only when used."""
    code = (
        "import sys; from cli.main import posctl\n"
        "try:\n    posctl.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ledger', 'wallet', 'plyvel', 'Crypto')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
