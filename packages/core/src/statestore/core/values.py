"""JSON values: the one place that decides what a store value may be and how it becomes text."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Final

from statestore.core.scopes import check_text

__all__ = ["MAX_DEPTH", "check_value_text", "decode_value", "encode_value"]

MAX_DEPTH: Final = 100
"""Most levels of lists and dicts nested in one value (``[]`` is one level, ``[[1]]`` two).

Python's ``json`` recurses once per level on both encode and decode, against the interpreter's
recursion limit (1000 frames, shared with the caller's stack): a bound far below it guarantees that
whatever statestore writes can be read back, by statestore and by Airflow.
"""
_TOO_DEEP = (
    f"is nested more than {MAX_DEPTH} levels deep (lists and dicts within each other); statestore refuses "
    "it so that it can always be read back: flatten it, or store the deep part as a JSON string"
)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_PAIRS = bytes.maketrans(b"[{]}", b"(())")


class _Invalid(Exception):
    """A part of a value that cannot be stored; containers add their index while it propagates."""

    def __init__(self, error: type[Exception], problem: str) -> None:
        super().__init__(problem)
        self.error = error
        self.problem = problem
        self.path: list[str] = []

    def raise_as_public(self) -> None:
        path = self.path[::-1]
        where = "value" + "".join(path if len(path) <= 6 else [*path[:3], "...", *path[-2:]])
        raise self.error(f"{where} {self.problem}") from None


def _check(value: Any, depth: int = 1) -> None:
    """Raise ``_Invalid`` unless ``value`` (JSON ``null`` allowed here) round-trips exactly through JSON.

    ``depth`` is the nesting level ``value`` would open if it is a container. The path to a bad
    part is built only when there is one, so valid values cost one walk.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid(ValueError, f"is {value!r}; NaN and Infinity are not JSON and cannot be stored")
    elif isinstance(value, (list, dict)) and depth > MAX_DEPTH:
        raise _Invalid(ValueError, _TOO_DEEP)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                _check(item, depth + 1)
            except _Invalid as bad:
                bad.path.append(f"[{index}]")
                raise
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(TypeError, f"has a {type(key).__name__} key {key!r}; JSON objects need str keys")
            try:
                _check(item, depth + 1)
            except _Invalid as bad:
                bad.path.append(f"[{key!r}]")
                raise
    else:
        raise _Invalid(
            TypeError,
            f"is a {type(value).__name__}, which is not JSON-compatible "
            "(use str, int, float, bool, list or dict with str keys)",
        )


def encode_value(value: Any) -> str:
    """Validate a store value and return its compact JSON text.

    ``None`` as the value, NaN/Infinity anywhere or nesting deeper than :data:`MAX_DEPTH` raise
    ``ValueError``; anything that would not round-trip exactly (tuples, sets, non-str dict keys,
    objects) raises ``TypeError``. ``None`` nested in a list or dict is JSON ``null`` and allowed.
    Messages name the offending part, e.g. ``value['rows'][3] is nan``. Strings holding lone
    surrogates (``os.fsdecode`` of undecodable bytes) are written with JSON escapes, so they
    round-trip exactly too.
    """
    if value is None:
        raise ValueError("cannot store None; use delete() to remove a key")
    try:
        _check(value)
    except _Invalid as bad:
        bad.raise_as_public()
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape everything non-ASCII instead
            text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text


EARLIEST_EXPIRY = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
"""The earliest ``expires_at`` a backend accepts: native expiry (Redis ``PXAT``) needs a positive Unix time."""
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=timezone.utc)
"""The latest ``expires_at`` a backend accepts: room below ``datetime.max`` for margins added to it."""


def check_value_text(text: str) -> None:
    """Refuse JSON text that no store can hold or that could not be read back (backends call it before writing).

    Valid JSON never holds a raw NUL (control characters inside strings must be escaped), nor
    can any store hold a lone surrogate; and nesting is limited to :data:`MAX_DEPTH` levels. The
    depth is counted only when the text has more than ``MAX_DEPTH`` brackets, so the usual case
    costs two ``str.count`` calls.
    """
    check_text("value text", text)
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    # C-speed passes only: drop escaped backslashes, then escaped quotes (left to right, as JSON
    # reads escapes), so every quote left delimits a string; keep only brackets and quotes (bytes of
    # multi-byte UTF-8 characters are never ASCII); drop the strings; remove one level per pass.
    data = text.encode("utf-8")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(data.translate(None, _NOT_STRUCTURE).split(b'"')[::2]).translate(_PAIRS)
    for _ in range(MAX_DEPTH):
        brackets = brackets.replace(b"()", b"")
        if not brackets:
            return
    raise ValueError(f"value text {_TOO_DEEP}")


def decode_value(text: str) -> Any:
    """Parse stored JSON text back into a value; ``ValueError`` for text nested too deep to parse.

    statestore never writes such text (see :data:`MAX_DEPTH`), but other software writing to the same
    storage may: its value is refused with a clear error instead of Python's ``RecursionError``.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(
            "stored value text is nested too deep for Python's JSON parser to read (statestore writes at most "
            f"{MAX_DEPTH} levels, so other software wrote it): rewrite or delete it with that software"
        ) from None


def check_expires_at(expires_at: Any) -> datetime | None:
    """``expires_at`` as an aware UTC datetime within the range every store can hold, or None (never)."""
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime):
        raise TypeError(f"expires_at must be an aware datetime or None, got {type(expires_at).__name__}")
    if expires_at.tzinfo is None or expires_at.utcoffset() is None:
        raise ValueError("expires_at must be timezone-aware (UTC); got a naive datetime")
    if not EARLIEST_EXPIRY <= expires_at <= LATEST_EXPIRY:
        raise ValueError(
            f"expires_at must be between {EARLIEST_EXPIRY.isoformat()} (stores with native expiry take a positive "
            f"Unix time; any past instant already means expired) and {LATEST_EXPIRY.isoformat()}, got "
            f"{expires_at.isoformat()}"
        )
    return expires_at.astimezone(timezone.utc)


def check_value(value: Any) -> str:
    """``value`` if it is JSON text a store can hold (see :func:`check_value_text`); else TypeError/ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"backend values are JSON text (str), got {type(value).__name__}; use StateStore for objects")
    check_value_text(value)
    return value
