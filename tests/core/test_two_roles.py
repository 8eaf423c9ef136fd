"""One location for both roles: versioned worker backends share it; others are refused, spelling variants included."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from statestore.core import NEVER_EXPIRE, Config, ConfigurationError, MetastoreStoreBackend, StateStore
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.store import check_distinct_roles, same_location
from statestore.core.testing.lifecycle import SHORT, values_of


def test_local_serves_both_roles_in_one_directory(tmp_path: Path) -> None:
    """Rows under task/ and asset/, values under ref/: a value is never replaced by its own reference."""
    config = Config.from_dict({})
    server, worker = LocalStoreBackend(tmp_path, config=config), LocalStoreBackend(tmp_path, config=config)
    store = StateStore(server, worker, config)
    ts = store.task_store("d", "r", "t")
    ts.set("job", {"id": "j-1"}, retention=NEVER_EXPIRE)
    ts.set("old", "x", retention=SHORT)
    asset = store.asset_store(name="orders")
    asset.set("watermark", 42)
    assert ts.get("job") == {"id": "j-1"}
    assert asset.get("watermark") == 42
    assert json.loads(server.get(ts.scope, "job") or "")["__airflow_state_ref__"].startswith(f"local://{tmp_path}/ref/")
    assert store.reconcile(grace=timedelta(0)).discarded == 0, "rows of the server role are not values"
    while store.cleanup(dry_run=True).removed < 1:
        pass
    store.cleanup()  # an object-store server deletes its own expired rows; their values are left to reconcile
    assert ts.keys() == ["job"]
    assert store.reconcile(grace=timedelta(0)).discarded == 1
    ts.delete("job")
    asset.clear()
    assert values_of(worker) == []
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sqlite:////x/./same.db", "sqlite:////x/same.db"),
        ("sqlite:////x/a/../same.db", "sqlite:////x/same.db"),
        ("postgresql+psycopg://u@localhost/db", "postgresql://u@127.0.0.1:5432/db"),
        ("mysql+pymysql://root@127.0.0.1:3306/test", "mysql://root@localhost/test"),
        ("redis://localhost:6379/0", "redis://127.0.0.1/0"),
        ("s3://bucket/prefix/", "s3://bucket/prefix"),
        ("local:///data/objects/", "local:///data/./objects"),
    ],
)
def test_spelling_variants_name_the_same_location(first: str, second: str) -> None:
    assert same_location(first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("sqlite:////x/same.db", "sqlite:////x/other.db"),
        ("postgresql://u@localhost/db", "postgresql://u@localhost:5433/db"),
        ("postgresql://u@db1/db", "postgresql://u@db2/db"),
        ("s3://bucket/a", "s3://bucket/b"),
    ],
)
def test_different_locations_stay_different(first: str, second: str) -> None:
    assert not same_location(first, second)


def test_metastore_for_both_roles_is_refused_in_any_spelling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = Config.from_dict({})
    monkeypatch.chdir(tmp_path)
    server = MetastoreStoreBackend(f"sqlite:///{tmp_path}/./same.db", config=config)
    for spelling in (f"sqlite:///{tmp_path}/same.db", "sqlite:///same.db", f"sqlite:///{tmp_path}/sub/../same.db"):
        worker = MetastoreStoreBackend(spelling, config=config)
        with pytest.raises(
            ConfigurationError, match=r"\[state_store\] backend.*\[workers\] state_backend.*own location"
        ):
            StateStore(server, worker, config)
        with pytest.raises(ConfigurationError):
            check_distinct_roles(server, worker)


def test_hook_write_of_a_metastore_worker_is_refused_when_it_is_also_the_server(tmp_path: Path) -> None:
    """As in Airflow, where the roles are built apart: the first hook write fails, nothing is written."""
    url = f"sqlite:///{tmp_path}/state.db"
    config = Config.from_dict({"state_store": {"backend": "metastore", "sql_alchemy_conn": url}})
    worker = MetastoreStoreBackend(config=config)
    with pytest.raises(ConfigurationError, match="both store in"):
        worker.serialize_task_state_store_to_ref(value=1, key="k", scope=TaskScopeLike())
    separate = Config.from_dict(
        {"state_store": {"backend": "metastore", "sql_alchemy_conn": f"sqlite:///{tmp_path}/server.db"}}
    )
    other = MetastoreStoreBackend(url, config=separate)
    assert other.serialize_task_state_store_to_ref(value=1, key="k", scope=TaskScopeLike()) is not None


class TaskScopeLike:
    """Looks like Airflow's TaskScope."""

    dag_id, run_id, task_id, map_index = "d", "r", "t", -1
