"""Operating statestore inside a real Airflow 3.3.2: ``state-store --airflow`` and the example maintenance DAG.

``state-store --airflow`` must act on exactly what Airflow's processes use (here a PostgreSQL
metastore named only by ``AIRFLOW__STATE_STORE__SQL_ALCHEMY_CONN``), never on statestore's own home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from .test_airflow_compat import fresh_airflow_env

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BIN = Path(sys.executable).parent
TASK = ["--dag-id", "d", "--run-id", "r", "--task-id", "t"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return fresh_airflow_env(
        tmp_path,
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "examples" / "airflow"),
        AIRFLOW__STATE_STORE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'state.db'}",
    )


def state_store(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "state-store"), "--airflow", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def expire_three_and_keep_one(env: dict[str, str]) -> None:
    """Three expired keys and one kept, written by one Airflow-configured process (cheaper than four CLI runs)."""
    script = (
        "import airflow.configuration\n"
        "from datetime import timedelta\n"
        "from statestore.core import StateStore\n"
        "ts = StateStore.from_config().task_store('d', 'r', 't')\n"
        "for key in 'abc': ts.set(key, 1, retention=timedelta(microseconds=1))\n"
        "ts.set('kept', 'yes')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def postgres_schema() -> Iterator[str]:
    """A private, empty schema on the test PostgreSQL, as an Airflow deployment's own database would be."""
    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    schema = f"statestore_af_{uuid.uuid4().hex[:10]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


def test_airflow_flag_migrates_and_cleans_airflows_database(
    env: dict[str, str], postgres_schema: str, tmp_path: Path
) -> None:
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={postgres_schema}"})
    env["AIRFLOW__STATE_STORE__SQL_ALCHEMY_CONN"] = url.render_as_string(hide_password=False)
    env["AIRFLOW__STATE_STORE__BACKEND"] = "statestore.core.metastore.MetastoreStoreBackend"  # what clean acts on
    migrated = state_store(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "migrated from revision none to" in migrated.stdout
    assert f"search_path%3D{postgres_schema}" in migrated.stdout or postgres_schema in migrated.stdout
    config = json.loads(state_store(env, "config", "--json").stdout)
    assert config["file"] == "airflow configuration"
    conn = next(s for s in config["settings"] if s["key"] == "sql_alchemy_conn")
    assert conn["source"] == "airflow configuration [state_store] sql_alchemy_conn"
    expire_three_and_keep_one(env)
    cleaned = state_store(env, "clean", "--json")
    assert cleaned.returncode == 0, cleaned.stderr
    assert json.loads(cleaned.stdout)["by_kind"]["expired_task"] == 3
    assert json.loads(state_store(env, "task", "list", *TASK, "--json").stdout) == {"kept": "yes"}
    engine = sa.create_engine(url)
    with engine.connect() as db:
        tables = set(sa.inspect(db).get_table_names(schema=postgres_schema))
    engine.dispose()
    assert "statestore_alembic_version" in tables
    assert not (tmp_path / "statestore-home").exists(), "statestore's own home was never touched"


def test_airflow_flag_reports_typos_in_our_plugin_sections(env: dict[str, str]) -> None:
    env["AIRFLOW__STATESTORE_S3__BUCKETT"] = "b"
    checked = state_store(env, "config", "--check")
    assert checked.returncode == 1
    assert "did you mean AIRFLOW__STATESTORE_S3__BUCKET?" in checked.stderr
    assert checked.stdout == ""


def test_example_maintenance_dag_cleans_in_airflow(env: dict[str, str]) -> None:
    expire_three_and_keep_one(env)
    for argv in (["db", "migrate"], ["dags", "test", "statestore_maintenance"]):
        result = subprocess.run(
            [str(BIN / "airflow"), *argv], env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"airflow {' '.join(argv)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "statestore clean: removed 3 entries" in result.stdout + result.stderr
    assert json.loads(state_store(env, "task", "list", *TASK, "--json").stdout) == {"kept": "yes"}


AIRFLOW_NATIVE = """
from airflow.state import BaseStoreBackend


class CountlessBackend(BaseStoreBackend):
    \"\"\"A server store written for Airflow alone: the eight methods and a cleanup() that reports nothing.\"\"\"

    rows: dict = {}

    def get(self, scope, key, *, session=None):
        return self.rows.get((scope, key))

    def set(self, scope, key, value, *, expires_at=None, session=None):
        self.rows[(scope, key)] = value

    def delete(self, scope, key, *, session=None):
        self.rows.pop((scope, key), None)

    def clear(self, scope, *, all_map_indices=False, session=None):
        self.rows.clear()

    async def aget(self, scope, key, *, session=None):
        return self.get(scope, key)

    async def aset(self, scope, key, value, *, expires_at=None, session=None):
        self.set(scope, key, value)

    async def adelete(self, scope, key, *, session=None):
        self.delete(scope, key)

    async def aclear(self, scope, *, all_map_indices=False, session=None):
        self.clear(scope)

    def cleanup(self):
        print("CountlessBackend.cleanup ran")
"""


def test_clean_runs_an_airflow_native_server_stores_own_cleanup(env: dict[str, str], tmp_path: Path) -> None:
    """An Airflow-native server store (not statestore's): clean runs its cleanup, a dry run cannot count."""
    (tmp_path / "countless.py").write_text(AIRFLOW_NATIVE)
    env["PYTHONPATH"] = str(tmp_path)
    env["AIRFLOW__STATE_STORE__BACKEND"] = "countless.CountlessBackend"
    counted = state_store(env, "clean", "--dry-run")
    assert counted.returncode == 1
    assert counted.stderr.startswith(
        "state-store: error: [state_store] backend is countless.CountlessBackend, which cannot count what clean "
        "would remove; run clean without --dry-run"
    ), counted.stderr
    cleaned = state_store(env, "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "CountlessBackend.cleanup ran" in cleaned.stdout
    assert "countless.CountlessBackend removed its expired entries (it reports no counts)" in cleaned.stdout
    assert not (tmp_path / "statestore-home").exists(), "no statestore database was made on the side"


def test_a_value_written_through_statestore_inside_airflow_survives_reconcile(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A StateStore set in an Airflow process with a worker backend, then ``state-store --airflow reconcile``.

    With Airflow's own ``[state_store] backend``, that StateStore keeps its rows in statestore's metastore
    while Airflow's tasks keep theirs in Airflow's database; reconcile keeps a value either store names.
    """
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'airflow.db'}"
    env["AIRFLOW__WORKERS__STATE_STORE_BACKEND"] = "statestore.core.backends.local.LocalStoreBackend"
    env["AIRFLOW__STATESTORE_LOCAL__PATH"] = str(tmp_path / "objects")
    migrated = subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, timeout=300)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    job = "from statestore.core import StateStore\nts = StateStore.from_config().task_store('d', 'r', 't')\n"
    written = subprocess.run(
        [sys.executable, "-c", f"import airflow.configuration\n{job}ts.set('job', 'j-1')"], env=env, timeout=180
    )
    assert written.returncode == 0
    reconciled = state_store(env, "reconcile", "--grace-minutes", "0", "--json")
    assert reconciled.returncode == 0, reconciled.stderr
    read = subprocess.run(
        [sys.executable, "-c", f"import airflow.configuration\n{job}print(ts.get('job'))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert read.stdout.strip().splitlines()[-1] == "j-1", f"reconcile discarded a live value: {reconciled.stdout}"
