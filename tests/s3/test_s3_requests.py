"""Request economy, counted with botocore's event hooks: 1 per get/set/delete, ceil(N/1000) list + delete per clear."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from statestore.core import AssetScope, TaskScope

TASK = TaskScope("dag", "run", "task")


def fill(backend: Any, scope: Any, count: int) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: backend.set(scope, f"k{i}", str(i)), range(count)))


@pytest.mark.parametrize("scope", [TASK, AssetScope(name="a")], ids=["task", "asset"])
def test_one_request_per_get_set_delete(
    scope: Any, make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend()
    counted = requests_of(backend)
    for operation, expected in (
        (lambda: backend.set(scope, "k", '"v"'), "PutObject"),
        (lambda: backend.get(scope, "k"), "GetObject"),
        (lambda: backend.delete(scope, "k"), "DeleteObject"),
        (lambda: backend.get(scope, "k"), "GetObject"),  # missing: still one request, no HEAD
        (lambda: backend.delete(scope, "k"), "DeleteObject"),  # missing: no-op, one request
    ):
        counted.clear()
        operation()
        assert counted.operations() == [expected]


def test_expired_get_is_one_request(make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]) -> None:
    backend = make_backend()
    backend.set(TASK, "k", "1", expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    counted = requests_of(backend)
    assert backend.get(TASK, "k") is None
    assert counted.operations() == ["GetObject"]


async def test_one_request_per_async_operation(
    make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend()
    counted = requests_of(backend)
    await backend.aset(TASK, "k", '"v"')
    assert await backend.aget(TASK, "k") == '"v"'
    await backend.adelete(TASK, "k")
    assert counted.operations() == ["PutObject", "GetObject", "DeleteObject"]


def test_references_cost_one_request(make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]) -> None:
    backend = make_backend()
    counted = requests_of(backend)
    ref = backend.store_value(TASK, "k", '{"big": true}', allow_inline=False)
    assert backend.load_value(ref) == '{"big": true}'
    assert backend.deserialize_task_state_store_from_ref(ref) == {"big": True}
    assert counted.operations() == ["PutObject", "GetObject", "GetObject"]


@pytest.mark.parametrize("count", [0, 1, 1001])
def test_clear_is_ceil_n_over_1000_lists_and_deletes(
    count: int, make_backend: Callable[..., Any], requests_of: Callable[[Any], Any], s3_client: Any
) -> None:
    backend = make_backend()
    fill(backend, TASK, count)
    neighbour = TaskScope("dag", "run", "task", 0)
    backend.set(neighbour, "stays", "1")
    counted = requests_of(backend)
    backend.clear(TASK)
    batches = max(1, math.ceil(count / 1000))
    assert Counter(counted.operations()) == {
        "ListObjectsV2": batches,
        **({"DeleteObjects": math.ceil(count / 1000)} if count else {}),
    }
    assert sum(counted.delete_batches) == count
    assert all(size <= 1000 for size in counted.delete_batches)
    assert backend.keys(TASK) == []
    assert backend.get(neighbour, "stays") == "1"


async def test_aclear_all_map_indices_batches(
    make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend()
    fill(backend, TaskScope("dag", "run", "task", 0), 500)
    fill(backend, TaskScope("dag", "run", "task", 1), 501)
    other_task = TaskScope("dag", "run", "task2", 0)
    backend.set(other_task, "stays", "1")
    counted = requests_of(backend)
    await backend.aclear(TaskScope("dag", "run", "task", 5), all_map_indices=True)
    assert Counter(counted.operations()) == {"ListObjectsV2": 2, "DeleteObjects": 2}
    assert sorted(counted.delete_batches) == [1, 1000]
    assert await backend.akeys(TaskScope("dag", "run", "task", 1)) == []
    assert await backend.aget(other_task, "stays") == "1"


def test_half_failed_delete_is_reported_and_recoverable(
    make_backend: Callable[..., Any], fault_proxy: Any, requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend(endpoint_url=fault_proxy.url)
    fill(backend, TASK, 1002)  # listed in name order: the second batch is k998, k999
    locked = [backend.object_name(TASK, "k7"), backend.object_name(TASK, "k999")]  # one in each batch
    fault_proxy.deny_delete = set(locked)
    counted = requests_of(backend)
    with pytest.raises(Exception, match="clear could not delete 2 object") as raised:
        backend.clear(TASK)
    message = str(raised.value)
    assert all(name in message for name in locked)
    assert "AccessDenied" in message
    assert "run clear again" in message
    assert Counter(counted.operations()) == {"ListObjectsV2": 2, "DeleteObjects": 2}  # both batches ran
    assert backend.keys(TASK) == ["k7", "k999"]

    fault_proxy.deny_delete = set()
    backend.clear(TASK)
    assert backend.keys(TASK) == []
