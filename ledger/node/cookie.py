"""The node's cookie: the secret a privileged route (forging, admin) asks for.

As bitcoind's ``.cookie``: each start writes a new random secret to ``$home/.cookie`` (mode
0600, atomically) and each stop removes it. Whoever can read the file may use the privileged
routes, by sending it as HTTP Basic credentials (``__cookie__:<hex>``); other local users, and web
pages, cannot. Submitting signed transactions and reading stay open on loopback.
"""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path

COOKIE_NAME = ".cookie"
COOKIE_USER = "__cookie__"


def cookie_path(home: Path) -> Path:
    return Path(home) / COOKIE_NAME


def write_cookie(home: Path) -> str:
    """A new secret, written 0600 (temp file, fsync, rename); returns the file's content."""
    content = f"{COOKIE_USER}:{secrets.token_hex(32)}"
    path = cookie_path(home)
    temp = path.with_name(f"{COOKIE_NAME}.{os.getpid()}.tmp")
    try:
        temp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, content.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    return content


def read_cookie(home: Path) -> str | None:
    """The running node's cookie, or ``None`` if there is none (or it cannot be read)."""
    try:
        return cookie_path(home).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def remove_cookie(home: Path, content: str) -> None:
    """Remove the cookie if it is still ours (never a newer node's)."""
    if read_cookie(home) == content:
        try:
            cookie_path(home).unlink()
        except FileNotFoundError:
            pass


def authorization(content: str) -> str:
    """The ``Authorization`` header value that presents ``content``."""
    return "Basic " + base64.b64encode(content.encode("ascii")).decode("ascii")


def presents(header: str | None, content: str) -> bool:
    """True if an ``Authorization`` header carries exactly this cookie (constant-time compare)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(given, content.encode("ascii"))
