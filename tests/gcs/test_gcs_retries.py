"""Retries with google's policy on 429/5xx bursts injected by the proxy; errors that are not retried."""

from __future__ import annotations

import time

import pytest

from statestore.core import Config, TaskScope
from statestore.core.errors import StorageError
from statestore.gcs import GCSStoreBackend
from statestore.gcs.testing import CountingProxy, Emulator

from .conftest import MakeBackend

SCOPE = TaskScope("d", "r", "t")


def test_set_get_delete_survive_bursts(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    proxy.fail(2, status=503, method="POST", path_contains="/upload/")
    backend.set(SCOPE, "k", '"v"')
    assert [(r.method, "/upload/" in r.path) for r in proxy.take()] == [("POST", True)] * 3

    proxy.fail(1, status=429, method="GET")
    proxy.fail(1, status=500, method="GET")
    assert backend.get(SCOPE, "k") == '"v"'
    assert len(proxy.take()) == 3

    proxy.fail(1, status=502, method="DELETE")
    backend.delete(SCOPE, "k")
    assert len(proxy.take()) == 2
    assert backend.get(SCOPE, "k") is None


async def test_async_set_survives_a_burst(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    proxy.fail(1, status=503, method="POST")
    await backend.aset(SCOPE, "k", "1")
    assert len(proxy.take()) == 2
    assert await backend.aget(SCOPE, "k") == "1"


def test_batch_delete_is_retried(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    for i in range(3):
        backend.set(SCOPE, f"k{i}", "1")
    proxy.take()
    proxy.fail(1, status=503, path_contains="/batch/")
    backend.clear(SCOPE)
    assert [(r.method, r.batch_calls) for r in proxy.take()] == [("GET", 0), ("POST", 3), ("POST", 3)]
    assert backend.keys(SCOPE) == []


def test_batch_treats_missing_objects_as_deleted(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    backend.set(SCOPE, "there", "1")
    names = [backend.object_name(SCOPE, "there"), backend.object_name(SCOPE, "never-written")]
    assert backend._delete_objects(names) == {}
    assert backend.get(SCOPE, "there") is None
    with pytest.raises(ValueError, match="at most 100 calls, got 101"):
        backend._delete_objects([f"x{i}" for i in range(101)])


def test_persistent_failure_ends_at_the_retry_deadline(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True, retry_deadline=1.5)
    proxy.fail(1000, status=503, method="GET")
    started = time.monotonic()
    with pytest.raises(
        StorageError, match=rf"GCS could not read gs://{backend.bucket}/{backend.prefix}/task/d/r/t/-1/k"
    ):
        backend.get(SCOPE, "k")
    assert time.monotonic() - started < 10
    assert len(proxy.take()) >= 2


def test_forbidden_is_not_retried_and_names_the_permission(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    proxy.fail(1, status=403, method="POST")
    with pytest.raises(StorageError, match=r"storage\.objects\.create") as caught:
        backend.set(SCOPE, "k", "1")
    assert f"GCS refused to write gs://{backend.bucket}/" in str(caught.value)
    assert len(proxy.take()) == 1
    proxy.fail(1, status=403, method="GET")
    with pytest.raises(StorageError, match=r"storage\.objects\.list"):
        backend.clear(SCOPE)


def test_missing_bucket_is_a_storage_error(gcs_emulator: Emulator) -> None:
    backend = GCSStoreBackend("no-such-bucket-here", endpoint=gcs_emulator.url, config=Config.from_dict({}))
    with pytest.raises(StorageError, match="GCS could not write gs://no-such-bucket-here/"):
        backend.set(SCOPE, "k", "1")
