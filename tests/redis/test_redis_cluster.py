"""Redis Cluster (three primaries and a replica, started from redis-server): conformance, cleanup on
every primary, and zero lost acknowledged writes across a slot migration and a replica failover."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from statestore.core import AssetScope, TaskScope
from statestore.core.base import utcnow
from statestore.core.testing import BackendSuite
from statestore.redis import RedisStoreBackend
from statestore.redis.testing import LocalCluster, LocalServer, wait_for

from ..raw_storage import PrimitiveRawStorage


class TestRedisClusterConformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, make_cluster_backend: Callable[..., RedisStoreBackend]) -> RedisStoreBackend:
        return make_cluster_backend()


def test_scopes_spread_over_every_primary_and_cleanup_reaches_them_all(
    make_cluster_backend: Callable[..., RedisStoreBackend], cluster_admin: RedisCluster, redis_cluster: LocalCluster
) -> None:
    backend = make_cluster_backend()
    scopes = [TaskScope("dag", f"run{i}", "task", i % 3) for i in range(12)] + [
        AssetScope(name=f"a{i}") for i in range(6)
    ]
    for scope in scopes:
        backend.set(scope, "kept", '"k"')
    latest = utcnow()
    for scope in scopes:  # each written before it expires, whatever the load on the host
        latest = utcnow() + timedelta(milliseconds=300)
        backend.set(scope, "brief", '"b"', expires_at=latest)
    nodes = {redis_cluster.node_of(backend.layout.index_key(scope)).port for scope in scopes}
    assert len(nodes) == 3, "the scopes should land on every primary"
    wait_for(lambda: utcnow() > latest + timedelta(milliseconds=50), "the brief values' expiry")
    result = backend.cleanup()
    assert result.removed == len(scopes)
    for scope in scopes:
        assert cluster_admin.zrange(backend.layout.index_key(scope), 0, -1) == ["kept"]
        assert backend.keys(scope) == ["kept"]
    backend.clear(TaskScope("dag", "run1", "task", 1), all_map_indices=True)
    assert backend.get(TaskScope("dag", "run1", "task", 1), "kept") is None
    assert backend.get(TaskScope("dag", "run2", "task", 2), "kept") == '"k"'


def primary_ids(cluster_admin: RedisCluster) -> dict[int, str]:
    return {int(node.port): cluster_admin.cluster_myid(node) for node in cluster_admin.get_primaries()}


def migrate_slot(cluster: LocalCluster, slot: int, source: LocalServer, target: LocalServer) -> int:
    """Move one slot between primaries the way redis-cli --cluster reshard does; return the keys moved."""
    with cluster.client() as admin:
        ids = primary_ids(admin)
    moved = 0
    with source.client() as src, target.client() as dst:
        dst.cluster("setslot", str(slot), "importing", ids[source.port])
        src.cluster("setslot", str(slot), "migrating", ids[target.port])
        while keys := src.cluster("getkeysinslot", str(slot), "20"):
            src.migrate("127.0.0.1", target.port, keys, 0, 5000)
            moved += len(keys)
            time.sleep(0.02)  # let the writers meet a half-moved slot (ASK, TRYAGAIN)
    for node in cluster.nodes:
        if node.port in ids:
            with node.client() as client:
                client.cluster("setslot", str(slot), "node", ids[target.port])
    return moved


def test_a_slot_migration_mid_workload_loses_no_acknowledged_write(
    make_cluster_backend: Callable[..., RedisStoreBackend],
    redis_cluster: LocalCluster,
    cluster_admin: RedisCluster,
    workload: Callable[..., Any],
) -> None:
    backend = make_cluster_backend()
    scope = TaskScope("dag", "migrating", "task", 0)
    slot = key_slot(backend.layout.index_key(scope).encode())
    source = redis_cluster.node_of(backend.layout.index_key(scope))
    primaries = primary_ids(cluster_admin)
    target = next(node for node in redis_cluster.nodes if node.port in primaries and node.port != source.port)
    load = workload(backend, [scope, AssetScope(name="neighbour")])
    load.wait_for_more(200)
    assert migrate_slot(redis_cluster, slot, source, target) >= 20
    load.wait_for_more(200)
    assert load.stop() == []
    print(f"slot migration: {len(load.acked)} acknowledged writes, {load.failed} refused")
    assert redis_cluster.node_of(backend.layout.index_key(scope)).port == target.port
    assert len(backend.keys(scope)) == len([1 for s, _, _ in load.acked if s == scope])


def test_a_replica_failover_mid_workload_loses_no_acknowledged_write(
    make_cluster_backend: Callable[..., RedisStoreBackend],
    redis_cluster: LocalCluster,
    cluster_admin: RedisCluster,
    workload: Callable[..., Any],
) -> None:
    """CLUSTER FAILOVER on the replica: the old primary hands over (MOVED) once the replica caught up."""
    backend = make_cluster_backend()
    replica = next(node for node in redis_cluster.nodes if node.port not in primary_ids(cluster_admin))
    with replica.client() as client:
        primary_port = int(client.info("replication")["master_port"])
    scopes = [TaskScope("dag", f"run{i}", "task") for i in range(40)]
    scopes = [s for s in scopes if redis_cluster.node_of(backend.layout.index_key(s)).port == primary_port][:2]
    load = workload(backend, [*scopes, AssetScope(name="elsewhere")])
    load.wait_for_more(200)
    with replica.client() as client:
        client.cluster("failover")
        wait_for(lambda: client.info("replication")["role"] == "master", "the replica's promotion")
    load.wait_for_more(200)
    assert load.stop() == []
    print(f"cluster failover: {len(load.acked)} acknowledged writes, {load.failed} refused")
    assert redis_cluster.node_of(backend.layout.index_key(scopes[0])).port == replica.port
