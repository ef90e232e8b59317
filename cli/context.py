"""The context every command receives, and the one place output and errors are rendered.

Commands are thin: they parse, call the library and hand back data; :func:`emit` prints it as
JSON (exactly one document on stdout) or as text. Every failure a user can cause becomes one
line on stderr — ``error: …`` — and exit status 1; a traceback is a bug.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

INTEGER_TEXT = re.compile(r"^[+-]?[0-9]{1,40}$")
"""A whole number as people type it (no '_', no decimals); 40 digits is far above 2^63 and far
below int()'s limits."""


class Seconds(click.FloatRange):
    """A duration in seconds between ``min`` and ``max``. click's FloatRange lets ``nan`` through
    (every comparison with it is false), and a deadline of ``nan`` never passes: ``node stop
    --timeout nan`` waited for ever."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if seconds != seconds:  # nan
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


class HomePath(click.Path):
    """``--home``: an empty value is refused rather than read as the current directory (a script
    passing ``--home "$UNSET"`` wrote wallets wherever it ran)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("the home directory is empty: give a directory, or leave --home out for ~/.posctl", param, ctx)
        return super().convert(value, param, ctx)


def default_home() -> Path:
    """``~/.posctl``: where chain and wallets live unless --home or POSCTL_HOME says otherwise."""
    return Path.home() / ".posctl"


@dataclass
class AppContext:
    """Built by the root group and passed down through ``click.Context.obj``. Its fields have
    defaults because root options such as ``--json`` may set them before the root callback runs."""

    home: Path = field(default_factory=default_home)
    password_file: Path | None = None
    json_output: bool = False
    node_url: str | None = None
    """``--node URL`` (or ``POSCTL_NODE``): reach the node there instead of the one this home records."""
    sign_only: Path | None = None
    """``--out FILE`` on a submitting command: write the signed tx there instead of submitting."""
    nonce: int | None = None
    """``--nonce N`` on a submitting command: sign with N instead of the account's next nonce."""
    _backend: Any = field(default=None, repr=False)

    @property
    def wallets_dir(self) -> Path:
        return self.home / "wallets"

    def backend(self) -> Any:
        """The chain backend (direct or through a running node), opened once per command."""
        if self._backend is None:
            from cli.backend import open_backend

            self._backend = open_backend(self.home, self.node_url)
        return self._backend

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


pass_app = click.make_pass_decorator(AppContext)


NO_COLOR_ENV = "NO_COLOR"
"""https://no-color.org: when set and not empty, no ANSI colour, even on a terminal."""


