"""Round trips and server-side cost, counted by the server itself (MONITOR, filtered by client name)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis

from statestore.core import AssetScope, TaskScope
from statestore.core.base import utcnow
from statestore.core.scopes import StoreScope
from statestore.redis import RedisStoreBackend
from statestore.redis.testing import CommandCounter, Commands

SCOPES = [TaskScope("dag", "run", "task", 2), AssetScope(uri="s3://bucket/orders")]


@pytest.fixture
def counted(redis_url: str, backend: RedisStoreBackend) -> Iterator[CommandCounter]:
    # Warm up: open the connection and load the scripts, whose one-time cost is not per operation.
    warm = TaskScope("warm", "up", "task")
    backend.set(warm, "k", '"v"')
    backend.delete(warm, "k")
    backend.clear(warm)
    backend.clear(warm, all_map_indices=True)
    with CommandCounter(redis_url, backend._options["client_name"]) as counter:
        yield counter


def one(command: str) -> Counter[str]:
    return Counter({command: 1})


@pytest.mark.parametrize("scope", SCOPES, ids=["task", "asset"])
def test_one_round_trip_per_operation(scope: StoreScope, backend: RedisStoreBackend, counted: CommandCounter) -> None:
    backend.set(scope, "k", '"v"', expires_at=utcnow() + timedelta(minutes=5))
    assert counted.take().sent == one("evalsha")
    backend.set(scope, "k", '"w"')
    assert counted.take().sent == one("evalsha")
    assert backend.get(scope, "k") == '"w"'
    assert counted.take().sent == one("get")
    assert backend.get(scope, "missing") is None
    assert counted.take().sent == one("get")
    backend.delete(scope, "k")
    assert counted.take().sent == one("evalsha")
    backend.delete(scope, "k")
    assert counted.take().sent == one("evalsha")
    assert backend.keys(scope) == []
    assert counted.take().sent == one("zrangebyscore")
    ref = backend.store_value(scope, "r", '"x"')
    assert backend.load_value(ref, scope=scope, key="r") == '"x"'  # type: ignore[arg-type]
    backend.discard_value(ref)  # type: ignore[arg-type]
    assert counted.take().sent == Counter({"set": 1, "get": 1, "unlink": 1})


@pytest.mark.parametrize("scope", SCOPES, ids=["task", "asset"])
async def test_one_round_trip_per_async_operation(
    scope: StoreScope, backend: RedisStoreBackend, counted: CommandCounter
) -> None:
    await backend.aset(scope, "k", '"v"')  # opens this loop's connection and checks the script cache
    counted.take()
    await backend.aset(scope, "k", '"w"', expires_at=utcnow() + timedelta(minutes=5))
    assert counted.take().sent == one("evalsha")
    assert await backend.aget(scope, "k") == '"w"'
    assert counted.take().sent == one("get")
    await backend.adelete(scope, "k")
    assert counted.take().sent == one("evalsha")
    await backend.aclear(scope)
    assert counted.take().sent == one("evalsha")
    await backend.aclose()


def populate(backend: RedisStoreBackend, admin: redis.Redis, unrelated: int) -> None:
    """Three keys in each of map indices 0..2 of one task and in one asset, plus unrelated keys of other scopes."""
    for map_index in range(3):
        for key in ("a", "b", "c"):
            backend.set(TaskScope("dag", "run", "task", map_index), key, '"v"')
    for key in ("a", "b", "c"):
        backend.set(AssetScope(name="orders"), key, '"v"')
    pipe = admin.pipeline(transaction=False)
    for i in range(unrelated):
        # Neighbours: the same task ids in another run, another asset, and keys outside the prefix.
        pipe.set(backend.layout.value_key(TaskScope("dag", "run2", "task", i % 5), f"k{i}"), ":1")
        pipe.set(backend.layout.value_key(AssetScope(name=f"orders{i}"), "a"), ":1")
        pipe.set(f"{backend.key_prefix}unrelated:{i}", "1")
    pipe.execute()


def clear_costs(backend: RedisStoreBackend, counter: CommandCounter) -> list[Commands]:
    costs = []
    for scope, all_map_indices in (
        (TaskScope("dag", "run", "task", 0), False),
        (TaskScope("dag", "run", "task", 1), True),
        (AssetScope(name="orders"), False),
    ):
        counter.take()
        backend.clear(scope, all_map_indices=all_map_indices)
        costs.append(counter.take())
    return costs


def test_clear_cost_is_independent_of_unrelated_keys(
    redis_url: str, make_backend: Callable[..., RedisStoreBackend], admin: redis.Redis
) -> None:
    measured = []
    for unrelated in (0, 3000):
        backend = make_backend()
        populate(backend, admin, unrelated)
        assert admin.dbsize() >= 12 + 3 * unrelated
        with CommandCounter(redis_url, backend._options["client_name"]) as counter:
            measured.append(clear_costs(backend, counter))
        assert backend.keys(AssetScope(name="orders")) == []
        assert all(backend.keys(TaskScope("dag", "run", "task", i)) == [] for i in range(3))
        if unrelated:
            assert admin.exists(backend.layout.value_key(AssetScope(name="orders0"), "a")) == 1
    without, with_many = measured
    for alone, crowded in zip(without, with_many, strict=True):
        assert crowded.sent == alone.sent
        assert crowded.scripted == alone.scripted
        assert not {"scan", "keys"} & (set(crowded.scripted) | set(crowded.sent))
    # One map index (or an asset): one chunk script, one UNLINK of its three values.
    assert without[0].sent == without[2].sent == one("evalsha")
    assert without[0].scripted["unlink"] == 1
    # All map indices: the map-index set is read, one chunk per remaining map index, read again (empty).
    assert without[1].sent == Counter({"zrange": 2, "evalsha": 2})
    assert without[1].scripted["unlink"] == 2


def test_a_page_of_rows_is_one_round_trip(backend: RedisStoreBackend, counted: CommandCounter) -> None:
    """Reconciliation asks the server role for a page of rows at once: one pipeline of GETs."""
    pairs = [(TaskScope("dag", "run", "task", i % 3), f"k{i}") for i in range(50)]
    for scope, key in pairs[::2]:
        backend.set(scope, key, f'"{key}"')
    counted.take()
    assert backend.get_many(pairs) == [f'"{key}"' if i % 2 == 0 else None for i, (_, key) in enumerate(pairs)]
    assert counted.take().sent == Counter({"get": 50})


def expiry_times(admin: redis.Redis, backend: RedisStoreBackend, scope: TaskScope) -> list[int]:
    layout = backend.layout
    return [admin.pexpiretime(name) for name in (layout.value_key(scope, "k"), *layout.tracking_keys(scope))]


def test_an_overwrite_keeping_its_expiry_runs_two_commands(
    backend: RedisStoreBackend, counted: CommandCounter, admin: redis.Redis
) -> None:
    """The common overwrite (same expiry, or never) is SET + ZSCORE in the script; other writes keep the index exact."""
    scope = TaskScope("dag", "run", "task", 2)
    later = utcnow() + timedelta(days=1)
    backend.set(scope, "k", '"v"', expires_at=later)
    counted.take()
    before = expiry_times(admin, backend, scope)
    backend.set(scope, "k", '"w"', expires_at=later)
    assert counted.take().scripted == Counter({"zscore": 1, "set": 1})
    assert expiry_times(admin, backend, scope) == before
    backend.set(scope, "k", '"x"', expires_at=later + timedelta(hours=1))  # moved later: index and maps follow
    assert expiry_times(admin, backend, scope) == [before[0] + 3_600_000] * 3
    backend.set(scope, "k", '"y"', expires_at=later)  # brought forward: re-derived exactly
    assert expiry_times(admin, backend, scope) == before
    backend.set(scope, "k", '"z"')  # never: everything persists
    assert expiry_times(admin, backend, scope) == [-1, -1, -1]
    counted.take()
    backend.set(scope, "k", '"z"')
    assert counted.take().scripted == Counter({"zscore": 1, "set": 1})
    assert backend.get(scope, "k") == '"z"'
    assert backend.keys(scope) == ["k"]
