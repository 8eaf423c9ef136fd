"""The Redis key layout: native expiry, index hygiene, cluster hash slots, injectivity, references, large clears."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import redis
from redis.crc import key_slot

from statestore.core import AssetScope, TaskScope
from statestore.core.base import REFERENCE_EXPIRY_MARGIN, ReferenceNotFoundError, utcnow
from statestore.core.errors import InvalidReferenceError
from statestore.core.testing import AirflowLikeAssetScope, AirflowLikeTaskScope
from statestore.redis import RedisStoreBackend
from statestore.redis.layout import KeyLayout
from statestore.redis.scripts import PRUNE_EVERY

TASK = TaskScope("dag", "run", "task", 0)
ASSET = AssetScope(name="orders")


def test_native_expiry_is_set_on_the_redis_key(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    layout = backend.layout
    backend.set(TASK, "soon", '"s"', expires_at=utcnow() + timedelta(seconds=60))
    backend.set(TASK, "never", '"n"')
    assert 55_000 < admin.pttl(layout.value_key(TASK, "soon")) <= 60_000
    assert admin.pttl(layout.value_key(TASK, "never")) == -1
    # An index persists while one of its values never expires.
    assert admin.pttl(layout.index_key(TASK)) == -1
    assert admin.pttl(layout.maps_key(TASK)) == -1


def test_expired_values_and_their_indexes_vanish_without_cleanup(
    backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    layout = backend.layout
    backend.set(TASK, "a", '"a"', expires_at=utcnow() + timedelta(milliseconds=300))
    backend.set(ASSET, "b", '"b"', expires_at=utcnow() + timedelta(milliseconds=300))
    names = [layout.value_key(TASK, "a"), layout.index_key(TASK), layout.maps_key(TASK)]
    names += [layout.value_key(ASSET, "b"), layout.index_key(ASSET)]
    assert all(0 < admin.pttl(name) <= 300 for name in names), [admin.pttl(n) for n in names]
    time.sleep(0.4)
    assert admin.exists(*names) == 0
    assert backend.get(TASK, "a") is None


def test_delete_of_the_last_never_expiring_key_lets_the_index_expire(
    backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    backend.set(TASK, "forever", '"f"')
    backend.set(TASK, "brief", '"b"', expires_at=utcnow() + timedelta(seconds=30))
    assert admin.pttl(backend.layout.index_key(TASK)) == -1
    backend.delete(TASK, "forever")
    assert 0 < admin.pttl(backend.layout.index_key(TASK)) <= 30_000
    assert 0 < admin.pttl(backend.layout.maps_key(TASK)) <= 30_000
    backend.delete(TASK, "brief")
    assert admin.exists(backend.layout.index_key(TASK), backend.layout.maps_key(TASK)) == 0


def test_writes_prune_index_entries_of_expired_values(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    """An index sheds entries of expired values when a new key brings its size to a multiple of PRUNE_EVERY."""
    index = backend.layout.index_key(ASSET)
    backend.set(ASSET, "old", '"o"', expires_at=utcnow() + timedelta(milliseconds=100))
    backend.set(ASSET, "keep", '"k"')
    deadline = time.monotonic() + 10
    while admin.exists(backend.layout.value_key(ASSET, "old")) and time.monotonic() < deadline:
        time.sleep(0.01)
    fillers = [f"new-{i:02d}" for i in range(PRUNE_EVERY - 2)]
    for key in fillers[:-1]:
        backend.set(ASSET, key, '"n"')
    assert admin.zscore(index, "old") is not None  # Redis dropped the value only; no prune yet
    backend.set(ASSET, fillers[-1], '"n"')  # the index reaches PRUNE_EVERY entries
    assert sorted(admin.zrange(index, 0, -1)) == sorted(["keep", *fillers])
    assert backend.keys(ASSET) == sorted(["keep", *fillers])


def test_map_indices_of_expired_values_are_pruned_when_a_map_index_joins(
    backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    backend.set(TaskScope("dag", "run", "task", 0), "k", '"o"', expires_at=utcnow() + timedelta(milliseconds=100))
    backend.set(TaskScope("dag", "run", "task", 1), "k", '"k"')
    time.sleep(0.2)
    backend.set(TaskScope("dag", "run", "task", 2), "k", '"n"')
    assert sorted(admin.zrange(backend.layout.maps_key(TASK), 0, -1)) == ["1", "2"]


def test_index_expiries_follow_the_latest_value_as_writes_move_it(
    backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    """Later expiries extend the indexes in place; an earlier expiry of the latest value re-derives them."""
    layout = backend.layout
    other = TaskScope("dag", "run", "task", 1)
    now = utcnow()

    def ttl(name: str) -> int:
        """Seconds to live of ``name`` rounded up to tens (every expiry below is a multiple of ten), -1: never."""
        ms: int = admin.pttl(name)
        return -(-ms // 10_000) * 10 if ms > 0 else ms

    def expiries() -> tuple[int, int]:
        return ttl(layout.index_key(TASK)), ttl(layout.maps_key(TASK))

    def at(seconds: int) -> datetime:
        return now + timedelta(seconds=seconds)

    backend.set(TASK, "a", '"a"', expires_at=at(30))
    backend.set(other, "b", '"b"', expires_at=at(60))
    assert expiries() == (30, 60)
    backend.set(TASK, "a", '"a"', expires_at=at(90))
    assert expiries() == (90, 90)
    backend.set(TASK, "c", '"c"', expires_at=at(10))
    assert expiries() == (90, 90)
    backend.set(TASK, "a", '"a"', expires_at=at(20))  # the latest value now expires earlier
    assert expiries() == (20, 60)
    backend.delete(TASK, "c")  # not the latest value: nothing moves
    assert expiries() == (20, 60)
    backend.set(TASK, "a", '"a"')
    assert expiries() == (-1, -1)
    backend.set(TASK, "a", '"a"', expires_at=at(40))  # the only never-expiring value gets an expiry
    assert expiries() == (40, 60)
    backend.delete(other, "b")
    assert expiries() == (40, 40)
    backend.delete(TASK, "a")
    assert admin.exists(layout.index_key(TASK), layout.maps_key(TASK)) == 0


async def test_async_writes_share_the_sync_layout(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    await backend.aset(TASK, "k", '"v"', expires_at=utcnow() + timedelta(seconds=60))
    assert 55_000 < admin.pttl(backend.layout.value_key(TASK, "k")) <= 60_000
    assert backend.get(TASK, "k") == '"v"'
    backend.set(ASSET, "k", '"w"')
    assert await backend.aget(ASSET, "k") == '"w"'
    await backend.aclose()


@pytest.mark.parametrize(
    "scope",
    [
        TaskScope("d{x}", "run}{", "t:{}", 7),
        TaskScope("d", "r", "t"),
        AssetScope(name="{orders}"),
        AssetScope(uri="s3://b/{k}"),
        AssetScope(asset_id=42),
    ],
)
def test_all_keys_of_a_task_or_asset_share_one_cluster_slot(scope: TaskScope | AssetScope) -> None:
    layout = KeyLayout("app:")
    names = [layout.value_key(scope, key) for key in ("k", "{", "}", "{x}", "a/b")] + [layout.index_key(scope)]
    if isinstance(scope, TaskScope):
        others = [TaskScope(scope.dag_id, scope.run_id, scope.task_id, mi) for mi in (-1, 0, 1, 99)]
        names += [layout.value_key(other, "k") for other in others] + [layout.maps_key(scope)]
        names += [layout.index_key(other) for other in others]
    assert len({key_slot(name.encode()) for name in names}) == 1, names
    tag = layout.tag(scope)
    assert tag.count("{") == 1
    assert tag.count("}") == 1
    assert all(name.startswith(tag) for name in names)


def test_prefix_with_a_brace_is_refused() -> None:
    with pytest.raises(ValueError, match=r"key_prefix must not contain '\{' or '\}'.*'a\{b:'"):
        KeyLayout("a{b:")


def test_value_keys_parse_back_and_never_collide_with_indexes() -> None:
    layout = KeyLayout("p:")
    scopes = [TaskScope("d/x", "r#1", "t", 3), TaskScope("d", "r", "t", -1), AssetScope(uri="a#keys")]
    keys = ["#keys", "#maps", "k", "k#keys", "3/k"]
    values = {layout.value_key(s, k): (s, k) for s in scopes for k in keys}
    assert len(values) == len(scopes) * len(keys)
    indexes = {layout.index_key(s) for s in scopes} | {layout.maps_key(s) for s in scopes[:2]}  # type: ignore[arg-type]
    assert not indexes & set(values)
    for name, pair in values.items():
        assert layout.parse_value_key(name) == pair


def test_airflow_like_scopes_name_the_same_keys(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    backend.set(AirflowLikeTaskScope("dag", "run", "task", 0), "k", '"t"')
    backend.set(AirflowLikeAssetScope(name="orders", uri="s3://b/o"), "k", '"a"')
    assert backend.get(TASK, "k") == '"t"'
    assert backend.get(AssetScope(name="orders"), "k") == '"a"'
    assert admin.get(backend.layout.value_key(TASK, "k")) == ':"t"'
    backend.clear(AirflowLikeTaskScope("dag", "run", "task", 5), all_map_indices=True)
    assert backend.get(TASK, "k") is None


def test_asset_identity_is_the_first_of_name_uri_and_id(backend: RedisStoreBackend) -> None:
    """An asset is addressed by its name when it has one; a uri-only scope is a different namespace."""
    backend.set(AssetScope(name="orders", uri="s3://b/o", asset_id=7), "k", '"v"')
    assert backend.get(AssetScope(name="orders"), "k") == '"v"'
    assert backend.get(AssetScope(uri="s3://b/o"), "k") is None
    assert backend.get(AssetScope(asset_id=7), "k") is None
    backend.clear(AssetScope(uri="s3://b/o", asset_id=7))
    assert backend.get(AssetScope(name="orders"), "k") == '"v"'
    backend.delete(AssetScope(name="orders", uri="elsewhere"), "k")
    assert backend.get(AssetScope(name="orders"), "k") is None


def test_references_name_a_new_write_once_version_per_write(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    head = f"redis://{backend.key_prefix}ref:{{task/dag/run/task}}/0/k%2F%7Bx%7D/"
    first = backend.serialize_task_state_store_to_ref(value={"job": 1}, key="k/{x}", scope=TASK)
    second = backend.serialize_task_state_store_to_ref(value={"job": 2}, key="k/{x}", scope=TASK)
    assert first is not None
    assert second is not None
    assert first.startswith(head)
    assert second.startswith(head)
    assert first != second
    assert key_slot(first.removeprefix("redis://").encode()) == key_slot(backend.layout.index_key(TASK).encode())
    assert [admin.pttl(ref.removeprefix("redis://")) for ref in (first, second)] == [-1, -1]  # the hooks: no expiry
    assert backend.deserialize_task_state_store_from_ref(first) == {"job": 1}
    assert backend.deserialize_task_state_store_from_ref(second) == {"job": 2}
    backend.discard_value(first)
    assert backend.deserialize_task_state_store_from_ref(second) == {"job": 2}  # discarding the old kept the new
    asset_ref = backend.serialize_asset_state_store_to_ref(value=[1], key="cursor", scope=ASSET)
    assert asset_ref is not None
    assert asset_ref.startswith(f"redis://{backend.key_prefix}ref:{{asset/name/orders}}/cursor/")
    assert backend.deserialize_asset_state_store_from_ref(asset_ref) == [1]


def test_a_version_expires_a_margin_after_its_row(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    row_expiry = utcnow() + timedelta(hours=1)
    ref = backend.store_value(TASK, "k", '"v"', expires_at=row_expiry)
    assert ref is not None
    expected = (row_expiry + REFERENCE_EXPIRY_MARGIN - utcnow()).total_seconds() * 1000
    # PXAT and PTTL count whole milliseconds, so the TTL may exceed the exact figure by under 1 ms.
    assert expected - 5_000 < admin.pttl(ref.removeprefix("redis://")) <= expected + 1


def test_one_prefix_serves_both_roles_and_reconciliation_lists_only_versions(backend: RedisStoreBackend) -> None:
    backend.set(TASK, "k", '"row"')  # the server role, same prefix
    refs = {backend.store_value(TASK, "k", f'"{i}"') for i in range(3)}
    listed = [value for page in backend.iter_values() for value in page]
    assert {value.reference for value in listed} == refs
    assert all(utcnow() - timedelta(minutes=1) < value.written_at <= utcnow() for value in listed)
    assert backend.get(TASK, "k") == '"row"'
    failures = backend.discard_values([*refs, "redis://elsewhere:{asset/name/x}/k"])
    assert list(failures) == ["redis://elsewhere:{asset/name/x}/k"]
    assert "not under the key prefix" in failures["redis://elsewhere:{asset/name/x}/k"]
    assert list(backend.iter_values()) == []
    assert backend.get(TASK, "k") == '"row"'


def test_pre_versioning_references_stay_readable(backend: RedisStoreBackend) -> None:
    backend.set(TASK, "old", '"written before versioning"')
    old = f"redis://{backend.key_prefix}{{task/dag/run/task}}/0/old"
    assert backend.load_value(old, scope=TASK, key="old") == '"written before versioning"'
    backend.discard_value(old)
    assert backend.get(TASK, "old") is None


def test_a_reference_is_honoured_only_for_its_own_scope_and_key(backend: RedisStoreBackend) -> None:
    ref = backend.store_value(TASK, "k", '"v"')
    assert ref is not None
    assert backend.load_value(ref, scope=TASK, key="k") == '"v"'
    for scope, key in ((TASK, "other"), (TaskScope("dag", "run", "task", 1), "k"), (ASSET, "k")):
        with pytest.raises(InvalidReferenceError, match="it was written for key 'k'"):
            backend.load_value(ref, scope=scope, key=key)


def test_tampered_references_are_refused(
    make_backend: Callable[..., RedisStoreBackend], backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    other = make_backend()
    other.set(TASK, "secret", '"s"')
    other_version = other.store_value(TASK, "secret", '"s"')
    admin.set(backend.key_prefix + "plain", ":1")
    prefix = backend.key_prefix
    version = "0" * 29
    tampered = {
        other.reference_for(TASK, "secret"): "not under the key prefix",
        str(other_version): "not under the key prefix",
        f"redis://{prefix}plain": "not under the key prefix",
        f"redis://{prefix}{{task/dag/run/task}}/0#keys": "not a statestore path",
        f"redis://{prefix}{{task/dag/run/task}}#maps": "not a statestore value key",
        f"redis://{prefix}{{task/dag/run/task}}/0/a/b": "not a statestore path",
        f"redis://{prefix}{{task/dag/run/task}}/0/%2f": "not an encoded segment",
        f"redis://{prefix}{{task/dag/run/task/0}}/k": "not in canonical form",
        f"redis://{prefix}ref:{{task/dag/run/task}}/0/k/not-a-version": "not a value version",
        f"redis://{prefix}ref:{{task/dag/run/task}}/0/{version}": "not a statestore path",
        f"redis://{prefix}ref:{{task/dag/run/task/0}}/k/{version}": "not in canonical form",
        "s3://bucket/task/dag/run/task/0/k": "does not start with 'redis://'",
    }
    for ref, reason in tampered.items():
        with pytest.raises(InvalidReferenceError, match="refuses reference") as info:
            backend.deserialize_task_state_store_from_ref(ref)
        assert reason in str(info.value), (ref, str(info.value))
        assert repr(ref) in str(info.value)


async def test_async_references_round_trip(backend: RedisStoreBackend) -> None:
    ref = await backend.astore_value(ASSET, "k", '{"a":1}')
    assert ref is not None
    assert ref.startswith(f"redis://{backend.key_prefix}ref:{{asset/name/orders}}/k/")
    assert await backend.aload_value(ref, scope=ASSET, key="k") == '{"a":1}'
    with pytest.raises(InvalidReferenceError, match="not under the key prefix"):
        await backend.aload_value("redis://elsewhere:{asset/name/orders}/k")
    assert await backend.adiscard_values([ref]) == {}
    await backend.adiscard_value(ref)  # already gone: not an error
    with pytest.raises(ReferenceNotFoundError):
        await backend.aload_value(ref)
    await backend.aclose()


def test_clear_of_many_keys(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    """Clears delete in batches inside the script (Lua's unpack has a stack limit)."""
    pipe = admin.pipeline(transaction=False)
    for i in range(2500):
        pipe.set(backend.layout.value_key(TASK, f"k{i}"), ":1")
        pipe.zadd(backend.layout.index_key(TASK), {f"k{i}": float("inf")})
    pipe.execute()
    backend.set(TASK, "last", '"l"')
    backend.set(TaskScope("dag", "run", "task", 1), "other", '"o"')
    assert len(backend.keys(TASK)) == 2501
    backend.clear(TASK)
    assert backend.keys(TASK) == []
    assert admin.exists(backend.layout.value_key(TASK, "k2499"), backend.layout.index_key(TASK)) == 0
    assert backend.get(TaskScope("dag", "run", "task", 1), "other") == '"o"'


async def test_concurrent_async_clients_per_event_loop(backend: RedisStoreBackend) -> None:
    await asyncio.gather(*(backend.aset(TASK, f"k{i}", str(i)) for i in range(50)))
    assert await backend.akeys(TASK) == sorted(f"k{i}" for i in range(50))
    await backend.aclear(TASK, all_map_indices=True)
    assert await backend.akeys(TASK) == []
    await backend.aclose()
