"""References (format, tampering), threshold and compression switches, expiry metadata, Airflow-like scopes."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from statestore.core import AssetScope, Config, InvalidReferenceError, ReferenceNotFoundError, TaskScope
from statestore.core.testing import AirflowLikeAssetScope, AirflowLikeTaskScope

TASK = TaskScope("my dag", "manual__2024-01-01T00:00:00+00:00", "extract", 3)


def test_reference_format_is_readable_and_versioned(make_backend: Callable[..., Any], bucket: str, prefix: str) -> None:
    writer, other_instance = make_backend(), make_backend()
    ref = writer.store_value(TASK, "job/id", '"j-1"', allow_inline=False)
    head, _, version = ref.rpartition("/")
    assert (
        head == f"s3://{bucket}/{prefix}/ref/task/my%20dag/manual__2024-01-01T00%3A00%3A00%2B00%3A00/extract/3/job%2Fid"
    )
    assert re.fullmatch("[0-9a-f]{29}", version)
    assert other_instance.load_value(ref, scope=TASK, key="job/id") == '"j-1"'
    assert other_instance.resolve_reference(ref) == (TASK, "job/id")


def test_long_names_are_shortened_below_1024_bytes_and_still_listed(
    make_backend: Callable[..., Any], s3_client: Any, bucket: str
) -> None:
    backend = make_backend()
    scope = TaskScope("d" * 250, "r" * 250, "t" * 250)
    key = "日本" * 256
    ref = backend.store_value(scope, key, "1", allow_inline=False)
    name = backend._name_from_reference(ref)
    assert len(name.encode()) <= 1024
    assert "~" in name
    assert [value.reference for page in backend.iter_values() for value in page] == [ref]
    assert backend.resolve_reference(ref) == (scope, key)
    assert backend.load_value(ref, scope=scope, key=key) == "1"
    assert s3_client.get_object(Bucket=bucket, Key=name)["Metadata"]["statestore-long-name"] == "1"


def test_foreign_and_tampered_references_are_refused_without_requests(
    make_backend: Callable[..., Any], requests_of: Callable[[Any], Any], bucket: str, prefix: str
) -> None:
    backend = make_backend()
    ref = backend.store_value(TASK, "k", '"v"', allow_inline=False)
    other_prefix = make_backend(prefix=prefix + "-other")
    counted = requests_of(other_prefix)
    with pytest.raises(InvalidReferenceError, match=f"it is not under 's3://{bucket}/{prefix}-other/'"):
        other_prefix.load_value(ref)
    base = ref.rsplit("/", 1)[0]
    for tampered in (
        ref.replace(bucket, "another-bucket"),
        ref.replace("s3://", "gs://"),
        f"{base}/../../../secret",
        f"{base}/k/..",
        f"{base}/%2e%2e",  # lower-case escapes: not canonical
        f"{base}/k%2",
        base,  # a scope, not a key
        ref.replace("/3/", "/03/"),
        ref.replace("/3/", "/-2/"),
        f"s3://{bucket}/{prefix}/asset/nope/x/k",
        f"s3://{bucket}/{prefix}/task/a~b/r/t/-1/k",
    ):
        with pytest.raises(InvalidReferenceError, match="refuses"):
            backend.load_value(tampered)
        with pytest.raises(InvalidReferenceError):
            backend.deserialize_task_state_store_from_ref(tampered)
    assert counted.sent == []


def test_threshold_keeps_small_values_inline_only_when_allowed(
    make_backend: Callable[..., Any], requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend(threshold=16)
    counted = requests_of(backend)
    assert backend.store_value(TASK, "small", '"tiny"') is None
    assert counted.sent == []
    assert backend.get(TASK, "small") is None  # nothing was written
    ref = backend.store_value(TASK, "large", json.dumps("x" * 16))
    assert ref is not None
    assert backend.load_value(ref) == json.dumps("x" * 16)
    # Airflow 3.3.2 wraps whatever its hook returns, so the hooks always store.
    hooked = backend.serialize_task_state_store_to_ref(value="tiny", key="small", scope=TASK)
    assert backend.resolve_reference(hooked) == (TASK, "small")
    assert backend.deserialize_task_state_store_from_ref(hooked) == "tiny"


async def test_async_threshold_and_references(make_backend: Callable[..., Any]) -> None:
    backend = make_backend(threshold=16)
    assert await backend.astore_value(TASK, "small", "1") is None
    ref = await backend.astore_value(TASK, "small", "1", allow_inline=False)
    assert await backend.aload_value(ref) == "1"
    await backend.adiscard_value(ref)
    with pytest.raises(ReferenceNotFoundError, match="no longer exists"):
        await backend.aload_value(ref)


def test_compression_is_recorded_and_switching_never_breaks_reads(
    make_backend: Callable[..., Any], s3_client: Any, bucket: str
) -> None:
    gzipped, plain = make_backend(compression="gzip"), make_backend(compression="none")
    value = json.dumps({"rows": list(range(500))})
    gzipped.set(TASK, "z", value)
    plain.set(TASK, "p", value)
    raw = s3_client.get_object(Bucket=bucket, Key=gzipped.object_name(TASK, "z"))
    assert raw["Metadata"] == {"statestore-encoding": "gzip"}
    assert gzip.decompress(raw["Body"].read()).decode() == value
    raw_plain = s3_client.get_object(Bucket=bucket, Key=plain.object_name(TASK, "p"))
    assert raw_plain["Metadata"] == {}
    assert raw_plain["Body"].read().decode() == value
    for reader in (gzipped, plain):
        assert reader.get(TASK, "z") == value
        assert reader.get(TASK, "p") == value


def test_unknown_encoding_is_a_clear_error(make_backend: Callable[..., Any], s3_client: Any, bucket: str) -> None:
    backend = make_backend()
    s3_client.put_object(
        Bucket=bucket, Key=backend.object_name(TASK, "k"), Body=b"x", Metadata={"statestore-encoding": "zstd"}
    )
    with pytest.raises(Exception, match="uses encoding 'zstd', which this statestore version cannot read"):
        backend.get(TASK, "k")


def test_expiry_is_recorded_on_the_object_and_cleanup_reclaims(
    make_backend: Callable[..., Any], s3_client: Any, bucket: str, requests_of: Callable[[Any], Any]
) -> None:
    backend = make_backend()
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    future = datetime.now(timezone.utc) + timedelta(days=1)
    backend.set(TASK, "old", "1", expires_at=past)
    backend.set(TASK, "new", "2", expires_at=future)
    backend.set(AssetScope(name="a"), "forever", "3")
    head = s3_client.head_object(Bucket=bucket, Key=backend.object_name(TASK, "new"))
    assert datetime.fromisoformat(head["Metadata"]["statestore-expires-at"]) == future
    assert backend.get(TASK, "old") is None
    counted = requests_of(backend)
    result = backend.cleanup()
    assert (result.removed, result.by_kind) == (1, {"expired_task": 1})
    assert backend.keys(TASK) == ["new"]
    assert backend.get(AssetScope(name="a"), "forever") == "3"
    ops = counted.operations()
    assert ops.count("HeadObject") == 3  # S3 listings carry no metadata: one HEAD per object
    assert ops.count("DeleteObjects") == 1


def test_airflow_like_scopes_and_hooks_write_no_expiry(
    make_backend: Callable[..., Any], s3_client: Any, bucket: str
) -> None:
    """Airflow's hooks know no retention: their objects carry no expiry metadata and no retention tag."""
    backend = make_backend(config=Config.from_dict({"state_store": {"default_retention_days": "7"}}))
    scope = AirflowLikeTaskScope("dag", "run", "task", 2)
    ref = backend.serialize_task_state_store_to_ref(value={"cursor": 5}, key="k", scope=scope)
    assert backend.resolve_reference(ref) == (TaskScope("dag", "run", "task", 2), "k")
    assert backend.deserialize_task_state_store_from_ref(ref) == {"cursor": 5}
    asset_ref = backend.serialize_asset_state_store_to_ref(
        value=[1, 2], key="w", scope=AirflowLikeAssetScope(name="orders")
    )
    assert backend.resolve_reference(asset_ref) == (AssetScope(name="orders"), "w")
    assert backend.deserialize_asset_state_store_from_ref(asset_ref) == [1, 2]
    for reference in (ref, asset_ref):
        name = backend._name_from_reference(reference)
        assert "statestore-expires-at" not in s3_client.head_object(Bucket=bucket, Key=name)["Metadata"]
        assert s3_client.get_object_tagging(Bucket=bucket, Key=name)["TagSet"] == []
