"""The one canonical byte form of every object, and the hashes taken over it.

Canonical JSON: sorted keys, no whitespace, ASCII only, integers only (no floats, and booleans
are not numbers), bytes as lowercase hex strings chosen by each type. Decoding accepts only
input that re-encodes to exactly the same bytes, so no object has two encodings and therefore
no transaction or block has two ids.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ledger.errors import EncodingError

Hash32 = bytes
"""A 32-byte SHA-256 digest."""


def _describe_problem(value: Any, path: str) -> str | None:
    """Where and why a value has no canonical form (slow path, only run after a refusal)."""
    if isinstance(value, bool) or value is None:
        return f"{path}: {value!r} is not allowed in the canonical form"
    if isinstance(value, float):
        return f"{path}: floats are not allowed, use an integer"
    if isinstance(value, (int, str)):
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: object keys must be strings"
            problem = _describe_problem(item, f"{path}.{key}")
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _describe_problem(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    return f"{path}: {type(value).__name__} has no canonical encoding"


def _is_canonical_value(value: Any) -> bool:
    """Fast check on the hot path: exact types only (a bool is not an int here). Leaves are
    tested in the loop rather than by a call each: every block, tx and state entry passes here."""
    kind = type(value)
    if kind is int or kind is str:
        return True
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            leaf = type(item)
            if leaf is not int and leaf is not str and not _is_canonical_value(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:
            leaf = type(item)
            if leaf is not int and leaf is not str and not _is_canonical_value(item):
                return False
        return True
    return False


def _check_value(value: Any, path: str) -> None:
    if not _is_canonical_value(value):
        raise EncodingError(_describe_problem(value, path) or f"{path}: no canonical encoding")


def encode(obj: Any) -> bytes:
    """Return the canonical bytes of a JSON-shaped object of dicts, lists, str and int."""
    _check_value(obj, "$")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json.loads``: Python keeps the last of two equal keys silently."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise EncodingError(f"duplicate field {key!r}")
        result[key] = value
    return result


def _reject_float(text: str) -> Any:
    raise EncodingError(f"number {text} is not an integer: floats are not allowed")


def _reject_constant(text: str) -> Any:
    raise EncodingError(f"{text} is not allowed in the canonical form")


def json_error_text(exc: ValueError | RecursionError) -> str:
    """What ``json.loads`` refused, in words meant for the person who sent it.

    Python's own message for an integer of over 4,300 digits tells the reader to call
    ``sys.set_int_max_str_digits()``, which no user of ours can or should do.
    """
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    if "integer string conversion" in text:
        return "a number has thousands of digits, far above any amount"
    return text


def decode(data: bytes) -> Any:
    """Parse canonical bytes; anything that would not re-encode identically is refused."""
    if not isinstance(data, (bytes, bytearray)):
        raise EncodingError("canonical data must be bytes")
    try:
        text = bytes(data).decode("ascii")
    except UnicodeDecodeError:
        raise EncodingError("not ASCII: the canonical form escapes every non-ASCII character") from None
    try:
        obj = json.loads(
            text,
            object_pairs_hook=reject_duplicate_keys,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except EncodingError:
        raise
    except (ValueError, RecursionError) as exc:
        raise EncodingError(f"not valid JSON: {json_error_text(exc)}") from None
    if encode(obj) != bytes(data):
        raise EncodingError("not in canonical form (sorted keys, no whitespace, minimal escapes)")
    return obj


def decode_stored(data: bytes) -> Any:
    """Parse an entry this ledger wrote itself (state, tip): strict JSON, integers only,
    without :func:`decode`'s re-encoding check.

    That check exists so that no object can have two ids; stored state entries have no id,
    the state root hashes their exact bytes, and ``verify`` compares those bytes with a
    replay, so an edited entry is still caught — while every block reads hundreds of them.
    """
    try:
        return json.loads(
            bytes(data).decode("ascii"),
            object_pairs_hook=reject_duplicate_keys,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except EncodingError:
        raise
    except UnicodeDecodeError as exc:
        raise EncodingError(f"stored entry is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise EncodingError(f"stored entry is not valid JSON: {json_error_text(exc)}") from None


def sha256(data: bytes) -> Hash32:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: str, data: bytes) -> Hash32:
    """SHA-256 with a domain tag (BIP-340 style), so a tx id can never equal a block hash."""
    tag_digest = hashlib.sha256(tag.encode("ascii")).digest()
    return hashlib.sha256(tag_digest + tag_digest + data).digest()


def tagged_hasher(tag: str) -> "hashlib._Hash":
    """A SHA-256 primed as :func:`tagged_hash` primes it, for data that arrives in parts:
    ``tagged_hasher(tag)`` updated with ``data`` digests to ``tagged_hash(tag, data)``."""
    tag_digest = hashlib.sha256(tag.encode("ascii")).digest()
    return hashlib.sha256(tag_digest + tag_digest)


def tagged_preimage(tag: str, data: bytes) -> bytes:
    """The exact bytes :func:`tagged_hash` hashes, for signers that hash internally."""
    tag_digest = hashlib.sha256(tag.encode("ascii")).digest()
    return tag_digest + tag_digest + data


def hex_to_bytes(value: Any, field: str, length: int | None = None) -> bytes:
    """Parse a canonical lowercase-hex field, naming the field when it is wrong."""
    if not isinstance(value, str):
        raise EncodingError(f"field {field!r} must be a hex string")
    if value != value.lower():
        raise EncodingError(f"field {field!r} must be lowercase hex")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise EncodingError(f"field {field!r} is not valid hex") from None
    if raw.hex() != value:
        raise EncodingError(f"field {field!r} is not canonical hex")
    if length is not None and len(raw) != length:
        raise EncodingError(f"field {field!r} must be {length} bytes, got {len(raw)}")
    return raw


def require_int(value: Any, field: str) -> int:
    """An integer field; a boolean is not an integer here even though Python says it is."""
    if type(value) is not int:
        raise EncodingError(f"field {field!r} must be an integer, got {type(value).__name__}")
    return value


def require_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise EncodingError(f"field {field!r} must be a string, got {type(value).__name__}")
    return value


def require_fields(obj: Any, required: set[str], what: str) -> dict[str, Any]:
    """An object with exactly these fields: a missing or an extra one is named."""
    if not isinstance(obj, dict):
        raise EncodingError(f"{what} must be a JSON object")
    missing = sorted(required - set(obj))
    if missing:
        raise EncodingError(f"{what} is missing field {missing[0]!r}")
    extra = sorted(set(obj) - required)
    if extra:
        raise EncodingError(f"{what} has unknown field {extra[0]!r}")
    return obj
