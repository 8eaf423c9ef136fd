"""JSON values: the one place that decides what a store value may be and how it becomes text."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["decode_value", "encode_value"]


def _check(value: Any, path: str) -> None:
    """Raise unless ``value`` (JSON ``null`` allowed here) round-trips exactly through JSON."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value!r}; NaN and Infinity are not JSON and cannot be stored")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path} has a {type(key).__name__} key {key!r}; JSON objects need str keys")
            _check(item, f"{path}[{key!r}]")
    else:
        raise TypeError(
            f"{path} is a {type(value).__name__}, which is not JSON-compatible "
            "(use str, int, float, bool, list or dict with str keys)"
        )


def encode_value(value: Any) -> str:
    """Validate a store value and return its compact JSON text.

    ``None`` as the value or NaN/Infinity anywhere raise ``ValueError``; anything that would not
    round-trip exactly (tuples, sets, non-str dict keys, objects) raises ``TypeError``. ``None``
    nested in a list or dict is JSON ``null`` and allowed.
    """
    if value is None:
        raise ValueError("cannot store None; use delete() to remove a key")
    _check(value, "value")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode_value(text: str) -> Any:
    """Parse stored JSON text back into a value."""
    return json.loads(text)
