"""End to end through ``StateStore``: the SQL metastore (SQLite) on the server side, GCS on the worker side."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud import storage

from statestore.core import Config, MetastoreStoreBackend, StateStore, TaskScope
from statestore.core.base import ReferenceNotFoundError
from statestore.gcs import GCSStoreBackend

from .conftest import MakeBackend


@pytest.fixture
def worker(make_backend: MakeBackend) -> GCSStoreBackend:
    return make_backend()


@pytest.fixture
def store(tmp_path: Path, worker: GCSStoreBackend) -> StateStore:
    config = Config.from_dict({"state_store": {"clear_on_success": "true"}})
    server = MetastoreStoreBackend(f"sqlite:///{tmp_path / 'state.db'}", config=config)
    return StateStore(backend=server, worker_backend=worker, config=config)


def test_server_row_holds_only_the_reference(
    store: StateStore, worker: GCSStoreBackend, raw_client: storage.Client
) -> None:
    ts = store.task_store("etl", "run-1", "load", 0)
    ts.set("checkpoint", {"offset": 1234, "files": ["a", "b"]})
    scope = TaskScope("etl", "run-1", "load", 0)
    row = store.backend.get(scope, "checkpoint")
    assert row is not None
    reference = json.loads(row)["__airflow_state_ref__"]
    assert reference.startswith(f"gs://{worker.bucket}/{worker.prefix}/ref/task/etl/run-1/load/0/checkpoint/")
    name = worker._name_from_reference(reference)
    blob = raw_client.bucket(worker.bucket).get_blob(name)
    assert blob.download_as_bytes() == b'{"offset":1234,"files":["a","b"]}'
    assert blob.custom_time is not None  # its row expires (default retention), so the value may too, a day later
    assert blob.custom_time > store.backend._get(scope, "checkpoint", None).expires_at  # type: ignore[union-attr]
    assert ts.get("checkpoint") == {"offset": 1234, "files": ["a", "b"]}

    ts.delete("checkpoint")
    assert store.backend.get(scope, "checkpoint") is None
    assert raw_client.bucket(worker.bucket).get_blob(name) is None


def test_clear_and_clear_on_success_remove_both_sides(store: StateStore, worker: GCSStoreBackend) -> None:
    with store.task_attempt("etl", "run-2", "load") as ts:
        ts.set("a", 1)
        ts.set("b", "two")
        ref = json.loads(store.backend.get(ts.scope, "a") or "")["__airflow_state_ref__"]
        assert worker.load_value(ref) == "1"
    assert store.task_store("etl", "run-2", "load").get("a") is None
    assert list(worker.iter_values()) == []
    with pytest.raises(ReferenceNotFoundError):
        worker.load_value(ref)

    def failing_attempt() -> None:
        with store.task_attempt("etl", "run-3", "load") as attempt:
            attempt.set("progress", 50)
            raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        failing_attempt()
    assert store.task_store("etl", "run-3", "load").get("progress") == 50  # kept for the retry


async def test_asset_values_async(store: StateStore, worker: GCSStoreBackend, raw_client: storage.Client) -> None:
    watermark = store.asset_store(name="warehouse.orders")
    await watermark.aset("watermark", "2024-06-01T00:00:00Z")
    assert await watermark.aget("watermark") == "2024-06-01T00:00:00Z"
    row = await store.backend.aget(watermark.scope, "watermark")
    name = worker._name_from_reference(json.loads(row or "")["__airflow_state_ref__"])
    assert raw_client.bucket(worker.bucket).get_blob(name).custom_time is None  # assets never expire
    await watermark.aclear()
    assert await watermark.aget("watermark") is None
    assert raw_client.bucket(worker.bucket).get_blob(name) is None
