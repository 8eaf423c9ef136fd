"""End to end through StateStore: Redis as [workers] state_backend (SQLite metastore server), and as server backend."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from statestore.core import NEVER_EXPIRE, AssetScope, Config, StateStore, TaskScope
from statestore.core.naming import scope_path
from statestore.redis import RedisStoreBackend

TASK = TaskScope("etl", "run-1", "load", 2)


@pytest.fixture(params=["redis", "statestore.redis.RedisStoreBackend"])
def worker_store(request: pytest.FixtureRequest, tmp_path: Path, redis_section: dict[str, str]) -> StateStore:
    """Metastore (SQLite) on the server, Redis on the worker; the class path goes through Airflow's alias."""
    worker_key = "state_backend" if request.param == "redis" else "state_store_backend"
    config = Config.from_dict(
        {
            "state_store": {"backend": "metastore", "sql_alchemy_conn": f"sqlite:///{tmp_path}/meta.db"},
            "workers": {worker_key: request.param},
            "statestore_redis": redis_section,
        }
    )
    return StateStore.from_config(config)


@pytest.fixture(params=["redis", "statestore.redis.RedisStoreBackend"])
def server_store(request: pytest.FixtureRequest, redis_section: dict[str, str]) -> StateStore:
    config = Config.from_dict(
        {"state_store": {"backend": request.param, "default_retention_days": "2"}, "statestore_redis": redis_section}
    )
    return StateStore.from_config(config)


def versions(worker: RedisStoreBackend) -> dict[str, str]:
    """Every worker-side version the backend holds, as {Redis key: its scope path and key}."""
    found = {}
    for page in worker.iter_values():
        for value in page:
            name = value.reference.removeprefix("redis://")
            scope, key, _ = worker.layout.parse_version_key(name)
            found[name] = f"{scope_path(scope)[-1]}/{key}"
    return found


def row_reference(store: StateStore, scope: TaskScope | AssetScope, key: str) -> str:
    row = store.backend.get(scope, key)
    assert row is not None
    return str(json.loads(row)["__airflow_state_ref__"])


def test_worker_backend_keeps_the_value_and_the_server_row_only_the_reference(
    worker_store: StateStore, admin: redis.Redis, redis_section: dict[str, str]
) -> None:
    assert isinstance(worker_store.worker_backend, RedisStoreBackend)
    value = {"rows": list(range(100))}
    worker_store.task_store(TASK).set("checkpoint", value)
    reference = row_reference(worker_store, TASK, "checkpoint")
    assert reference.startswith(f"redis://{redis_section['key_prefix']}ref:{{task/etl/run-1/load}}/2/checkpoint/")
    redis_key = reference.removeprefix("redis://")
    assert json.loads(admin.get(redis_key).partition(":")[2]) == value
    # [state_store] default_retention_days = 30, plus the one-day margin: the value never expires before its row.
    assert 30 * 86_400_000 < admin.pttl(redis_key) <= 31 * 86_400_000
    assert worker_store.task_store(TASK).get("checkpoint") == value
    worker_store.task_store(TASK).set("checkpoint", "newer")
    assert admin.exists(redis_key) == 1  # the old version stays until its row's delete (or reconciliation)
    assert worker_store.task_store(TASK).get("checkpoint") == "newer"


def test_worker_delete_and_clear_remove_row_and_exactly_its_version(
    worker_store: StateStore, admin: redis.Redis
) -> None:
    worker = worker_store.worker_backend
    assert isinstance(worker, RedisStoreBackend)
    ts = worker_store.task_store(TASK)
    for key in ("a", "b", "c"):
        ts.set(key, key * 10)
    worker_store.task_store(TaskScope("etl", "run-1", "load", 3)).set("other", "o")
    named_a = row_reference(worker_store, TASK, "a").removeprefix("redis://")
    ts.delete("a")
    assert worker_store.backend.get(TASK, "a") is None
    assert admin.exists(named_a) == 0
    assert sorted(versions(worker).values()) == ["2/b", "2/c", "3/other"]
    ts.clear()
    assert worker_store.backend.keys(TASK) == []
    assert len(versions(worker)) == 1
    assert worker_store.task_store(TaskScope("etl", "run-1", "load", 3)).get("other") == "o"


