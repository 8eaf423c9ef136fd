"""BaseStoreBackend conveniences: async twins off the loop, legacy hook names, retention in hooks, normalisation."""

from __future__ import annotations

import asyncio
import threading
import uuid
from datetime import datetime
from typing import Any

import pytest

from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.base import StoredEntry
from statestore.core.config import Config
from statestore.core.scopes import AssetScope, StoreScope, TaskScope
from statestore.core.testing import AirflowLikeAssetScope, AirflowLikeTaskScope

TASK = TaskScope("d", "r", "t", 1)


def memory(**state_store: Any) -> MemoryStoreBackend:
    return MemoryStoreBackend(config=Config.from_dict({"state_store": state_store}))


class WaitsForTheLoop(MemoryStoreBackend):
    """Its sync primitive waits until a coroutine has run: it deadlocks if called on the event loop."""

    def __init__(self) -> None:
        super().__init__(config=Config.from_dict({}))
        self.loop_ran = threading.Event()

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        assert self.loop_ran.wait(5), "the event loop was blocked while the sync primitive ran"
        return super()._get(scope, key, session)


@pytest.mark.asyncio
async def test_async_twins_run_sync_primitives_off_the_loop() -> None:
    backend = WaitsForTheLoop()
    backend.set(TASK, "k", '"v"')

    async def mark_loop_alive() -> None:
        await asyncio.sleep(0)
        backend.loop_ran.set()

    value, _ = await asyncio.gather(backend.aget(TASK, "k"), mark_loop_alive())
    assert value == '"v"'


def test_primitives_only_see_statestore_scopes() -> None:
    seen: list[type] = []

    class Recording(MemoryStoreBackend):
        def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
            seen.append(type(scope))
            super()._set(scope, key, value, expires_at, session)

    backend = Recording(config=Config.from_dict({}))
    backend.set(AirflowLikeTaskScope("d", "r", "t", 1), "k", "1")
    backend.set(AirflowLikeAssetScope(name="a"), "k", "2")
    assert seen == [TaskScope, AssetScope]
    assert backend.get(TASK, "k") == "1"
    assert backend.get(AssetScope(name="a"), "k") == "2"


def test_legacy_hook_names_are_honoured() -> None:
    calls: list[tuple[str, Any]] = []

    class Legacy(MemoryStoreBackend):
        def serialize_task_store_to_ref(self, *, value: Any, key: str, ti_id: uuid.UUID) -> str:
            calls.append(("task", ti_id))
            return f"legacy:{ti_id}:{key}:{value}"

        def deserialize_task_store_from_ref(self, stored: str) -> Any:
            return stored.rsplit(":", 1)[1]

        def serialize_asset_store_to_ref(self, *, value: Any, key: str, asset_ref: str) -> str:
            calls.append(("asset", asset_ref))
            return f"asset:{asset_ref}:{key}"

        def deserialize_asset_store_from_ref(self, stored: str) -> Any:
            return stored

    backend = Legacy(config=Config.from_dict({}))
    ref = backend.serialize_task_state_store_to_ref(value="v", key="k", scope=AirflowLikeTaskScope("d", "r", "t", 1))  # type: ignore[arg-type]
    again = backend.serialize_task_state_store_to_ref(value="v", key="k", scope=TASK)
    other = backend.serialize_task_state_store_to_ref(value="v", key="k", scope=TaskScope("d", "r", "t", 2))
    assert ref == again != other, "ti_id is a deterministic function of the task scope"
    assert backend.deserialize_task_state_store_from_ref(ref) == "v"
    asset_ref = backend.serialize_asset_state_store_to_ref(value=1, key="k", scope=AssetScope(name="n", uri="u"))
    assert asset_ref == "asset:n:k"
    assert backend.deserialize_asset_state_store_from_ref(asset_ref) == "asset:n:k"
    assert [kind for kind, _ in calls] == ["task", "task", "task", "asset"]
    assert isinstance(calls[0][1], uuid.UUID)


@pytest.mark.parametrize("days", [2, 0])
def test_hooks_write_values_without_expiry(days: int) -> None:
    """Airflow's hooks know no retention: whatever default_retention_days says, their values carry no expiry."""
    backend = memory(default_retention_days=days)
    backend.serialize_task_state_store_to_ref(value=[1], key="k", scope=TASK)
    assert backend._get(TASK, "k", None) == StoredEntry("[1]", None), "the row's expiry is the server's business"
    backend.serialize_asset_state_store_to_ref(value=[1], key="k", scope=AssetScope(name="a"))
    assert backend._get(AssetScope(name="a"), "k", None) == StoredEntry("[1]", None), "asset values never expire"


def test_default_reference_shape_and_repr() -> None:
    backend = memory()
    assert backend.reference_for(TaskScope("a/b", "r", "t"), "k:1") == "memory://task/a%2Fb/r/t/-1/k%3A1"
    assert backend.reference_for(AssetScope(name="n", uri="u"), "k") == "memory://asset/name/n/k"
    assert repr(backend) == f"MemoryStoreBackend('memory://{id(backend):x}')"
