"""Worker-side references ``gs://bucket/object``: determinism, Airflow's hooks and scope objects, tampering."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from statestore.core import TaskScope
from statestore.core.base import REFERENCE_EXPIRY_MARGIN, ReferenceNotFoundError
from statestore.core.errors import InvalidReferenceError
from statestore.core.testing import AirflowLikeAssetScope, AirflowLikeTaskScope
from statestore.gcs.testing import CountingProxy

from .conftest import MakeBackend


def test_airflow_hooks_with_airflow_shaped_scopes(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    scope = AirflowLikeTaskScope("etl", "manual__2024-01-01", "extract", 2)
    ref = backend.serialize_task_state_store_to_ref(value={"job": "j-1", "n": [1, 2]}, key="job", scope=scope)
    assert ref.startswith(f"gs://{backend.bucket}/{backend.prefix}/ref/task/etl/manual__2024-01-01/extract/2/job/")
    newer = backend.serialize_task_state_store_to_ref(value={"job": "j-2"}, key="job", scope=scope)
    assert len(proxy.take()) == 2  # one upload each
    assert backend.deserialize_task_state_store_from_ref(newer) == {"job": "j-2"}
    assert len(proxy.take()) == 1  # one download
    assert backend.deserialize_task_state_store_from_ref(ref) == {"job": "j-1", "n": [1, 2]}, "versions are write-once"

    asset = AirflowLikeAssetScope(asset_id=7, name="s3://lake/orders", uri="s3://lake/orders")
    asset_ref = backend.serialize_asset_state_store_to_ref(value="2024-06-01", key="watermark", scope=asset)
    assert asset_ref.startswith(
        f"gs://{backend.bucket}/{backend.prefix}/ref/asset/name/s3%3A%2F%2Flake%2Forders/watermark/"
    )
    assert backend.deserialize_asset_state_store_from_ref(asset_ref) == "2024-06-01"
    for reference in (ref, newer, asset_ref):  # Airflow passes no retention: no customTime, no expiry metadata
        blob = backend._bucket.get_blob(backend._name_from_reference(reference))
        assert blob.custom_time is None
        assert "statestore-expires-at" not in (blob.metadata or {})


def test_reference_of_expired_or_deleted_value(make_backend: MakeBackend) -> None:
    backend = make_backend()
    scope = TaskScope("d", "r", "t")
    past = datetime.now(timezone.utc) - REFERENCE_EXPIRY_MARGIN - timedelta(seconds=1)  # the value's expiry: past
    ref = backend.store_value(scope, "k", '"v"', expires_at=past, allow_inline=False)
    assert ref is not None
    with pytest.raises(ReferenceNotFoundError, match="no longer exists"):
        backend.load_value(ref)
    ref = backend.store_value(scope, "k", '"v"', allow_inline=False)
    backend.discard_value(ref)
    with pytest.raises(ReferenceNotFoundError, match="no longer exists"):
        backend.deserialize_task_state_store_from_ref(ref)


def test_threshold_keeps_small_values_inline(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True, threshold=16)
    scope = TaskScope("d", "r", "t")
    assert backend.store_value(scope, "small", '"tiny"') is None
    assert proxy.take() == []
    big = backend.store_value(scope, "big", '"' + "x" * 20 + '"')
    assert big is not None
    assert backend.resolve_reference(big) == (scope, "big")
    # Airflow wraps whatever its hook returns, so the hooks always store.
    assert backend.serialize_task_state_store_to_ref(value="tiny", key="small", scope=scope) is not None


def _tampered(backend_bucket: str, prefix: str, good: str) -> list[tuple[str, str]]:
    root = f"gs://{backend_bucket}/{prefix}/"
    return [
        (good.replace(f"gs://{backend_bucket}/", "gs://someone-elses-bucket/"), "is not under"),
        (good.replace(f"/{prefix}/", "/other-prefix/"), "is not under"),
        (good.replace("gs://", "s3://"), "is not under"),
        (good.replace("gs://", "GS://"), "is not under"),
        (root + "task/d/r/t/-1/../../../../x/k", "not an encoded or shortened name"),
        (root + "task/d/r/t/-1/a/b", "not a task or asset object name"),
        (root + "task/d/r/t/-1/k%2f", "not an encoded or shortened name"),
        (root + "task/d/r/t/-1/%6B", "not a canonical encoded segment"),
        (root + "task/d/r/t/007/k", "not a task or asset object name"),
        (root + "asset/path/x/k", "not a task or asset object name"),
        (root + "task/d/r/t/-1/k?generation=1", "not an encoded or shortened name"),
        (root + "task/d/r/t/-1/", "not an encoded or shortened name"),
        (root, "not an encoded or shortened name"),
        ("", "is not under"),
    ]


def test_tampered_references_are_refused_before_any_request(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True, prefix="team/state")
    good = backend.serialize_task_state_store_to_ref(value=1, key="k", scope=TaskScope("d", "r", "t"))
    assert good is not None
    proxy.take()
    for reference, reason in _tampered(backend.bucket, "team/state", good):
        with pytest.raises(InvalidReferenceError, match=reason) as caught:
            backend.deserialize_task_state_store_from_ref(reference)
        assert "GCSStoreBackend refuses" in str(caught.value), reference
    assert proxy.take() == []
    assert backend.deserialize_task_state_store_from_ref(good) == 1


def test_reference_of_another_prefix_in_the_same_bucket_is_refused(make_backend: MakeBackend) -> None:
    mine, theirs = make_backend(), make_backend()
    ref = theirs.serialize_task_state_store_to_ref(value="secret", key="k", scope=TaskScope("d", "r", "t"))
    assert ref is not None
    with pytest.raises(InvalidReferenceError, match=f"not under 'gs://{mine.bucket}/{mine.prefix}/'"):
        mine.deserialize_task_state_store_from_ref(ref)


async def test_async_reference_round_trip(make_backend: MakeBackend) -> None:
    backend = make_backend()
    ref = await backend.astore_value(TaskScope("d", "r", "t"), "k", '{"a":1}', allow_inline=False)
    assert ref is not None
    assert await backend.aload_value(ref) == '{"a":1}'
    with pytest.raises(InvalidReferenceError):
        await backend.aload_value(ref.replace(backend.bucket, "elsewhere"))
