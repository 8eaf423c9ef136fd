"""StateStore and its accessors on the metastore (SQLite) with and without the ``local`` worker-side backend."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from statestore.core import (
    NEVER_EXPIRE,
    AssetScope,
    Config,
    ConfigurationError,
    StateStore,
    StateStoreError,
    TaskScope,
    ValueTooLargeError,
)
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.base import utcnow
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.metastore.schema import task_state


@dataclass(frozen=True)
class Asset:
    """Looks like Airflow's ``Asset`` (name and uri attributes)."""

    name: str
    uri: str


def _config(**state_store: object) -> Config:
    return Config.from_dict({"state_store": {k: str(v) for k, v in state_store.items()}})


@pytest.fixture
def config() -> Config:
    return _config()


@pytest.fixture
def server(sqlite_url: sa.URL, config: Config) -> MetastoreStoreBackend:
    return MetastoreStoreBackend(sqlite_url, config=config)


@pytest.fixture
def objects(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def store(server: MetastoreStoreBackend, objects: Path, config: Config) -> StateStore:
    return StateStore(server, LocalStoreBackend(objects, config=config), config)


@pytest.fixture
def inline_store(server: MetastoreStoreBackend, config: Config) -> StateStore:
    return StateStore(server, None, config)


@pytest.fixture
def dag() -> str:
    return f"dag-{uuid.uuid4().hex[:10]}"


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


VALUES = [
    "text",
    "",
    0,
    -7,
    2**70,
    1.5,
    True,
    False,
    [],
    {},
    [1, "two", None, {"x": [3.25]}],
    {"unicode ✓": "中文", "nested": {"a": [True, None]}},
    {"__airflow_state_ref__": "metastore://task/x/y/z/-1/k"},
    {"__airflow_state_ref__": "a", "other": 1},
    {"__statestore_escaped__": {"__airflow_state_ref__": "a"}},
    {"__statestore_escaped__": 1},
]


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:40] for v in VALUES])
def test_values_round_trip_exactly(request: pytest.FixtureRequest, worker: bool, value: object, dag: str) -> None:
    store: StateStore = request.getfixturevalue("store" if worker else "inline_store")
    ts = store.task_store(dag, "run", "task")
    ts.set("k", value)
    got = ts.get("k")
    assert got == value
    assert type(got) is type(value)
    asset = store.asset_store(name=dag)
    asset.set("k", value)
    assert asset.get("k") == value


def test_values_round_trip_on_every_database(metastore_url: sa.URL, tmp_path: Path, dag: str) -> None:
    config = _config()
    store = StateStore(MetastoreStoreBackend(metastore_url, config=config), LocalStoreBackend(tmp_path), config)
    ts = store.task_store(dag, "run", "task")
    for i, value in enumerate(VALUES):
        ts.set(f"k{i}", value)
    assert [ts.get(f"k{i}") for i in range(len(VALUES))] == VALUES
    store.backend.dispose()  # type: ignore[attr-defined]


def test_marker_lookalike_is_escaped_on_the_server(inline_store: StateStore, dag: str) -> None:
    ts = inline_store.task_store(dag, "run", "task")
    ts.set("k", {"__airflow_state_ref__": "s3://bucket/key"})
    assert inline_store.backend.get(ts.scope, "k") == (
        '{"__statestore_escaped__":{"__airflow_state_ref__":"s3://bucket/key"}}'
    )
    assert ts.get("k") == {"__airflow_state_ref__": "s3://bucket/key"}


BAD_VALUES = [
    (None, ValueError, "cannot store None"),
    (math.nan, ValueError, "NaN and Infinity"),
    ({"a": [1, math.inf]}, ValueError, "NaN and Infinity"),
    ((1, 2), TypeError, "tuple"),
    ({1, 2}, TypeError, "set"),
    ({1: "x"}, TypeError, "str keys"),
    (object(), TypeError, "not JSON-compatible"),
]


