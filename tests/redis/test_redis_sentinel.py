"""Sentinel (a primary, a replica and three sentinels, started from redis-server): both APIs through the
Sentinel-managed primary, WAIT after writes, and zero lost acknowledged writes across SENTINEL FAILOVER."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from statestore.core import AssetScope, TaskScope
from statestore.core.errors import ConfigurationError, StorageError
from statestore.redis import RedisStoreBackend
from statestore.redis.testing import LocalSentinel, wait_for

TASK = TaskScope("dag", "run", "task", 1)


@pytest.fixture
def make_sentinel_backend(
    make_backend: Callable[..., RedisStoreBackend], redis_sentinel: LocalSentinel
) -> Iterator[Callable[..., RedisStoreBackend]]:
    """Backends on the Sentinel-managed primary, each under its own prefix (deleted afterwards)."""
    made: list[RedisStoreBackend] = []

    def make(**kwargs: Any) -> RedisStoreBackend:
        kwargs.setdefault("sentinels", redis_sentinel.addresses)
        kwargs.setdefault("service_name", redis_sentinel.service_name)
        made.append(make_backend(**kwargs))
        return made[-1]

    yield make
    with redis.Redis(port=redis_sentinel.primary_port()) as primary:
        for backend in made:
            for name in primary.scan_iter(match=backend.key_prefix + "*", count=1000):
                primary.delete(name)


async def test_every_operation_goes_to_the_primary_sentinel_names(
    make_sentinel_backend: Callable[..., RedisStoreBackend], redis_sentinel: LocalSentinel
) -> None:
    backend = make_sentinel_backend(wait_replicas=1)
    assert backend.location.startswith(f"sentinel://{redis_sentinel.addresses}/{redis_sentinel.service_name} ")
    backend.set(TASK, "k", '"v"')
    await backend.aset(AssetScope(name="orders"), "k", '"a"')
    assert backend.get(TASK, "k") == '"v"'
    assert await backend.aget(AssetScope(name="orders"), "k") == '"a"'
    assert backend.keys(TASK) == ["k"]
    with redis.Redis(port=redis_sentinel.primary_port()) as primary:
        assert primary.get(backend.layout.value_key(TASK, "k")) == b':"v"'
    await backend.aclear(AssetScope(name="orders"))
    backend.clear(TASK, all_map_indices=True)
    assert backend.keys(TASK) == []
    await backend.aclose()


def test_a_write_short_of_wait_replicas_is_not_acknowledged(
    make_sentinel_backend: Callable[..., RedisStoreBackend],
) -> None:
    backend = make_sentinel_backend(wait_replicas=2, wait_timeout=0.05)  # there is one replica
    with pytest.raises(StorageError, match=r"reached 1 of wait_replicas = 2 replicas within wait_timeout = 0.05 s"):
        backend.set(TASK, "k", '"v"')


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sentinels": "127.0.0.1:1"}, "sentinels and service_name go together"),
        ({"service_name": "mymaster"}, "sentinels and service_name go together"),
        ({"sentinels": "host-without-port", "service_name": "m"}, "sentinels must be host:port,host:port"),
        ({"sentinels": "h:1", "service_name": "m", "cluster": "true"}, "Redis Cluster and Sentinel exclude"),
        ({"cluster": "true", "wait_replicas": "1"}, "wait_replicas is for a single node or Sentinel"),
        ({"cluster": "maybe"}, "cluster must be true or false"),
    ],
)
def test_topology_settings_are_checked(settings: dict[str, str], message: str) -> None:
    from statestore.core import Config

    with pytest.raises(ConfigurationError, match=message):
        RedisStoreBackend(config=Config.from_dict({"statestore_redis": settings}))


def test_sentinel_failover_mid_workload_loses_no_acknowledged_write(
    make_sentinel_backend: Callable[..., RedisStoreBackend],
    redis_sentinel: LocalSentinel,
    workload: Callable[..., Any],
) -> None:
    """With wait_replicas = 1 a write is acknowledged only once the replica has it, so the promoted
    replica holds every acknowledged write; writes the old primary took alone fail instead."""
    backend = make_sentinel_backend(wait_replicas=1, wait_timeout=0.5, retry_attempts=10, retry_backoff_cap=0.5)
    before = redis_sentinel.primary_port()
    load = workload(backend, [TASK, AssetScope(name="orders")])
    load.wait_for_more(200)
    with redis_sentinel.sentinels[0].client() as sentinel:
        sentinel.sentinel_failover(redis_sentinel.service_name)
    wait_for(lambda: redis_sentinel.primary_port() != before, "the failover", timeout=30)
    load.wait_for_more(200)
    assert load.stop() == []
    print(f"sentinel failover: {len(load.acked)} acknowledged writes, {load.failed} refused")
    with redis.Redis(port=redis_sentinel.primary_port()) as primary:
        assert primary.info("replication")["role"] == "master"
