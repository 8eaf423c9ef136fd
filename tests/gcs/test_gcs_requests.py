"""Request economy and object layout, observed on the wire through the counting proxy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from google.cloud import storage

from statestore.core import AssetScope, TaskScope
from statestore.gcs.testing import CountingProxy, RecordedRequest

from .conftest import MakeBackend

TASK = TaskScope("dag one", "run/1", "task.a", 3)


def _summary(requests: list[RecordedRequest]) -> list[str]:
    return [f"{r.method} {r.path.split('?')[0]}" for r in requests]


def test_one_request_per_get_set_delete(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    name = backend.object_name(TASK, "k/1")
    backend.set(TASK, "k/1", '{"a": 1}')
    assert _summary(proxy.take()) == [f"POST /upload/storage/v1/b/{backend.bucket}/o"]
    assert backend.get(TASK, "k/1") == '{"a": 1}'
    [get] = proxy.take()
    assert (get.method, get.path.split("?")[0]) == ("GET", f"/download/storage/v1/b/{backend.bucket}/o/{_quoted(name)}")
    backend.delete(TASK, "k/1")
    assert _summary(proxy.take()) == [f"DELETE /storage/v1/b/{backend.bucket}/o/{_quoted(name)}"]
    assert backend.get(TASK, "k/1") is None
    backend.delete(TASK, "k/1")  # missing: still one request, no error
    assert len(proxy.take()) == 2


async def test_one_request_per_async_operation(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    scope = AssetScope(name="warehouse.orders")
    await backend.aset(scope, "cursor", '"2024-01-01"', expires_at=None)
    assert len(proxy.take()) == 1
    assert await backend.aget(scope, "cursor") == '"2024-01-01"'
    assert len(proxy.take()) == 1
    await backend.adelete(scope, "cursor")
    assert len(proxy.take()) == 1
    assert await backend.aget(scope, "cursor") is None
    assert len(proxy.take()) == 1


def test_expiry_is_custom_time_and_metadata(make_backend: MakeBackend, raw_client: storage.Client) -> None:
    backend = make_backend()
    expires = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    backend.set(TASK, "k", "1", expires_at=expires)
    backend.set(TASK, "forever", "2")
    blob = raw_client.bucket(backend.bucket).get_blob(backend.object_name(TASK, "k"))
    assert blob.custom_time == expires
    assert blob.metadata == {"statestore-expires-at": "2031-05-06T07:08:09+00:00"}
    forever = raw_client.bucket(backend.bucket).get_blob(backend.object_name(TASK, "forever"))
    assert forever.custom_time is None
    assert not forever.metadata


def test_expired_value_is_never_returned_and_cleanup_reclaims_it(
    make_backend: MakeBackend, proxy: CountingProxy, raw_client: storage.Client
) -> None:
    backend = make_backend(via_proxy=True)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    backend.set(TASK, "old", "1", expires_at=past)
    backend.set(TASK, "live", "2", expires_at=past + timedelta(hours=1))
    backend.set(AssetScope(name="a"), "forever", "3")
    proxy.take()
    assert backend.get(TASK, "old") is None
    assert len(proxy.take()) == 1
    assert raw_client.bucket(backend.bucket).get_blob(backend.object_name(TASK, "old")) is not None

    result = backend.cleanup()
    assert (result.removed, result.by_kind) == (1, {"expired_task": 1})
    seen = proxy.take()
    # one listing (carrying metadata) each of task/ and asset/, one batch delete
    assert [r.method for r in seen] == ["GET", "GET", "POST"], _summary(seen)
    assert raw_client.bucket(backend.bucket).get_blob(backend.object_name(TASK, "old")) is None
    assert backend.get(TASK, "live") == "2"


def test_object_names_are_readable(make_backend: MakeBackend) -> None:
    backend = make_backend(prefix="state/v1")
    assert backend.object_name(TASK, "k/1") == "state/v1/task/dag%20one/run%2F1/task%2Ea/3/k%2F1"
    assert (
        backend.reference_for(TASK, "k/1") == f"gs://{backend.bucket}/state/v1/task/dag%20one/run%2F1/task%2Ea/3/k%2F1"
    )
    assert backend.location == f"gs://{backend.bucket}/state/v1/"


def test_kms_key_name_is_sent_with_uploads(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    key = "projects/p/locations/europe/keyRings/r/cryptoKeys/statestore"
    backend = make_backend(via_proxy=True, kms_key_name=key)
    backend.set(TASK, "k", "1")
    [upload] = proxy.take()
    assert "kmsKeyName=projects%2Fp%2Flocations%2Feurope%2FkeyRings%2Fr%2FcryptoKeys%2Fstatestore" in upload.path


def test_clear_lists_pages_of_1000_and_deletes_in_batches_of_100(
    make_backend: MakeBackend, proxy: CountingProxy
) -> None:
    backend = make_backend(via_proxy=True)
    other = TaskScope(TASK.dag_id, TASK.run_id, TASK.task_id, 4)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: backend.set(TASK, f"k{i}", "1"), range(1005)))
    backend.set(other, "kept", "1")
    proxy.take()

    backend.clear(TASK)

    seen = proxy.take()
    lists = [r for r in seen if r.method == "GET"]
    batches = [r for r in seen if r.method == "POST"]
    assert len(seen) == len(lists) + len(batches), _summary(seen)
    assert len(lists) == 2
    assert all("maxResults=1000" in r.path for r in lists)
    assert [r.batch_calls for r in batches] == [100] * 10 + [5]
    assert backend.keys(TASK) == []
    assert backend.get(other, "kept") == "1"


def test_clear_all_map_indices_in_one_listing(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    for map_index in (-1, 0, 1, 12):
        backend.set(TaskScope("d", "r", "t", map_index), "k", "1")
    backend.set(TaskScope("d", "r", "t2", 0), "k", "1")
    proxy.take()
    backend.clear(TaskScope("d", "r", "t", 0), all_map_indices=True)
    assert [(r.method, r.batch_calls) for r in proxy.take()] == [("GET", 0), ("POST", 4)]
    assert backend.get(TaskScope("d", "r", "t2", 0), "k") == "1"


@pytest.mark.parametrize("count", [0, 1])
def test_clear_of_small_scopes(make_backend: MakeBackend, proxy: CountingProxy, count: int) -> None:
    backend = make_backend(via_proxy=True)
    for i in range(count):
        backend.set(TASK, f"k{i}", "1")
    proxy.take()
    backend.clear(TASK)
    assert [r.method for r in proxy.take()] == ["GET"] + ["POST"] * count


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
