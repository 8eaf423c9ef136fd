"""Scope types: which task instance or asset a piece of state belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "MAX_ASSET_ID",
    "MAX_MAP_INDEX",
    "NEVER_EXPIRE",
    "AssetScope",
    "StoreScope",
    "TaskScope",
    "check_text",
    "to_scope",
]

MAX_MAP_INDEX: Final = 2**31 - 1
"""Largest ``map_index``: Airflow's ``task_instance.map_index`` column is a 32-bit integer."""
MAX_ASSET_ID: Final = 2**31 - 1
"""Largest ``asset_id``: Airflow's ``asset.id`` column is a 32-bit integer."""


def check_text(what: str, text: str) -> None:
    """Refuse text that no store can hold: a NUL character or a lone surrogate (not encodable as UTF-8).

    The one rule for keys, scope ids and value text on every backend: PostgreSQL ``text`` (and
    Airflow's own database) cannot hold NUL, and every store names or stores text as UTF-8.
    Every other character is legal and stored exactly.
    """
    nul = text.find("\x00")
    if nul >= 0:
        raise ValueError(
            f"{what} contains a NUL character (\\x00) at position {nul}; no store can hold it "
            "(PostgreSQL text and Airflow's database refuse it): remove or replace it"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{what} contains a lone surrogate {text[exc.start]!r} at position {exc.start}, which is not "
                "valid Unicode and cannot be stored as UTF-8: decode the text it came from correctly"
            ) from None


@dataclass(frozen=True)
class TaskScope:
    """The state namespace of one task instance; ``map_index=-1`` for an unmapped task."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    def __post_init__(self) -> None:
        for field in ("dag_id", "run_id", "task_id"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value:
                raise ValueError(f"TaskScope.{field} must be a non-empty string, got {value!r}")
            check_text(f"TaskScope.{field}", value)
        if isinstance(self.map_index, bool) or not isinstance(self.map_index, int):
            raise ValueError(f"TaskScope.map_index must be an int, got {self.map_index!r}")
        if not -1 <= self.map_index <= MAX_MAP_INDEX:
            raise ValueError(
                f"TaskScope.map_index must be -1 (unmapped) or 0..{MAX_MAP_INDEX} "
                f"(Airflow's map index is a 32-bit integer), got {self.map_index}"
            )


@dataclass(frozen=True)
class AssetScope:
    """The state namespace of an asset, identified by its ``name``, else its ``uri``, else its ``asset_id``.

    The fields after the identifying one do not take part in addressing: ``AssetScope(name=n,
    uri=u)`` and ``AssetScope(name=n)`` are the same asset, ``AssetScope(uri=u)`` is another, so two
    names sharing a URI never share state (see :func:`statestore.core.naming.identity_scope`).
    """

    asset_id: int | None = None
    name: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if self.asset_id is None and not self.name and not self.uri:
            raise ValueError("AssetScope requires at least one of: asset_id, name or uri")
        if self.asset_id is not None:
            if isinstance(self.asset_id, bool) or not isinstance(self.asset_id, int):
                raise ValueError(f"AssetScope.asset_id must be an int, got {self.asset_id!r}")
            if not 0 <= self.asset_id <= MAX_ASSET_ID:
                raise ValueError(
                    f"AssetScope.asset_id must be 0..{MAX_ASSET_ID} (Airflow's asset id is a 32-bit integer), "
                    f"got {self.asset_id}"
                )
        for field in ("name", "uri"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"AssetScope.{field} must be a string, got {value!r}")
            if value:
                check_text(f"AssetScope.{field}", value)


StoreScope = TaskScope | AssetScope


class _NeverExpire:
    """Sentinel ``retention`` meaning "this key never expires" (compared by identity)."""

    _instance: _NeverExpire | None = None

    def __new__(cls) -> _NeverExpire:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEVER_EXPIRE"

    def __reduce__(self) -> str:
        return "NEVER_EXPIRE"


NEVER_EXPIRE: Final = _NeverExpire()


def to_scope(scope: Any) -> StoreScope:
    """Normalise any task or asset scope object (ours, Airflow's, a later Airflow's) to a statestore scope.

    Airflow's scopes are dataclasses with the same field names; later versions may add fields
    (``region_id``) that do not change identity here, so only the known fields are read.
    """
    if isinstance(scope, (TaskScope, AssetScope)):
        return scope
    if all(hasattr(scope, f) for f in ("dag_id", "run_id", "task_id")):
        map_index = getattr(scope, "map_index", -1)
        return TaskScope(scope.dag_id, scope.run_id, scope.task_id, -1 if map_index is None else map_index)
    if any(hasattr(scope, f) for f in ("asset_id", "name", "uri")):
        return AssetScope(
            asset_id=getattr(scope, "asset_id", None),
            name=getattr(scope, "name", None),
            uri=getattr(scope, "uri", None),
        )
    raise TypeError(
        f"expected a TaskScope or AssetScope (or an object with the same fields), got {type(scope).__name__}"
    )
