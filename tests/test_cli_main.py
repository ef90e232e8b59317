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


def test_a_home_another_user_owns_or_may_write_is_refused(tmp_path):
    """posctl used a home it found as it was: in one another user had made first (a shared /tmp),
    that user swapped a wallet file for one of theirs and `wallet send` paid them. Refused, as
    ssh refuses such a ~/.ssh, for the home and for its wallets directory; nothing is created."""
    import os

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "wallets").mkdir(mode=0o700)
    for path in (home, home / "wallets"):
        path.chmod(0o777)
        for args in (["wallet", "list"], ["chain", "status"], ["wallet", "new", "alice"]):
            result = CliRunner().invoke(posctl, ["--home", str(home), *args])
            assert result.exit_code == 1, (args, result.stdout)
            assert result.stderr.strip() == (f"error: {path} can be written by other users (mode 777): posctl trusts "
                                              f"what its home holds; run `chmod go-w {path}` if it is yours, or choose "
                                              "another home"), result.stderr
        path.chmod(0o700)
        assert sorted(p.name for p in home.iterdir()) == ["wallets"] and not any((home / "wallets").iterdir())
    if os.geteuid() == 0:  # giving a directory away needs root (CI runs as root)
        os.chown(home, 65534, -1)
        result = CliRunner().invoke(posctl, ["--home", str(home), "wallet", "list"])
        assert result.exit_code == 1 and f"{home} belongs to another user (uid 65534)" in result.stderr
        os.chown(home, 0, -1)
    assert CliRunner().invoke(posctl, ["--home", str(home), "wallet", "list"]).exit_code == 0


def test_a_command_writes_no_core_file(tmp_path):
    """A core file holds the process's memory: a `validator run` killed with SIGSEGV left the
    wallet's private key and recovery entropy in one. Every command turns core files off."""
    code = ("import resource, sys; from cli.main import main\n"
            "hard = resource.getrlimit(resource.RLIMIT_CORE)[1]\n"
            "resource.setrlimit(resource.RLIMIT_CORE, (1 << 20 if hard == resource.RLIM_INFINITY else hard, hard))\n"
            "print(resource.getrlimit(resource.RLIMIT_CORE)[0] != 0)\n"  # core files on, as `ulimit -c` makes them
            "try:\n    main(['--home', sys.argv[1], 'wallet', 'list'])\n"
            "except SystemExit:\n    pass\n"
            "print(resource.getrlimit(resource.RLIMIT_CORE)[0])")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], capture_output=True, text=True,
                            timeout=60)
    lines = result.stdout.strip().splitlines()
    assert (lines[0], lines[-1]) == ("True", "0"), result.stdout + result.stderr
