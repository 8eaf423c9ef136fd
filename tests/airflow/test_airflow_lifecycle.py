"""The reference lifecycle in a real Airflow 3.3.2 run (``airflow dags test``) with the ``local`` worker backend.

Airflow's own metastore is the server store ([state_store] backend = Airflow's MetastoreBackend);
the task writes NEVER_EXPIRE, 90-day and default-retention values through Airflow's accessor. The
values must carry no expiry (Airflow's hooks know none), ``state-store --airflow reconcile`` must keep
every value whose row exists, and after ``airflow db clean`` of ``task_state_store`` it must discard
exactly the values whose rows went.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from .test_airflow_compat import LOCAL, METASTORE, airflow_env  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.airflow

DAG = """
from datetime import datetime, timedelta
from airflow.sdk import NEVER_EXPIRE, dag, task

@dag(dag_id="lifecycle_proof", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def lifecycle_proof():
    @task
    def write(**context):
        store = context["task_state_store"]
        store.set("never", {"job": "j-1", "pad": "x" * 100}, retention=NEVER_EXPIRE)
        store.set("ninety", {"cursor": 90, "pad": "y" * 100}, retention=timedelta(days=90))
        store.set("default", {"cursor": 3, "pad": "z" * 100})
        assert store.get("never")["job"] == "j-1"
        assert store.get("ninety")["cursor"] == 90

    write()

lifecycle_proof()
"""


def _run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


def _json(out: str) -> Any:
    """The JSON document on the last line of a command's output (Airflow may log before it)."""
    return json.loads(out.strip().splitlines()[-1])


def _values(objects: Path) -> dict[str, dict[str, Any]]:
    """The local worker backend's values by key, with the metadata header of each file."""
    found = {}
    for path in (objects / "ref").rglob("*"):
        if path.is_file():
            found[path.parent.name] = json.loads(path.read_bytes().partition(b"\n")[0])
    return found


def _airflow(base: dict[str, str], tmp_path: Path, **settings: str) -> dict[str, str]:
    """Environment for ``airflow`` commands: a DAG folder with the proof DAG, an SQLite Airflow database."""
    env = dict(base)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "lifecycle_proof.py").write_text(DAG)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env['PATH']}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
            "AIRFLOW__STATE_STORE__BACKEND": "airflow.state.metastore.MetastoreBackend",
            "AIRFLOW__STATE_STORE__DEFAULT_RETENTION_DAYS": "30",
            "AIRFLOW__WORKERS__STATE_STORE_BACKEND": LOCAL,
            **settings,
        }
    )
    _run(env, "airflow", "db", "migrate")
    return env


def _reconcile(env: dict[str, str]) -> dict[str, Any]:
    return _json(_run(env, "state-store", "--airflow", "reconcile", "--grace-minutes", "0", "--json"))  # type: ignore[no-any-return]


def test_dags_test_values_have_no_expiry_and_reconcile_follows_db_clean(
    airflow_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = _airflow(airflow_env, tmp_path)
    objects = Path(env["AIRFLOW__STATESTORE_LOCAL__PATH"])
    _run(env, "airflow", "dags", "test", "lifecycle_proof")

    values = _values(objects)
    assert sorted(values) == ["default", "never", "ninety"]
    assert all("statestore-expires-at" not in header for header in values.values()), (
        "a value written through Airflow's hooks carries an expiry: it could go before its row"
    )
    rows = _json(
        _run(
            env,
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import json, sqlalchemy as sa, os
                engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
                with engine.connect() as conn:
                    rows = conn.execute(sa.text("SELECT key, expires_at FROM task_state_store")).all()
                print(json.dumps({key: None if at is None else str(at) for key, at in rows}))
                """
            ),
        )
    )
    assert rows["never"] is None
    assert rows["ninety"] is not None
    assert rows["default"] is not None

    kept = _reconcile(env)
    assert (kept["live"], kept["orphaned"]) == (3, 0), kept

    future = (datetime.now(timezone.utc) + timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    _run(
        env,
        "airflow",
        "db",
        "clean",
        "--tables",
        "task_state_store",
        "--clean-before-timestamp",
        future,
        "--skip-archive",
        "--yes",
    )
    reclaimed = _reconcile(env)
    assert (reclaimed["live"], reclaimed["discarded"], reclaimed["failed"]) == (1, 2, 0), reclaimed
    assert sorted(_values(objects)) == ["never"], "reconcile kept an orphan or discarded a live value"


def test_one_location_for_both_roles_in_airflow_cfg(
    airflow_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """``[state_store] backend`` and ``[workers] state_store_backend`` both LocalStoreBackend on one path: it works.

    The DAG reads each value back inside the task (a value replaced by its own reference would fail
    there), and reconciliation keeps every value, because rows and values never share a name.
    """
    env = _airflow(airflow_env, tmp_path, AIRFLOW__STATE_STORE__BACKEND=LOCAL)
    objects = Path(env["AIRFLOW__STATESTORE_LOCAL__PATH"])
    _run(env, "airflow", "dags", "test", "lifecycle_proof")
    assert sorted(_values(objects)) == ["default", "never", "ninety"]
    assert sorted(p.name for p in (objects / "task").rglob("*") if p.is_file()) == ["default", "never", "ninety"]
    kept = _reconcile(env)
    assert (kept["live"], kept["orphaned"]) == (3, 0), kept


def test_metastore_for_both_roles_fails_at_the_first_write(
    airflow_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """statestore's metastore named for both roles (one database): the task's first set fails with one clear line."""
    env = _airflow(
        airflow_env,
        tmp_path,
        AIRFLOW__STATE_STORE__BACKEND=METASTORE,
        AIRFLOW__WORKERS__STATE_STORE_BACKEND=METASTORE,
    )
    result = subprocess.run(
        ["airflow", "dags", "test", "lifecycle_proof"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "both store in" in output, output[-3000:]
    assert "[workers] state_backend" in output
