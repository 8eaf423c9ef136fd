"""statestore backends inside the real Airflow 3.3.2 (``nox -s airflow``).

Each check runs in a fresh interpreter with a private ``AIRFLOW_HOME`` and ``AIRFLOW__...``
variables, as an Airflow process would start: Airflow's configuration is loaded first and our
class is imported by Airflow itself from ``[state_store] backend`` / ``[workers] state_store_backend``.
No Airflow database is needed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.airflow

MEMORY = "statestore.core.backends.memory.MemoryStoreBackend"
LOCAL = "statestore.core.backends.local.LocalStoreBackend"
METASTORE = "statestore.core.metastore.MetastoreStoreBackend"


def fresh_airflow_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The environment of a fresh Airflow process: private homes, this venv's commands, only ``settings`` set."""
    if importlib.util.find_spec("airflow.state") is None:
        pytest.fail(
            "Airflow is not installed here; run `nox -s airflow` (installs apache-airflow-core==3.3.2 "
            "and apache-airflow-task-sdk==1.3.2)",
            pytrace=False,
        )
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "STATESTORE_HOME": str(tmp_path / "statestore-home"),
        **settings,
    }


@pytest.fixture
def airflow_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a fresh Airflow process: private home, our settings, no STATESTORE__ variables."""
    return fresh_airflow_env(
        tmp_path,
        AIRFLOW__STATE_STORE__DEFAULT_RETENTION_DAYS="3",
        AIRFLOW__STATE_STORE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'state.db'}",
        AIRFLOW__STATESTORE_LOCAL__PATH=str(tmp_path / "objects"),
    )


def run_in_airflow(env: dict[str, str], script: str) -> Any:
    """Run ``script`` in a fresh interpreter; it prints one JSON document on its last line."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_airflow_commands(env: dict[str, str], *commands: list[str]) -> None:
    """Run ``airflow <command>`` for each command in turn; each must succeed (its output tail is the failure)."""
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"airflow {' '.join(command)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("class_path", [MEMORY, LOCAL, METASTORE])
def test_server_resolver_accepts_our_class(airflow_env: dict[str, str], class_path: str) -> None:
    """``airflow.state.resolve_state_backend`` imports the class itself and passes its issubclass check."""
    airflow_env["AIRFLOW__STATE_STORE__BACKEND"] = class_path
    out = run_in_airflow(
        airflow_env,
        """
        import importlib, json, os, sys
        import airflow.state
        module, _, name = os.environ["AIRFLOW__STATE_STORE__BACKEND"].rpartition(".")
        imported_before = module in sys.modules  # (statestore.core itself is: Airflow's provider discovery)
        cls = airflow.state.resolve_state_backend()
        backend = airflow.state.get_state_backend()
        setting = backend.config.setting("state_store", "default_retention_days")
        print(json.dumps({
            "imported_before": imported_before,
            "same_class": cls is getattr(importlib.import_module(module), name),
            "subclass": issubclass(cls, airflow.state.BaseStoreBackend),
            "retention": backend.config.default_retention_days,
            "source": setting.source,
        }))
        """,
    )
    assert out == {
        "imported_before": False,
        "same_class": True,
        "subclass": True,
        "retention": 3,
        "source": "airflow configuration [state_store] default_retention_days",
    }


def test_server_resolver_when_statestore_was_imported_first(airflow_env: dict[str, str]) -> None:
    """A process that imported statestore before Airflow still passes the check, by the exported class path.

    Airflow's ``import_string`` looks the class up on ``statestore.core`` (a lazy export), which
    registers statestore's base with Airflow's ABCs (``statestore.core.airflow_compat``).
    """
    airflow_env["AIRFLOW__STATE_STORE__BACKEND"] = "statestore.core.MemoryStoreBackend"
    out = run_in_airflow(
        airflow_env,
        """
        import json, sys
        from statestore.core import MemoryStoreBackend
        assert "airflow" not in sys.modules
        import airflow.state
        from airflow.sdk.state import BaseStoreBackend as SdkBase
        print(json.dumps([
            airflow.state.resolve_state_backend() is MemoryStoreBackend,
            issubclass(MemoryStoreBackend, SdkBase),
        ]))
        """,
    )
    assert out == [True, True]