def test_worker_clear_on_success(worker_store: StateStore) -> None:
    worker = worker_store.worker_backend
    assert isinstance(worker, RedisStoreBackend)

    def failing_attempt() -> None:
        with worker_store.task_attempt(TASK, clear_on_success=True) as ts:
            ts.set("progress", 0.5)
            raise RuntimeError("attempt failed")

    with pytest.raises(RuntimeError, match="attempt failed"):
        failing_attempt()
    assert len(versions(worker)) == 1  # kept for the retry
    with worker_store.task_attempt(TASK, clear_on_success=True) as ts:
        assert ts.get("progress") == 0.5
    assert versions(worker) == {}
    assert worker_store.backend.keys(TASK) == []


async def test_worker_async_assets(worker_store: StateStore) -> None:
    worker = worker_store.worker_backend
    assert isinstance(worker, RedisStoreBackend)
    orders = worker_store.asset_store(name="orders")
    await orders.aset("watermark", {"ts": "2024-01-01T00:00:00Z"})
    reference = row_reference(worker_store, AssetScope(name="orders"), "watermark")
    assert reference.startswith(f"redis://{worker.key_prefix}ref:{{asset/name/orders}}/watermark/")
    assert (await orders.aget("watermark")) == {"ts": "2024-01-01T00:00:00Z"}
    await orders.aclear()
    assert await orders.aget("watermark") is None
    assert versions(worker) == {}
    await worker.aclose()


def test_server_backend_stores_values_inline_with_native_expiry(server_store: StateStore, admin: redis.Redis) -> None:
    backend = server_store.backend
    assert isinstance(backend, RedisStoreBackend)
    ts = server_store.task_store(TASK)
    ts.set("job", {"id": "j-1"})
    ts.set("short", 1, retention=timedelta(seconds=30))
    ts.set("forever", True, retention=NEVER_EXPIRE)
    assert ts.get("job") == {"id": "j-1"}
    assert 86_000_000 < admin.pttl(backend.layout.value_key(TASK, "job")) <= 2 * 86_400_000
    assert 0 < admin.pttl(backend.layout.value_key(TASK, "short")) <= 30_000
    assert admin.pttl(backend.layout.value_key(TASK, "forever")) == -1
    assert ts.keys() == ["forever", "job", "short"]
    ts.clear()
    assert ts.keys() == []
    assert ts.get("job", default="gone") == "gone"


def test_server_backend_task_attempts_and_assets(server_store: StateStore) -> None:
    with server_store.task_attempt(TASK, clear_on_success=True) as ts:
        ts.set("progress", 1)
        assert ts.get("progress") == 1
    assert server_store.task_store(TASK).get("progress") is None
    assets = server_store.asset_stores(inlets=["orders"], outlets=[])
    assets.set("cursor", 42)
    assert server_store.asset_store(name="orders").get("cursor") == 42
    assert server_store.asset_store(uri="orders").get("cursor") is None  # identity: name first, then uri


async def test_server_backend_async(server_store: StateStore) -> None:
    ts = server_store.task_store(TASK)
    await ts.aset("k", [1, 2, 3])
    assert await ts.aget("k") == [1, 2, 3]
    await ts.adelete("k")
    assert await ts.aget("k") is None
    backend = server_store.backend
    assert isinstance(backend, RedisStoreBackend)
    await backend.aclose()


def test_one_redis_location_serves_both_roles(redis_section: dict[str, str]) -> None:
    """Versions live under ``<prefix>ref:``, which the server role never writes: one url and prefix for both."""
    section = Config.from_dict({"statestore_redis": redis_section})
    store = StateStore(backend="redis", worker_backend="redis", config=section)
    ts = store.task_store(TASK)
    ts.set("k", {"v": 1})
    assert ts.get("k") == {"v": 1}
    reference = row_reference(store, TASK, "k")
    assert reference.startswith(f"redis://{redis_section['key_prefix']}ref:")
    ts.delete("k")
    assert ts.get("k") is None
    worker = store.worker_backend
    assert isinstance(worker, RedisStoreBackend)
    assert versions(worker) == {}
