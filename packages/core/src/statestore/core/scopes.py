"""Scope types: which task instance or asset a piece of state belongs to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = ["NEVER_EXPIRE", "AssetScope", "StoreScope", "TaskScope", "to_scope"]


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
        if isinstance(self.map_index, bool) or not isinstance(self.map_index, int):
            raise ValueError(f"TaskScope.map_index must be an int, got {self.map_index!r}")
        if self.map_index < -1:
            raise ValueError(f"TaskScope.map_index must be -1 (unmapped) or >= 0, got {self.map_index}")


@dataclass(frozen=True)
class AssetScope:
    """The state namespace of an asset, addressed by ``asset_id``, ``name`` or ``uri``."""

    asset_id: int | None = None
    name: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if self.asset_id is None and not self.name and not self.uri:
            raise ValueError("AssetScope requires at least one of: asset_id, name or uri")
        if self.asset_id is not None and (isinstance(self.asset_id, bool) or not isinstance(self.asset_id, int)):
            raise ValueError(f"AssetScope.asset_id must be an int, got {self.asset_id!r}")
        for field in ("name", "uri"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"AssetScope.{field} must be a string, got {value!r}")


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