@pytest.mark.parametrize("worker", [False, True], ids=["inline", "worker"])
@pytest.mark.parametrize(("value", "error", "message"), BAD_VALUES, ids=[repr(v[0])[:20] for v in BAD_VALUES])
def test_bad_values_are_refused_and_nothing_is_written(
    request: pytest.FixtureRequest, objects: Path, worker: bool, value: object, error: type, message: str, dag: str
) -> None:
    store: StateStore = request.getfixturevalue("store" if worker else "inline_store")
    ts = store.task_store(dag, "run", "task")
    with pytest.raises(error, match=message):
        ts.set("k", value)
    asset = store.asset_store(name=dag)
    with pytest.raises(error, match=message):
        asset.set("k", value)
    assert ts.keys() == []
    assert asset.keys() == []
    assert _files(objects) == []


@pytest.mark.parametrize(
    ("key", "error", "message"),
    [("", ValueError, "non-empty"), ("k" * 513, ValueError, "512 characters, got 513"), (5, TypeError, "must be str")],
)
def test_bad_keys_are_refused_and_nothing_is_written(
    store: StateStore, objects: Path, key: object, error: type, message: str, dag: str
) -> None:
    ts = store.task_store(dag, "run", "task")
    for call in (lambda: ts.set(key, 1), lambda: ts.get(key), lambda: ts.delete(key)):  # type: ignore[arg-type]
        with pytest.raises(error, match=message):
            call()
    assert ts.keys() == []
    assert _files(objects) == []


