"""End to end: StateStore with the SQL metastore as server store and S3 as [workers] state_backend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statestore.core import AssetScope, Config, StateStore, TaskScope

TASK = TaskScope("etl", "run-1", "load", 2)


@pytest.fixture(params=["s3", "statestore.s3.S3StoreBackend"])
def store(request: pytest.FixtureRequest, tmp_path: Path, moto_endpoint: str, bucket: str, prefix: str) -> StateStore:
    """Configured through settings alone; the class path goes through Airflow's alias ``state_store_backend``."""
    worker_key = "state_backend" if request.param == "s3" else "state_store_backend"
    config = Config.from_dict(
        {
            "state_store": {"backend": "metastore", "sql_alchemy_conn": f"sqlite:///{tmp_path}/meta.db"},
            "workers": {worker_key: request.param},
            "statestore_s3": {"bucket": bucket, "prefix": prefix, "endpoint_url": moto_endpoint, "threshold": "32"},
        }
    )
    return StateStore.from_config(config)


def objects(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    """The (scope, key) paths of the values in the bucket: ``ref/<path>/<version>`` without ``ref/`` and version."""
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    names = [item["Key"].removeprefix(prefix + "/") for item in listed]
    assert all(name.startswith("ref/") for name in names), names
    return [name.removeprefix("ref/").rpartition("/")[0] for name in names]


def test_server_row_holds_only_the_wrapped_reference(
    store: StateStore, s3_client: Any, bucket: str, prefix: str
) -> None:
    value = {"rows": list(range(100))}
    store.task_store(TASK).set("checkpoint", value)
    reference = json.loads(store.backend.get(TASK, "checkpoint"))["__airflow_state_ref__"]
    assert reference.startswith(f"s3://{bucket}/{prefix}/ref/task/etl/run-1/load/2/checkpoint/")
    body = s3_client.get_object(Bucket=bucket, Key=reference.removeprefix(f"s3://{bucket}/"))["Body"].read()
    assert json.loads(body) == value
    assert store.task_store(TASK).get("checkpoint") == value


def test_small_values_stay_inline_below_the_threshold(
    store: StateStore, s3_client: Any, bucket: str, prefix: str
) -> None:
    store.task_store(TASK).set("job_id", "j-1")
    assert store.backend.get(TASK, "job_id") == '"j-1"'
    assert objects(s3_client, bucket, prefix) == []
    assert store.task_store(TASK).get("job_id") == "j-1"


def test_delete_and_clear_remove_row_and_object(store: StateStore, s3_client: Any, bucket: str, prefix: str) -> None:
    ts = store.task_store(TASK)
    big = "x" * 100
    for key in ("a", "b", "c"):
        ts.set(key, big)
    store.task_store(TaskScope("etl", "run-1", "load", 3)).set("other", big)
    ts.delete("a")
    assert store.backend.get(TASK, "a") is None
    assert ts.get("a", default="gone") == "gone"
    assert sorted(objects(s3_client, bucket, prefix)) == [
        "task/etl/run-1/load/2/b",
        "task/etl/run-1/load/2/c",
        "task/etl/run-1/load/3/other",
    ]
    ts.clear()
    assert store.backend.keys(TASK) == []
    assert objects(s3_client, bucket, prefix) == ["task/etl/run-1/load/3/other"]


def test_clear_on_success_clears_server_and_bucket(store: StateStore, s3_client: Any, bucket: str, prefix: str) -> None:
    def failing_attempt() -> None:
        with store.task_attempt(TASK, clear_on_success=True) as ts:
            ts.set("progress", "y" * 100)
            raise RuntimeError("attempt failed")

    with pytest.raises(RuntimeError, match="attempt failed"):
        failing_attempt()
    assert objects(s3_client, bucket, prefix) == ["task/etl/run-1/load/2/progress"]  # kept for the retry
    with store.task_attempt(TASK, clear_on_success=True) as ts:
        assert ts.get("progress") == "y" * 100
    assert objects(s3_client, bucket, prefix) == []
    assert store.backend.keys(TASK) == []


async def test_async_accessors_and_assets(store: StateStore, s3_client: Any, bucket: str, prefix: str) -> None:
    assets = store.asset_store(name="orders")
    await assets.aset("watermark", {"ts": "2024-01-01T00:00:00Z", "pad": "z" * 64})
    row = json.loads(store.backend.get(AssetScope(name="orders"), "watermark"))
    assert row["__airflow_state_ref__"].startswith(f"s3://{bucket}/{prefix}/ref/asset/name/orders/watermark/")
    assert (await assets.aget("watermark"))["ts"] == "2024-01-01T00:00:00Z"
    await assets.aclear()
    assert await assets.aget("watermark") is None
    assert objects(s3_client, bucket, prefix) == []