def color_setting() -> bool | None:
    """``False`` when NO_COLOR asks for no colour; ``None`` lets click decide (colour only on a
    terminal). Passed as ``color=`` wherever posctl styles text."""
    return False if os.environ.get(NO_COLOR_ENV) else None


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and tabs become spaces, other control
    characters (a terminal's escape sequences among them) are shown escaped.

    Error messages carry text from outside — a node's reply, an OS error, a file name — and an
    error must stay one line on stderr that cannot rewrite the user's terminal.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in "\n\r\t":
            out.append(" ")
        else:
            out.append(f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")
    return "".join(out).strip()


REPAIR_COMMAND = "`posctl chain repair`"
"""The one remedy that, run on another home, changes a chain that was never the problem."""

_advice_home: list[Path] = []
"""The home given with ``--home`` on this invocation's command line, if it was (set by the root
command through :func:`name_home_in_advice`)."""


def name_home_in_advice(home: Path | None) -> None:
    """Suggested commands in error lines name ``home`` (None: name none)."""
    _advice_home[:] = [] if home is None else [home]


def with_home_named(message: str) -> str:
    """``message`` saying that the repair it suggests needs ``--home HOME`` too, when ``--home``
    was given on the command line: followed as printed, `posctl chain repair` repaired the
    default home's chain while the damaged one named by --home stayed as it was. A home from
    POSCTL_HOME needs nothing (the command inherits it); other suggested commands run on the
    wrong home only fail or show another chain, and the line stays as it is."""
    if not _advice_home or REPAIR_COMMAND not in message:
        return message
    return f"{message} (with --home {shlex.quote(str(_advice_home[0]))}, as here)"


def echo_error(message: str, file: Any = None) -> None:
    """``error: message`` on stderr; the prefix in red on a terminal unless NO_COLOR is set."""
    from ledger.errors import redact_secrets  # (here: `posctl --help` imports no ledger module)

    prefix = click.style("error:", fg="red", bold=True)
    message = one_line(redact_secrets(with_home_named(message)))
    if file is None:
        click.echo(f"{prefix} {message}", err=True, color=color_setting())
    else:
        click.echo(f"{prefix} {message}", file=file, color=color_setting())


class CliError(click.ClickException):
    """Printed as one line ``error: message`` on stderr (click's default says ``Error:``)."""

    def show(self, file: Any = None) -> None:
        echo_error(self.format_message(), file)


def fail(message: str) -> "click.ClickException":
    """An error a user can act on: printed as ``error: message``, exit status 1."""
    return CliError(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM reaching a one-shot command (``timeout``, a supervisor, ``kill``): it unwinds as a
    Ctrl-C does, so the same clean-up runs and the same kind of line is printed. Left to its
    default action, SIGTERM killed ``chain init`` mid-genesis without removing what it had
    written, and multiprocessing's resource tracker then warned of leaked semaphores."""


@contextlib.contextmanager
def signals_unwind_once() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` and SIGINT ``KeyboardInterrupt``, once: from
    the first on, both are ignored, so the clean-up that the exception runs (a half-made chain
    removed, a pool ended) is never cut short by a second Ctrl-C — cut, it left a chain
    directory without its MANIFEST, or a traceback. Only signals still at Python's defaults are
    taken, only in the main thread, and the previous handlers come back afterwards. Commands
    that handle the signals themselves (``node run``, ``validator run``, ``chain forge``) install
    their own handlers inside and restore these when they are done."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def raise_once(signum: int, frame: Any) -> None:
        if deferred_where_unsafe(signum, frame):
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {signum: signal.signal(signum, raise_once) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        drop_deferred_signal()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_redelivery: list[threading.Timer] = []
"""The pending re-delivery of a signal that landed where it could not be raised (at most one)."""


def deferred_where_unsafe(signum: int, frame: Any) -> bool:
    """For a signal handler that raises: if the signal interrupted code an exception must not
    cut (:func:`_unsafe_to_interrupt`), deliver it again in a moment and return True (the
    handler then returns without raising). Not at once: it would land in the same frame again."""
    if not _unsafe_to_interrupt(frame):
        return False
    again = threading.Timer(0.002, os.kill, (os.getpid(), signum))
    again.daemon = True  # a process ending meanwhile needs it no more
    _redelivery[:] = [again]
    again.start()
    return True


def drop_deferred_signal() -> None:
    """When a raising handler is uninstalled: a signal still waiting to be delivered again is
    dropped. What it interrupted finished within those milliseconds and reports as finished;
    delivered later, it would reach whatever handler comes back (Python's default raises in the
    middle of the interpreter's exit)."""
    while _redelivery:
        _redelivery.pop().cancel()


def _unsafe_to_interrupt(frame: Any) -> bool:
    """Whether the signal interrupted a ``__del__`` or pycryptodome's ciphers.

    An exception raised in a finalizer never reaches the command: Python prints "Exception
    ignored in … KeyboardInterrupt" and carries on (a library freeing native memory, often), so a
    Ctrl-C landing there (2 of 60 interrupted demos) was lost and the command exited 0.

    pycryptodome's cipher modes take over native memory in Python: the mode's state takes the
    block cipher, and the next line tells the block cipher's own pointer to let go. An exception
    between the two lines leaves both owning it, and it is freed twice: ``free(): double free
    detected``, the process aborted after printing its line (once in a CI run of the interrupted
    demo: every wallet seal and unlock builds AES-GCM so). Only ``Crypto.Cipher``: building a
    cipher takes microseconds, while a deferral across the whole package (ECC's first import is
    ~20 ms of it) let a command finish before the signal found a place to land."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_globals.get("__name__", "").startswith("Crypto.Cipher."):
            return True
        frame = frame.f_back
    return False


def interrupted_by_sigterm(exc: BaseException) -> bool:
    """Whether ``exc`` (or the ``KeyboardInterrupt`` click turned into ``Abort``) is SIGTERM's."""
    return isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated)


@contextlib.contextmanager
def interrupts_reported_as(message: str, when: Callable[[], bool] | None = None) -> Iterator[None]:
    """A Ctrl-C inside is reported as ``message`` (exit 1) instead of the generic "aborted:
    nothing was changed", which stops being true once a tx may have left for the chain: a node
    that is slow to answer has often admitted the tx already, and a user who then presses Ctrl-C
    must not be told to sign it again. With ``when``, only if it says something was changed."""
    try:
        yield
    except (KeyboardInterrupt, click.Abort):
        if when is not None and not when():
            raise
        raise fail(message) from None


def may_have_been_submitted(tx_id: str) -> str:
    """What to tell a user whose command was interrupted after it began to submit ``tx_id``."""
    return (f"interrupted after tx {tx_id} was sent for submission: it may have been accepted; "
            f"`posctl chain tx {tx_id}` says whether it was (do not sign it again before you know)")


def emit(app: AppContext, data: Any, text: Callable[[Any], str] | str | None = None) -> None:
    """Print ``data`` as one JSON document, or as text rendered by ``text``."""
    if app.json_output:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if text is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(text, str):
        click.echo(text)
    else:
        click.echo(text(data))


def echo_json_streaming(data: dict[str, Any], key: str, items: Iterable[tuple[str, Any]]) -> None:
    """Print ``data`` with ``key`` mapping ``items`` exactly as :func:`emit` prints JSON (indent 2,
    sorted keys: ``items`` must come in key order), writing the mapping as it is read: the
    allocations of a million-account genesis are 50 MB of JSON, never held as a dict."""
    head, tail = json.dumps({**data, key: None}, indent=2, sort_keys=True).split(f"{json.dumps(key)}: null", 1)
    out = sys.stdout
    out.write(f"{head}{json.dumps(key)}: ")
    opening = "{\n"
    for name, value in items:
        out.write(f"{opening}    {json.dumps(name)}: {json.dumps(value)}")
        opening = ",\n"
    out.write("{}" if opening == "{\n" else "\n  }")
    out.write(f"{tail}\n")
    out.flush()


OUTPUT_FORMATS = ("text", "json")


def set_json_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """``--json`` (on the root group or on a command): JSON output; never turns it off."""
    if value:
        ctx.ensure_object(AppContext).json_output = True
    return value


def set_output_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``-o/--output text|json``: the last one given wins (root first, then the command)."""
    if value is not None:
        ctx.ensure_object(AppContext).json_output = value == "json"
    return value


def output_options(func: F) -> F:
    """``--json`` and ``-o/--output text|json``, accepted on the root group and on every command
    that prints a result, so ``posctl --json chain status`` == ``posctl chain status --json``
    == ``posctl -o json chain status``."""
    func = click.option(
        "-o", "--output", "output_format", type=click.Choice(OUTPUT_FORMATS), default=None,
        expose_value=False, callback=set_output_format,
        help="Output format: text (default) or json (same as --json).",
    )(func)
    return click.option(
        "--json", "json_flag", is_flag=True, expose_value=False, callback=set_json_flag,
        help="Print exactly one JSON document on stdout.",
    )(func)


def json_option(func: F) -> F:
    """``--json`` and ``-o json`` on a command: set the context's output mode."""
    return output_options(func)


def handles_errors(func: F) -> F:
    """Turn library errors into one-line click errors (exit 1) — never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from ledger.errors import LedgerError
        from wallet.errors import WalletError

        try:
            return func(*args, **kwargs)
        except (LedgerError, WalletError) as exc:
            raise fail(str(exc)) from None
        except PermissionError as exc:
            raise fail(f"permission denied: {exc.filename}: choose another --home or fix its permissions") from None
        except OSError as exc:
            raise fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            url = _node_url_in_use()
            if url is None:
                raise  # with the database opened directly this is a bug: let it be seen
            raise fail(f"the node at {url} sent a reply this posctl cannot read ({type(exc).__name__}: {exc}): "
                       "is it a posctl node of the same version?") from None

    return wrapper  # type: ignore[return-value]


def _node_url_in_use() -> str | None:
    """The URL of the node the current command had a reply from, if any.

    A node's reply is outside data: another posctl version, or whatever else listens on the
    port given to ``--node``, may send JSON of another shape than the views the commands render.
    """
    from cli.node_backend import replied_from

    return replied_from.get()


def refuse_a_home_others_control(home: Path) -> None:
    """Refuse a home, or its ``wallets`` directory, that another user owns or may write to (as
    ssh refuses such a ``~/.ssh``). posctl makes its own 0700, but it used one it found as it
    was: in a home another user had made first (a shared /tmp, as ``POSCTL_HOME=/tmp/pos``), that
    user swapped a wallet file for one of theirs and `wallet send` paid them, planted a
    ``node.json`` naming their own server, and could delete slashing-protection records."""
    for path in (home, home / "wallets"):
        try:
            info = path.stat()
        except OSError:
            continue  # absent (made 0700 when needed), or reported by the command that needs it
        if info.st_uid != os.geteuid():
            raise fail(f"{path} belongs to another user (uid {info.st_uid}): posctl trusts what its home holds, so it "
                       "uses only one of yours; choose another with --home (or POSCTL_HOME)")
        if info.st_mode & 0o022:
            raise fail(f"{path} can be written by other users (mode {info.st_mode & 0o777:o}): posctl trusts what its home "
                       f"holds; run `chmod go-w {shlex.quote(str(path))}` if it is yours, or choose another home")


def check_home_usable(home: Path) -> None:
    """Fail now if ``home`` could not be created or written — without creating anything, so a
    command refused later (no password, Ctrl-C) leaves no empty directory behind."""
    probe = home
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise fail(f"cannot use {home} as the posctl home: {probe} is not a directory; choose another with --home")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise fail(f"cannot use {home} as the posctl home: {probe} is not writable; choose another with --home")


MAX_PASSWORD_FILE_BYTES = 64 * 1024
"""Far above any password; a file beyond it was named by mistake."""


def read_bounded(path: Path, limit: int, what: str, *, dash_is_stdin: bool = False, role: str = "") -> bytes:
    """The bytes of ``path`` if they are at most ``limit``, else a one-line error saying it is
    not ``what``: a mistaken argument (an export of gigabytes, ``/dev/zero``) is not read whole.
    ``role`` names the file in the error when it cannot be read ("password file")."""
    try:
        if dash_is_stdin and str(path) == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                raw = handle.read(limit + 1)
    except OSError as exc:
        raise fail(f"cannot read {role + ' ' if role else ''}{path}: {exc.strerror}") from None
    if len(raw) > limit:
        raise fail(f"{path} is larger than {limit} bytes: it is not {what}")
    return raw


def read_password_file(path: Path, what: str = "password file") -> str:
    """A password from the first line's worth of ``path``: its text without the final newline."""
    raw = read_bounded(path, MAX_PASSWORD_FILE_BYTES, f"a {what}", role=what)
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise fail(f"{what} {path} is not UTF-8 text") from None


def read_password(
    app: AppContext, *, confirm: bool = False, prompt: str = "Wallet password", why: str = ""
) -> str:
    """From ``--password-file``, else ``POSCTL_PASSWORD``, else a hidden prompt."""
    if app.password_file is not None:
        password = read_password_file(app.password_file)
    elif "POSCTL_PASSWORD" in os.environ:
        password = os.environ["POSCTL_PASSWORD"]
    elif not sys.stdin.isatty():
        reason = f" ({why})" if why else ""
        raise fail(f"a password is needed{reason}: set POSCTL_PASSWORD, pass --password-file, or run in a terminal")
    else:
        password = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    if not password:
        raise fail("the password is empty: choose a non-empty password")
    return password


def resolve_account(app: AppContext, who: str, role: str = "account") -> tuple[str, str | None]:
    """(address, wallet name or None) for an account given as a ``pos1…`` address or a wallet name.

    A valid address wins; then a local wallet of that name (index 0 of its first account: 0, or a
    watch-only wallet's own; no password needed, but its public keys must carry this home's
    integrity tag); text that starts like an address but is not one reports the address error
    (typo, checksum), so a mistyped address is never taken for a missing wallet.
    """
    from ledger.crypto.address import is_valid_address, parse_address, starts_like_address
    from wallet.keystore import Keystore
    from wallet.wallet_file import WALLET_NAME_PATTERN

    if is_valid_address(who):
        return parse_address(who), None
    store = Keystore(app.wallets_dir)
    if WALLET_NAME_PATTERN.fullmatch(who) and store.exists(who):
        wallet = store.load_verified(who)
        return wallet.address(wallet.default_account, 0), who  # a watch-only wallet may hold another account
    if starts_like_address(who):
        parse_address(who)  # raises InvalidAddress naming what is wrong
    raise fail(
        f"{role} {who!r} is neither a pos1… address nor a wallet in {app.wallets_dir}: "
        "check the spelling, or list wallets with `posctl wallet list`"
    )