def test_an_unrelated_class_is_still_refused(airflow_env: dict[str, str]) -> None:
    """Registration covers statestore backends only: Airflow still refuses other classes."""
    airflow_env["AIRFLOW__STATE_STORE__BACKEND"] = "collections.OrderedDict"
    out = run_in_airflow(
        airflow_env,
        """
        import json
        import statestore.core
        import airflow.state
        try:
            airflow.state.resolve_state_backend()
            print(json.dumps("accepted"))
        except TypeError as exc:
            print(json.dumps(str(exc)))
        """,
    )
    assert out == "Your custom state backend `OrderedDict` is not a subclass of `BaseStoreBackend`."


@pytest.mark.parametrize("class_path", [MEMORY, LOCAL])
def test_worker_loader_and_airflow_scopes(airflow_env: dict[str, str], class_path: str) -> None:
    """The worker loader instantiates our class with no arguments; Airflow's scopes and hooks work with it."""
    airflow_env["AIRFLOW__WORKERS__STATE_STORE_BACKEND"] = class_path
    out = run_in_airflow(
        airflow_env,
        """
        import asyncio, json
        from airflow.sdk.execution_time.context import _get_worker_state_store_backend
        from airflow.sdk.state import AssetScope, TaskScope

        backend = _get_worker_state_store_backend()
        task = TaskScope(dag_id="etl/daily", run_id="manual__2026-01-01", task_id="load", map_index=2)
        other = TaskScope(dag_id="etl/daily", run_id="manual__2026-01-01", task_id="load", map_index=3)
        asset = AssetScope(name="warehouse.orders", uri="s3://lake/orders")
        backend.set(task, "job/id", '"j-1"')
        backend.set(other, "job/id", '"j-2"')
        backend.set(asset, "watermark", '"2026-01-01"')
        seen = [backend.get(task, "job/id"), backend.get(other, "job/id"), backend.get(asset, "watermark")]
        backend.clear(task)
        after_clear = [backend.get(task, "job/id"), backend.get(other, "job/id")]
        asyncio.run(backend.aset(asset, "cursor", "42"))
        async_seen = asyncio.run(backend.aget(asset, "cursor"))
        backend.delete(asset, "cursor")

        ref = backend.serialize_task_state_store_to_ref(value={"rows": [1, 2]}, key="ckpt", scope=task)
        same = backend.serialize_task_state_store_to_ref(value={"rows": [1, 2]}, key="ckpt", scope=task)
        entry = backend._get(backend.resolve_reference(ref)[0], "ckpt", None) if "memory" in ref else None
        expiry = None if entry is None else entry.expires_at
        asset_ref = backend.serialize_asset_state_store_to_ref(value=[7], key="ckpt", scope=asset)
        print(json.dumps({
            "class": f"{type(backend).__module__}.{type(backend).__qualname__}",
            "location": backend.location,
            "seen": seen,
            "after_clear": after_clear,
            "async_seen": async_seen,
            "cursor_deleted": backend.get(asset, "cursor") is None,
            "same_ref": ref == same,
            "value": backend.deserialize_task_state_store_from_ref(ref),
            "asset_value": backend.deserialize_asset_state_store_from_ref(asset_ref),
            "memory_expiry": expiry and expiry.isoformat(),
            "worker_setting": backend.config.worker_backend,
        }))
        """,
    )
    assert out["class"] == class_path
    assert out["seen"] == ['"j-1"', '"j-2"', '"2026-01-01"']
    assert out["after_clear"] == [None, '"j-2"'], "clear touched only the task's own map index"
    assert (out["async_seen"], out["cursor_deleted"]) == ("42", True)
    assert out["same_ref"] is (class_path == MEMORY), "local writes a new version per write; memory overwrites"
    assert (out["value"], out["asset_value"]) == ({"rows": [1, 2]}, [7])
    assert out["worker_setting"] == class_path, "[workers] state_store_backend is read as state_backend"
    if class_path == MEMORY:
        assert out["memory_expiry"] is None, "the hooks know no retention: the value carries no expiry"
    else:
        assert out["location"].startswith(f"local://{airflow_env['AIRFLOW__STATESTORE_LOCAL__PATH']}"), (
            "the plugin section came from AIRFLOW__STATESTORE_LOCAL__PATH"
        )
        assert any(Path(airflow_env["AIRFLOW__STATESTORE_LOCAL__PATH"]).rglob("*")), "values were written as files"


