"""Airflow's contract, inside the real Airflow 3.3.2: no import hook, third-party backends in both roles.

* ``issubclass`` against Airflow's two ``BaseStoreBackend`` ABCs holds for every statestore backend,
  whichever of Airflow and statestore is imported first, and with another import hook (typeguard's)
  installed after statestore's import;
* an incomplete statestore backend is refused by Airflow's resolver exactly as an incomplete
  Airflow-native one is;
* a backend written to Airflow's documentation (the seed skeleton: a subclass of
  ``statestore.core.BaseStoreBackend`` with the eight methods and the hooks) and an Airflow-native one
  (subclassing Airflow's own ABCs) run a real ``airflow dags test`` in both roles, and ``StateStore``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from .test_airflow_compat import airflow_env, run_airflow_commands, run_in_airflow  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.airflow

EXPORTED = [
    "statestore.core.MemoryStoreBackend",
    "statestore.core.LocalStoreBackend",
    "statestore.core.MetastoreStoreBackend",
    "statestore.s3.S3StoreBackend",
    "statestore.redis.RedisStoreBackend",
    "statestore.gcs.GCSStoreBackend",
]

CHECK = """
import importlib, json, sys
{first}
from typeguard import install_import_hook
install_import_hook(["nothing_of_ours"])  # another import hook, inserted at the front of sys.meta_path
{second}
import airflow.state
from airflow.sdk.state import BaseStoreBackend as SdkBase
out = {{}}
for path in {paths!r}:
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)  # what Airflow's import_string does
    out[path] = [issubclass(cls, airflow.state.BaseStoreBackend), issubclass(cls, SdkBase)]
out["held"] = issubclass(held, airflow.state.BaseStoreBackend)
out["hooks"] = [type(f).__module__ for f in sys.meta_path if type(f).__module__.startswith("statestore")]
print(json.dumps(out))
"""


@pytest.mark.parametrize("order", ["airflow first", "statestore first"])
def test_issubclass_holds_in_both_orders_with_another_import_hook(airflow_env: dict[str, str], order: str) -> None:
    imports = ["import airflow.state", "from statestore.s3 import S3StoreBackend as held"]
    if order == "statestore first":
        imports.reverse()
    out = run_in_airflow(airflow_env, CHECK.format(first=imports[0], second=imports[1], paths=EXPORTED))
    assert out == {**{path: [True, True] for path in EXPORTED}, "held": True, "hooks": []}


INCOMPLETE = """
import statestore.core
{base_import}


class Incomplete({base}):
    def get(self, scope, key, *, session=None): return None
    def set(self, scope, key, value, *, expires_at=None, session=None): pass
    def delete(self, scope, key, *, session=None): pass
    def clear(self, scope, *, all_map_indices=False, session=None): pass
    async def aget(self, scope, key, *, session=None): return None
    async def aset(self, scope, key, value, *, expires_at=None, session=None): pass
    async def adelete(self, scope, key, *, session=None): pass
"""

RESOLVE = """
import json
import airflow.state
cls = airflow.state.resolve_state_backend()
try:
    airflow.state.get_state_backend()
    print(json.dumps("instantiated"))
except TypeError as exc:
    print(json.dumps(str(exc)))
"""


@pytest.mark.parametrize(
    ("base_import", "base"),
    [("", "statestore.core.BaseStoreBackend"), ("import airflow.state", "airflow.state.BaseStoreBackend")],
    ids=["statestore", "airflow-native"],
)
def test_an_incomplete_backend_is_refused_by_airflows_resolver(
    airflow_env: dict[str, str], tmp_path: Path, base_import: str, base: str
) -> None:
    module = f"incomplete_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(INCOMPLETE.format(base_import=base_import, base=base))
    airflow_env["PYTHONPATH"] = str(tmp_path)
    airflow_env["AIRFLOW__STATE_STORE__BACKEND"] = f"{module}.Incomplete"
    out = run_in_airflow(airflow_env, RESOLVE)
    assert out.startswith("Can't instantiate abstract class Incomplete"), out
    assert "aclear" in out, out


FILE_BACKENDS = '''
"""Backends written to Airflow's documentation: files under $CONTRACT_ROOT, rows and values apart."""
import json, os, shutil
from pathlib import Path

import statestore.core


def _dir(area, scope):
    if hasattr(scope, "dag_id"):
        parts = ["task", scope.dag_id, scope.run_id, scope.task_id, str(scope.map_index)]
    else:
        parts = ["asset", str(scope.name or scope.uri or scope.asset_id)]
    return Path(os.environ["CONTRACT_ROOT"], area, *parts)


