"""Injective, traversal-proof names for ``(scope, key)`` pairs, shared by every backend that names things.

Each id becomes one *segment*: every character outside ``[A-Za-z0-9_-]`` is percent-encoded as
UTF-8, so a segment never contains ``/``, ``.``, ``%``-ambiguity or whitespace, ``..`` cannot
appear, and distinct ids give distinct segments. ``~`` is always encoded, which leaves it free
as a marker for shortened names (see :func:`shorten_segment`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_to_bytes

from statestore.core.scopes import AssetScope, StoreScope, TaskScope, check_text

__all__ = [
    "MAX_KEY_LENGTH",
    "VERSION_LENGTH",
    "asset_identity",
    "decode_segment",
    "encode_segment",
    "identity_scope",
    "new_version",
    "parse_path",
    "scope_path",
    "shorten_segment",
    "validate_key",
    "version_written_at",
]

MAX_KEY_LENGTH = 512
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")
_ENCODED = re.compile(r"(?:%[0-9A-F]{2}|[A-Za-z0-9_\-])+")


def validate_key(key: Any) -> str:
    """Return ``key`` if it is a legal store key, else raise ``TypeError``/``ValueError`` saying why.

    Legal: a non-empty ``str`` of at most :data:`MAX_KEY_LENGTH` characters without NUL or lone
    surrogates (:func:`statestore.core.scopes.check_text`); every other character is stored exactly.
    """
    if not isinstance(key, str):
        raise TypeError(f"store keys must be str, got {type(key).__name__}")
    if not key:
        raise ValueError("store keys must be non-empty strings")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"store keys are limited to {MAX_KEY_LENGTH} characters, got {len(key)}")
    check_text("store key", key)
    return key


def encode_segment(text: str) -> str:
    """Percent-encode ``text`` into a path segment made only of ``[A-Za-z0-9_%-]``."""
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), text)


def decode_segment(segment: str) -> str:
    """Invert :func:`encode_segment`; raise ``ValueError`` for anything it could not have produced."""
    if not _ENCODED.fullmatch(segment):
        raise ValueError(f"not an encoded segment: {segment!r}")
    try:
        decoded = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not an encoded segment: {segment!r} is not UTF-8 ({exc.reason})") from None
    if encode_segment(decoded) != segment:
        raise ValueError(f"not a canonical encoded segment: {segment!r}")
    return decoded


def shorten_segment(segment: str, max_bytes: int) -> str:
    """Keep ``segment`` if it fits ``max_bytes``; else a readable head, ``~`` and a SHA-256 of the whole.

    Encoded segments never contain ``~``, so a shortened name never equals an unshortened one.
    """
    if len(segment) <= max_bytes:
        return segment
    digest = hashlib.sha256(segment.encode()).hexdigest()
    head = segment[: max(0, max_bytes - len(digest) - 1)]
    head = head[: head.rfind("%")] if "%" in head[-2:] else head  # never cut an escape in half
    return f"{head}~{digest}"


def asset_identity(scope: AssetScope) -> tuple[str, str]:
    """What identifies an asset: the asset-identity rule, written once for every backend.

    An asset is identified by its ``name`` when it has one, else its ``uri``, else its
    ``asset_id``; the other fields take no part. So ``AssetScope(name=n, uri=u)`` (what Airflow's
    workers send) addresses the same state as ``AssetScope(name=n)``, ``AssetScope(uri=u)`` finds
    only state written under a uri-only scope, and two names sharing a URI never share state.
    Returns ``("name", name)``, ``("uri", uri)`` or ``("id", str(asset_id))``.
    """
    if scope.name:
        return "name", scope.name
    if scope.uri:
        return "uri", scope.uri
    return "id", str(scope.asset_id)


def scope_path(scope: StoreScope, *, all_map_indices: bool = False) -> tuple[str, ...]:
    """The encoded segments naming ``scope`` (without the map index when ``all_map_indices``).

    Task scopes: ``task/<dag>/<run>/<task>/<map_index>``. Asset scopes by their identity
    (:func:`asset_identity`): ``asset/name/<name>``, ``asset/uri/<uri>`` or ``asset/id/<id>``.
    """
    if isinstance(scope, TaskScope):
        head = ("task", encode_segment(scope.dag_id), encode_segment(scope.run_id), encode_segment(scope.task_id))
        return head if all_map_indices else (*head, str(scope.map_index))
    kind, identity = asset_identity(scope)
    return ("asset", kind, identity if kind == "id" else encode_segment(identity))


def identity_scope(scope: StoreScope) -> StoreScope:
    """``scope`` reduced to the fields that identify it (:func:`asset_identity`); task scopes unchanged.

    Backends that key data by scope objects use it so that ``AssetScope(name=n, uri=u)`` and the
    scope parsed back from a reference address the same data.
    """
    if isinstance(scope, TaskScope):
        return scope
    kind, identity = asset_identity(scope)
    if kind == "name":
        return AssetScope(name=identity)
    if kind == "uri":
        return AssetScope(uri=identity)
    return AssetScope(asset_id=scope.asset_id)


def parse_path(segments: list[str] | tuple[str, ...]) -> tuple[StoreScope, str]:
    """Invert ``scope_path(scope) + (encode_segment(key),)``; raise ``ValueError`` if it is not one."""
    parts = list(segments)
    if len(parts) == 6 and parts[0] == "task" and re.fullmatch(r"-1|0|[1-9][0-9]*", parts[4]):
        dag_id, run_id, task_id = (decode_segment(p) for p in parts[1:4])
        return TaskScope(dag_id, run_id, task_id, int(parts[4])), validate_key(decode_segment(parts[5]))
    if len(parts) == 4 and parts[0] == "asset":
        kind, ident, key = parts[1], parts[2], validate_key(decode_segment(parts[3]))
        if kind == "name":
            return AssetScope(name=decode_segment(ident)), key
        if kind == "uri":
            return AssetScope(uri=decode_segment(ident)), key
        if kind == "id" and re.fullmatch(r"0|[1-9][0-9]*", ident):
            return AssetScope(asset_id=int(ident)), key
    raise ValueError(f"not a statestore path: {'/'.join(parts)!r}")


VERSION_LENGTH = 29
"""Characters of a value version: 13 hex digits of milliseconds since the epoch, 16 random hex digits."""
_VERSION = re.compile(r"[0-9a-f]{29}")


def new_version() -> str:
    """A unique, time-ordered name for one write of a worker-side value (``<ms since epoch:013x><random:016x>``).

    The name tells when the value was written, so reconciliation's grace check needs no request.
    """
    return f"{time.time_ns() // 1_000_000:013x}{secrets.token_hex(8)}"


def version_written_at(version: str) -> datetime:
    """When the value of ``version`` was written (aware UTC); ``ValueError`` if it is not a version."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ValueError(f"not a value version: {version!r}")
    return datetime.fromtimestamp(int(version[:13], 16) / 1000, timezone.utc)