def test_invalid_setting_in_airflow_names_the_airflow_key(airflow_env: dict[str, str]) -> None:
    """A bad value in Airflow's configuration is reported with where it came from."""
    airflow_env["AIRFLOW__WORKERS__STATE_STORE_BACKEND"] = MEMORY
    airflow_env["AIRFLOW__STATE_STORE__CLEAR_ON_SUCCESS"] = "sometimes"
    out = run_in_airflow(
        airflow_env,
        """
        import json
        from airflow.sdk.execution_time.context import _get_worker_state_store_backend
        try:
            _get_worker_state_store_backend()
            print(json.dumps("loaded"))
        except Exception as exc:
            print(json.dumps(f"{type(exc).__name__}: {exc}"))
        """,
    )
    assert out == (
        "ConfigurationError: [state_store] clear_on_success must be true or false, got 'sometimes' "
        "(from airflow configuration [state_store] clear_on_success)"
    )


PLUGINS = {
    "statestore.s3.S3StoreBackend": (
        {"AIRFLOW__STATESTORE_S3__BUCKET": "airflow-state", "AIRFLOW__STATESTORE_S3__PREFIX": "team-a"},
        "s3://airflow-state/team-a",
    ),
    "statestore.gcs.GCSStoreBackend": (
        {"AIRFLOW__STATESTORE_GCS__BUCKET": "airflow-state", "AIRFLOW__STATESTORE_GCS__PREFIX": "team-a"},
        "gs://airflow-state/team-a",
    ),
    "statestore.redis.RedisStoreBackend": (
        {"AIRFLOW__STATESTORE_REDIS__KEY_PREFIX": "airflow-compat:"},
        "key_prefix=airflow-compat:",
    ),
}


@pytest.mark.parametrize("class_path", sorted(PLUGINS))
def test_plugin_classes_in_both_airflow_settings(airflow_env: dict[str, str], class_path: str) -> None:
    """Each plugin class passes the server resolver and is built by the worker loader from airflow.cfg settings."""
    settings, location = PLUGINS[class_path]
    airflow_env.update(settings)
    airflow_env["AIRFLOW__STATE_STORE__BACKEND"] = class_path
    airflow_env["AIRFLOW__WORKERS__STATE_STORE_BACKEND"] = class_path
    out = run_in_airflow(
        airflow_env,
        """
        import json
        import airflow.state
        from airflow.sdk.execution_time.context import _get_worker_state_store_backend

        server = airflow.state.get_state_backend()
        worker = _get_worker_state_store_backend()
        print(json.dumps({
            "server": type(server).__name__,
            "worker": type(worker).__name__,
            "locations": [server.location, worker.location],
        }))
        """,
    )
    name = class_path.rpartition(".")[2]
    assert (out["server"], out["worker"]) == (name, name)
    assert all(location in each for each in out["locations"]), out["locations"]


