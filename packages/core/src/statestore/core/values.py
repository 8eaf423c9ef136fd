"""JSON values: the one place that decides what a store value may be and how it becomes text."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["decode_value", "encode_value"]


class _Invalid(Exception):
    """A part of a value that cannot be stored; containers add their index while it propagates."""

    def __init__(self, error: type[Exception], problem: str) -> None:
        super().__init__(problem)
        self.error = error
        self.problem = problem
        self.path: list[str] = []

    def raise_as_public(self) -> None:
        where = "value" + "".join(reversed(self.path))
        raise self.error(f"{where} {self.problem}") from None


def _check(value: Any) -> None:
    """Raise ``_Invalid`` unless ``value`` (JSON ``null`` allowed here) round-trips exactly through JSON.

    The path to a bad part is built only when there is one, so valid values cost one walk.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Invalid(ValueError, f"is {value!r}; NaN and Infinity are not JSON and cannot be stored")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            try:
                _check(item)
            except _Invalid as bad:
                bad.path.append(f"[{index}]")
                raise
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid(TypeError, f"has a {type(key).__name__} key {key!r}; JSON objects need str keys")
            try:
                _check(item)
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

    ``None`` as the value or NaN/Infinity anywhere raise ``ValueError``; anything that would not
    round-trip exactly (tuples, sets, non-str dict keys, objects) raises ``TypeError``. ``None``
    nested in a list or dict is JSON ``null`` and allowed. Messages name the offending part,
    e.g. ``value['rows'][3] is nan``.
    """
    if value is None:
        raise ValueError("cannot store None; use delete() to remove a key")
    try:
        _check(value)
    except _Invalid as bad:
        bad.raise_as_public()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode_value(text: str) -> Any:
    """Parse stored JSON text back into a value."""
    return json.loads(text)