def test_odd_keys_are_stored_safely(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task")
    keys = ["../../etc/passwd", "a/b", "%2F", "ключ", "k" * 512, ".", "..", " "]
    for i, key in enumerate(keys):
        ts.set(key, i)
    assert [ts.get(k) for k in keys] == list(range(len(keys)))
    assert all(objects in p.parents for p in _files(objects))


def _expiry(store: StateStore, scope: TaskScope, key: str) -> object:
    with store.backend.engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(
            sa.select(task_state.c.expires_at).where(task_state.c.dag_id == scope.dag_id, task_state.c.key == key)
        ).scalar_one()


def test_retention(server: MetastoreStoreBackend, dag: str) -> None:
    store = StateStore(server, None, _config(default_retention_days=30))
    ts = store.task_store(dag, "run", "task")
    before = utcnow()
    ts.set("default", 1)
    ts.set("week", 1, retention=timedelta(days=7))
    ts.set("never", 1, retention=NEVER_EXPIRE)
    after = utcnow()
    assert before + timedelta(days=30) <= _expiry(store, ts.scope, "default") <= after + timedelta(days=30)  # type: ignore[operator]
    assert before + timedelta(days=7) <= _expiry(store, ts.scope, "week") <= after + timedelta(days=7)  # type: ignore[operator]
    assert _expiry(store, ts.scope, "never") is None
    never_by_default = StateStore(server, None, _config(default_retention_days=0)).task_store(dag, "run", "t2")
    never_by_default.set("k", 1)
    assert _expiry(store, never_by_default.scope, "k") is None


def test_expired_values_read_as_missing(inline_store: StateStore, dag: str) -> None:
    ts = inline_store.task_store(dag, "run", "task")
    ts.set("k", 1, retention=timedelta(microseconds=1))
    assert ts.get("k", "gone") == "gone"


@pytest.mark.parametrize(
    ("retention", "error", "message"),
    [
        (5, TypeError, r"got int 5; write e.g. retention=timedelta\(days=5\)"),
        (True, TypeError, "got bool"),
        (5.0, TypeError, "got float"),
        ("P1D", TypeError, "got str"),
        (timedelta(0), ValueError, "must be positive"),
        (timedelta(days=-1), ValueError, "must be positive"),
        (timedelta(days=36526), ValueError, r"limited to 36525 days \(100 years\).*use NEVER_EXPIRE"),
        (timedelta.max, ValueError, "limited to 36525 days"),
    ],
)
def test_bad_retention_is_refused_and_nothing_is_written(
    store: StateStore, objects: Path, retention: object, error: type, message: str, dag: str
) -> None:
    ts = store.task_store(dag, "run", "task")
    with pytest.raises(error, match=message):
        ts.set("k", 1, retention=retention)
    assert ts.keys() == []
    assert _files(objects) == []


def test_worker_flow_stores_a_marker_and_the_value_outside(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task", 3)
    ts.set("job", {"id": "j-1"})
    row = store.backend.get(ts.scope, "job")
    (path,) = _files(objects)
    assert row == '{"__airflow_state_ref__":"local://%s"}' % path  # noqa: UP031
    assert path.relative_to(objects).parts[:-1] == ("ref", "task", dag, "run", "task", "3", "job")
    assert ts.get("job") == {"id": "j-1"}
    ts.delete("job")
    assert store.backend.get(ts.scope, "job") is None
    assert _files(objects) == []
    ts.set("a", 1)
    ts.set("b", 2)
    ts.clear()
    assert ts.keys() == []
    assert _files(objects) == []


def test_reference_without_worker_backend_is_a_clear_error(store: StateStore, dag: str) -> None:
    store.task_store(dag, "run", "task").set("job", "x")
    reader = StateStore(store.backend, None, store.config).task_store(dag, "run", "task")
    with pytest.raises(StateStoreError, match=r"holds a reference .* no worker-side backend is configured"):
        reader.get("job")


def test_vanished_external_value_reads_as_missing(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task")
    ts.set("job", "x")
    for path in _files(objects):
        path.unlink()
    assert ts.get("job", "default") == "default"


def test_crash_between_server_delete_and_external_delete(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task")
    ts.set("job", "first")
    store.backend.delete(ts.scope, "job")  # the server delete ran, then the worker died
    assert ts.get("job") is None
    (orphan,) = _files(objects)
    ts.set("job", "second")  # a later set writes a new version and never touches the orphan
    assert ts.get("job") == "second"
    assert store.reconcile(grace=timedelta(0)).discarded == 1  # reconciliation reclaims the orphan
    assert orphan not in _files(objects)
    assert ts.get("job") == "second"


def test_one_location_for_both_roles_is_refused(sqlite_url: sa.URL, config: Config) -> None:
    with pytest.raises(ConfigurationError, match=r"both store in sqlite:///.*give the worker-side backend its own"):
        StateStore(MetastoreStoreBackend(sqlite_url, config=config), MetastoreStoreBackend(sqlite_url, config=config))


def test_inline_size_limit(server: MetastoreStoreBackend, objects: Path, dag: str) -> None:
    config = _config(max_value_storage_bytes=100)
    inline = StateStore(server, None, config).task_store(dag, "run", "task")
    inline.set("small", "x" * 98)  # 100 bytes of JSON with the quotes
    with pytest.raises(ValueTooLargeError) as info:
        inline.set("big", "é" * 50)  # 102 bytes of UTF-8 JSON
    message = str(info.value)
    for part in ("'big'", "102 bytes", "100 bytes", "max_value_storage_bytes", "[workers] state_backend"):
        assert part in message
    assert inline.keys() == ["small"]
    offloaded = StateStore(server, LocalStoreBackend(objects, config=config), config).task_store(dag, "run", "task")
    offloaded.set("big", "é" * 5000)
    assert offloaded.get("big") == "é" * 5000
    unlimited = StateStore(server, None, _config(max_value_storage_bytes=0)).task_store(dag, "run", "task")
    unlimited.set("huge", "x" * 200_000)
    assert unlimited.get("huge") == "x" * 200_000


def test_cleanup_removes_external_objects_of_expired_rows(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task")
    ts.set("old", "x", retention=timedelta(microseconds=1))
    ts.set("kept", "y")
    assert len(_files(objects)) == 2
    assert store.cleanup(dry_run=True).by_kind["expired_task"] >= 1
    assert len(_files(objects)) == 2
    result = store.cleanup()
    assert result.by_kind["external_objects"] >= 1
    assert ts.keys() == ["kept"]
    assert [p.parent.name for p in _files(objects)] == ["kept"]


@pytest.mark.parametrize("configured", ["True", "False"])
def test_task_attempt_clear_on_success(server: MetastoreStoreBackend, objects: Path, configured: str, dag: str) -> None:
    config = Config.from_dict({"state_store": {"clear_on_success": configured}})
    store = StateStore(server, LocalStoreBackend(objects, config=config), config)

    def failing_attempt() -> None:
        with store.task_attempt(dag, "run", "task") as attempt:
            attempt.set("checkpoint", 3)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_attempt()
    ts = store.task_store(dag, "run", "task")
    assert ts.get("checkpoint") == 3  # a failed attempt keeps everything for the retry
    with store.task_attempt(dag, "run", "task") as ts:
        assert ts.get("checkpoint") == 3
    left = ts.keys()
    assert left == ([] if configured == "True" else ["checkpoint"])
    assert len(_files(objects)) == (0 if configured == "True" else 1)
    with store.task_attempt(TaskScope(dag, "run", "task"), clear_on_success=False) as ts:
        ts.set("kept", 1)
    assert ts.keys().count("kept") == 1


async def test_atask_attempt_clears_on_success(store: StateStore, objects: Path, dag: str) -> None:
    async with store.atask_attempt(dag, "run", "task", clear_on_success=True) as ts:
        await ts.aset("k", 1)
    assert await ts.akeys() == []
    assert _files(objects) == []


async def test_async_twins(store: StateStore, objects: Path, dag: str) -> None:
    ts = store.task_store(dag, "run", "task", 0)
    await ts.aset("k", {"a": 1}, retention=timedelta(hours=1))
    assert await ts.aget("k") == {"a": 1}
    assert await ts.aget("missing", 5) == 5
    await ts.adelete("k")
    assert await ts.aget("k") is None
    await ts.aset("x", 1)
    await ts.aclear()
    assert await ts.akeys() == []
    asset = store.asset_store(name=dag)
    await asset.aset("wm", 10)
    assert await asset.aget("wm") == 10
    assert await asset.akeys() == ["wm"]
    await asset.adelete("wm")
    await asset.aset("wm2", 1)
    await asset.aclear()
    assert await asset.akeys() == []
    assert _files(objects) == []
    with pytest.raises(ValueError, match="cannot store None"):
        await ts.aset("k", None)
    with pytest.raises(TypeError, match="got int"):
        await ts.aset("k", 1, retention=3)


def test_map_indices_are_isolated_and_clear_all(inline_store: StateStore, dag: str) -> None:
    mapped = [inline_store.task_store(dag, "run", "task", i) for i in range(3)]
    for i, ts in enumerate(mapped):
        ts.set("k", i)
    mapped[0].clear()
    assert [ts.get("k") for ts in mapped] == [None, 1, 2]
    mapped[1].clear(all_map_indices=True)
    assert [ts.get("k") for ts in mapped] == [None, None, None]


def test_asset_accessors(inline_store: StateStore, dag: str) -> None:
    orders, users = Asset(name=f"{dag}-orders", uri=f"s3://b/{dag}/orders"), AssetScope(name=f"{dag}-users")
    assets = inline_store.asset_stores(inlets=[orders], outlets=[users, orders])
    assert len(assets) == 2
    assets[orders].set("wm", 1)
    assert assets[orders.name].get("wm") == 1
    assert assets[orders.uri].get("wm") == 1
    assert assets[AssetScope(uri=orders.uri)].get("wm") == 1
    assert inline_store.asset_store(orders).get("wm") == 1
    assets[users].set("wm", 2)
    with pytest.raises(ValueError, match=r"exactly one declared asset, but there are 2 .*assets\['<name>'\]"):
        assets.get("wm")
    with pytest.raises(KeyError, match="not among this task's inlets and outlets"):
        assets["unknown"]
    with pytest.raises(TypeError, match="name string, an AssetScope or an object with name/uri"):
        assets[3.5]
    single = inline_store.asset_stores(outlets=[orders])
    assert single.get("wm") == 1
    single.set("wm", 5)
    assert single.get("wm") == 5
    single.delete("wm")
    assert single.get("wm", "none") == "none"


def test_from_config_resolves_plugin_names(tmp_path: Path) -> None:
    config = Config.from_dict(
        {
            "state_store": {"backend": "metastore", "sql_alchemy_conn": f"sqlite:///{tmp_path}/s.db"},
            "workers": {"state_backend": "statestore.core.backends.local.LocalStoreBackend"},
            "statestore_local": {"path": str(tmp_path / "objects")},
        }
    )
    store = StateStore.from_config(config)
    assert isinstance(store.backend, MetastoreStoreBackend)
    assert isinstance(store.worker_backend, LocalStoreBackend)
    store.task_store("d", "r", "t").set("k", "v")
    assert store.task_store(TaskScope("d", "r", "t")).get("k") == "v"
    assert StateStore(backend="memory", config=_config()).worker_backend is None