def test_redis_worker_backend_with_airflow_scopes(airflow_env: dict[str, str]) -> None:
    """Redis as Airflow's worker backend stores and reads values under Airflow's own scope objects."""
    prefix = f"airflow-compat-{uuid.uuid4().hex[:8]}:"
    airflow_env["AIRFLOW__WORKERS__STATE_STORE_BACKEND"] = "statestore.redis.RedisStoreBackend"
    airflow_env["AIRFLOW__STATESTORE_REDIS__KEY_PREFIX"] = prefix
    out = run_in_airflow(
        airflow_env,
        """
        import json
        from airflow.sdk.execution_time.context import _get_worker_state_store_backend
        from airflow.sdk.state import AssetScope, TaskScope

        backend = _get_worker_state_store_backend()
        task = TaskScope(dag_id="etl", run_id="manual__1", task_id="load", map_index=0)
        ref = backend.serialize_task_state_store_to_ref(value={"page": 4}, key="ckpt", scope=task)
        asset_ref = backend.serialize_asset_state_store_to_ref(
            value="2026-01-01", key="watermark", scope=AssetScope(name="orders", uri="s3://lake/orders")
        )
        read = [
            backend.deserialize_task_state_store_from_ref(ref),
            backend.deserialize_asset_state_store_from_ref(asset_ref),
        ]
        backend.clear(task)
        backend.clear(AssetScope(name="orders", uri="s3://lake/orders"))
        print(json.dumps({"ref": ref, "read": read, "after_clear": backend.keys(task)}))
        """,
    )
    assert out["ref"].startswith("redis://")
    assert prefix in out["ref"]
    assert out["read"] == [{"page": 4}, "2026-01-01"]
    assert out["after_clear"] == []


DAG_FILE = """
import json, os
from airflow.sdk import dag, task
from airflow.sdk.execution_time.context import NEVER_EXPIRE


@dag(schedule=None, catchup=False)
def statestore_redis_cluster():
    @task
    def use_store(**context):
        ts = context["task_state_store"]
        ts.set("job", {"id": "j-1"})
        ts.set("forever", 1, retention=NEVER_EXPIRE)
        ts.set("job", {"id": "j-2"})
        with open(os.environ["STATESTORE_DAG_OUT"], "w") as out:
            json.dump({"job": ts.get("job"), "forever": ts.get("forever")}, out)

    use_store()


statestore_redis_cluster()
"""


def test_redis_cluster_in_both_roles_in_a_real_dag_run(airflow_env: dict[str, str], tmp_path: Path) -> None:
    """``airflow dags test`` with RedisStoreBackend (``cluster = True``) as ``[state_store] backend`` and as
    ``[workers] state_store_backend`` on a 3-primary cluster: one section, one prefix, both roles."""
    from redis.cluster import RedisCluster

    from statestore.redis.testing import LocalCluster

    cluster = LocalCluster(tmp_path / "cluster")
    try:
        dags = tmp_path / "dags"
        dags.mkdir()
        (dags / "statestore_redis_cluster.py").write_text(DAG_FILE)
        prefix = f"airflow-dag-{uuid.uuid4().hex[:8]}:"
        airflow_env.update(
            {
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__STATE_STORE__BACKEND": "statestore.redis.RedisStoreBackend",
                "AIRFLOW__WORKERS__STATE_STORE_BACKEND": "statestore.redis.RedisStoreBackend",
                "AIRFLOW__STATESTORE_REDIS__URL": cluster.url,
                "AIRFLOW__STATESTORE_REDIS__CLUSTER": "True",
                "AIRFLOW__STATESTORE_REDIS__KEY_PREFIX": prefix,
                "STATESTORE_DAG_OUT": str(tmp_path / "out.json"),
            }
        )
        run_airflow_commands(airflow_env, ["db", "migrate"], ["dags", "test", "statestore_redis_cluster"])
        assert json.loads((tmp_path / "out.json").read_text()) == {"job": {"id": "j-2"}, "forever": 1}
        with RedisCluster.from_url(cluster.url, decode_responses=True) as client:
            names = list(client.scan_iter(match=f"{prefix}*"))
            rows = [n for n in names if not n.startswith(f"{prefix}ref:") and n.endswith(("/job", "/forever"))]
            versions = [n for n in names if n.startswith(f"{prefix}ref:")]
            assert len(rows) == 2, names  # the server role's values: the references
            for row in rows:
                marker = json.loads(client.get(row).partition(":")[2])
                assert marker["__airflow_state_ref__"].removeprefix("redis://") in versions
            assert len(versions) == 3, names  # one version per set, the overwritten one kept for reconciliation
            assert all(client.pttl(v) == -1 for v in versions)  # Airflow's hooks know no retention: no TTL
    finally:
        cluster.stop()
