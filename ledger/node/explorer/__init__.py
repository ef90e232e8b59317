"""The block explorer: static pages the node serves to browsers, reading the node's own JSON API.

The files next to this module (``index.html``, ``app.js`` and the modules it imports, ``style.css``,
``icon.svg``) are plain hand-written HTML, JavaScript and CSS: no framework, no CDN, no third-party
code, charts drawn as SVG by ``charts.js``. They ship as package data, so a non-editable ``pip install`` serves them too.

``GET /`` answers the explorer page to a browser (an ``Accept`` header naming ``text/html``) and the
JSON route index to everyone else (posctl, curl, tests); the other files are ``GET /explorer/<name>``.
Every explorer response carries a Content-Security-Policy that allows this origin only, so the
pages can load nothing from, nor send anything to, anywhere else.
"""

from __future__ import annotations

import functools
from importlib import resources

ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
"""Every file the explorer serves, with its media type: a fixed list, so no path is ever built
from a request."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""This origin only: no inline script or style, no frames, no request to any other host."""

HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
"""Sent with every explorer file (``no-cache``: a browser revalidates, so an upgraded node is
seen at once)."""


def wants_html(accept: str | None) -> bool:
    """True if an ``Accept`` header names ``text/html``: a browser navigating to the node.

    posctl and the tests send ``application/json`` or nothing, and keep getting the JSON index.
    """
    return accept is not None and "text/html" in accept.lower()


@functools.lru_cache(maxsize=None)
def asset(name: str) -> tuple[bytes, str] | None:
    """The file's bytes and media type, or None if ``name`` is not one of :data:`ASSETS`."""
    media_type = ASSETS.get(name)
    if media_type is None:
        return None
    return (resources.files(__name__) / name).read_bytes(), media_type


__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "HEADERS", "asset", "wants_html"]