class Files:
    area = "rows"

    def get(self, scope, key, *, session=None):
        path = _dir(self.area, scope) / key
        return path.read_text() if path.exists() else None

    def set(self, scope, key, value, *, expires_at=None, session=None):
        folder = _dir(self.area, scope)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(value)

    def delete(self, scope, key, *, session=None):
        (_dir(self.area, scope) / key).unlink(missing_ok=True)

    def clear(self, scope, *, all_map_indices=False, session=None):
        shutil.rmtree(_dir(self.area, scope), ignore_errors=True)

    async def aget(self, scope, key, *, session=None):
        return self.get(scope, key)

    async def aset(self, scope, key, value, *, expires_at=None, session=None):
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope, key, *, session=None):
        self.delete(scope, key)

    async def aclear(self, scope, *, all_map_indices=False, session=None):
        self.clear(scope)

    def _ref(self, scope, key, value):
        folder = _dir("values", scope)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key).write_text(json.dumps(value))
        return str(folder / key)

    def serialize_task_state_store_to_ref(self, *, value, key, scope):
        return self._ref(scope, key, value)

    def deserialize_task_state_store_from_ref(self, stored):
        return json.loads(Path(stored).read_text())

    def serialize_asset_state_store_to_ref(self, *, value, key, scope):
        return self._ref(scope, key, value)

    def deserialize_asset_state_store_from_ref(self, stored):
        return json.loads(Path(stored).read_text())


class Skeleton(Files, statestore.core.BaseStoreBackend):
    """The seed documentation's skeleton: our base, the eight methods and the hooks."""


def native(base_module):
    """An Airflow-native backend: the same methods on Airflow's own ABC (core copy: server, SDK copy: worker)."""
    import importlib

    return type("Native", (Files, importlib.import_module(base_module).BaseStoreBackend), {})
'''

DAG_FILE = """
import json, os
import pendulum
from airflow.sdk import Asset, dag, task

ORDERS = Asset(name="contract_orders", uri="file:///contract/orders")


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def statestore_contract():
    @task(inlets=[ORDERS], outlets=[ORDERS])
    def use_store(**context):
        ts = context["task_state_store"]
        ts.set("job", {"id": "j-1"})
        ts.set("job", {"id": "j-2"})
        ts.set("gone", 1)
        ts.delete("gone")
        assets = context["asset_state_store"]  # Airflow's accessors, as a DAG author uses them
        assets[ORDERS].set("watermark", 42)
        with open(os.environ["STATESTORE_DAG_OUT"], "w") as out:
            json.dump({"job": ts.get("job"), "gone": ts.get("gone"), "watermark": assets[ORDERS].get("watermark")}, out)

    use_store()


statestore_contract()
"""


@pytest.mark.parametrize(
    ("server", "worker"),
    [
        ("contract_backends.Skeleton", "contract_backends.Skeleton"),
        ("contract_backends.ServerNative", "contract_backends.WorkerNative"),
    ],
    ids=["seed-skeleton", "airflow-native"],
)
def test_third_party_backends_in_both_roles_in_a_real_dag_run(
    airflow_env: dict[str, str], tmp_path: Path, server: str, worker: str
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "contract_backends.py").write_text(
        FILE_BACKENDS
        + '\nServerNative = native("airflow._shared.state")\nWorkerNative = native("airflow.sdk._shared.state")\n'
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "statestore_contract.py").write_text(DAG_FILE)
    root = tmp_path / "root"
    airflow_env.update(
        {
            "PYTHONPATH": str(code),
            "CONTRACT_ROOT": str(root),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__STATE_STORE__BACKEND": server,
            "AIRFLOW__WORKERS__STATE_STORE_BACKEND": worker,
            "STATESTORE_DAG_OUT": str(tmp_path / "out.json"),
        }
    )
    run_airflow_commands(airflow_env, ["db", "migrate"], ["dags", "test", "statestore_contract"])
    assert json.loads((tmp_path / "out.json").read_text()) == {"job": {"id": "j-2"}, "gone": None, "watermark": 42}
    rows = sorted(p.relative_to(root / "rows").as_posix() for p in (root / "rows").rglob("*") if p.is_file())
    assert [row.rpartition("/")[2] for row in rows] == ["watermark", "job"], rows  # asset/…, task/…
    for row in rows:  # the server role holds Airflow's markers naming the worker role's values
        reference = json.loads((root / "rows" / row).read_text())["__airflow_state_ref__"]
        assert Path(reference).is_relative_to(root / "values"), reference
        assert Path(reference).exists()

    out = run_in_airflow(
        airflow_env,
        f"""
        import json
        import contract_backends
        from statestore.core import StateStore, TaskScope
        from statestore.core.config import Config
        store = StateStore(backend={server!r}, worker_backend={worker!r}, config=Config.from_dict({{}}))
        ts = store.task_store("statestore_contract", "manual", "t")
        ts.set("k", {{"n": 1}})
        row = json.loads(store.backend.get(TaskScope("statestore_contract", "manual", "t"), "k"))
        got = ts.get("k")
        ts.delete("k")
        print(json.dumps([got, row["__airflow_state_ref__"].endswith("/k"), ts.get("k")]))
        """,
    )
    assert out == [{"n": 1}, True, None]
