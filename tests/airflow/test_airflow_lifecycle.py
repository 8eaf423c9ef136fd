"""The reference lifecycle in real Airflow 3.3.2 runs with the local, S3, GCS and Redis worker backends.

The DAG writes through Airflow's own accessor (``context["task_state_store"]``): NEVER_EXPIRE,
90-day, default-retention and already expired values. Its ``write`` task fails its first try after
writing, so the retry must read what the first try wrote; it also deletes a key, and ``scratch``
clears its own keys. Airflow's worker accessor then calls the worker backend's ``delete``/``clear``
with the old deterministic names, which do not reach the versions the writes made: those are left
to reconciliation, like every version an overwrite replaced.

What must hold: values written through Airflow's hooks carry no expiry (Airflow passes the hooks
none, so only the row decides); ``state-store --airflow clean`` cleans the server store Airflow uses
(``[state_store] backend``); ``state-store --airflow reconcile`` leaves exactly the versions that
rows reference — after the run, after ``airflow tasks clear`` and a second run of the task, and
after ``airflow db clean``; one location for both roles works, statestore's metastore for both
fails at the first write.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from statestore.core.objectstore import META_EXPIRES_AT

from .test_airflow_compat import LOCAL, METASTORE, airflow_env  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(900)]

LOGICAL_DATE = "2026-01-01T00:00:00+00:00"
REF_MARKER = "__airflow_state_ref__"

DAG = """
import os
from datetime import datetime, timedelta
from airflow.sdk import NEVER_EXPIRE, dag, task

@dag(dag_id="lifecycle_proof", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def lifecycle_proof():
    @task(retries=1, retry_delay=timedelta(0))
    def write(**context):
        store = context["task_state_store"]
        runs = store.get("never", {"runs": 0})["runs"] + 1  # what the previous try or run wrote
        with open(os.environ["STATESTORE_DAG_OUT"], "a") as out:
            out.write(f"{runs}\\n")
        store.set("never", {"runs": runs, "pad": "x" * 100}, retention=NEVER_EXPIRE)
        store.set("ninety", {"runs": runs, "pad": "y" * 100}, retention=timedelta(days=90))
        store.set("default", {"runs": runs, "pad": "z" * 100})
        store.set("brief", runs, retention=timedelta(microseconds=1))
        store.set("gone", runs)
        store.delete("gone")
        assert store.get("gone") is None
        assert store.get("ninety")["runs"] == runs
        if runs == 1:
            raise RuntimeError("the first try fails after writing: the retry must read what it wrote")

    @task
    def scratch(**context):
        store = context["task_state_store"]
        store.set("x", 1)
        store.set("y", 2)
        store.clear()
        assert store.get("x") is None

    write() >> scratch()

lifecycle_proof()
"""


@dataclass
class Worker:
    """A worker backend under test: its class, its Airflow settings and a raw view of the versions it stored."""

    class_path: str
    settings: dict[str, str]
    versions: Callable[[], dict[str, str | None]]
    """Every stored version's reference, with the expiry the object carries (None: none)."""


def _local_versions(objects: Path) -> dict[str, str | None]:
    found = {}
    for path in (objects / "ref").rglob("*"):
        if path.is_file():
            header = json.loads(path.read_bytes().partition(b"\n")[0])
            found[f"local://{path}"] = header.get(META_EXPIRES_AT)
    return found


def _s3_versions(client: Any, bucket: str, prefix: str) -> dict[str, str | None]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/ref/"):
        for item in page.get("Contents", []):
            metadata = client.head_object(Bucket=bucket, Key=item["Key"])["Metadata"]
            found[f"s3://{bucket}/{item['Key']}"] = metadata.get(META_EXPIRES_AT)
    return found


def _gcs_versions(client: Any, bucket: str, prefix: str) -> dict[str, str | None]:
    found = {}
    for blob in client.list_blobs(bucket, prefix=f"{prefix}/ref/"):
        expiry = (blob.metadata or {}).get(META_EXPIRES_AT) or blob.custom_time
        found[f"gs://{bucket}/{blob.name}"] = None if expiry is None else str(expiry)
    return found


def _redis_versions(client: Any, prefix: str) -> dict[str, str | None]:
    found = {}
    for name in client.scan_iter(match=f"{prefix}ref:*"):
        ttl = client.pttl(name)
        found[f"redis://{name}"] = None if ttl == -1 else f"PTTL {ttl} ms"
    return found


@pytest.fixture(params=["local", "s3", "gcs", "redis"])
def worker(request: pytest.FixtureRequest, airflow_env: dict[str, str]) -> Worker:
    """The worker backend of one parameter, on a fresh path or prefix (moto and the GCS emulator start on demand)."""
    prefix = f"airflow-{secrets.token_hex(6)}"
    if request.param == "local":
        objects = Path(airflow_env["AIRFLOW__STATESTORE_LOCAL__PATH"])
        return Worker(LOCAL, {}, lambda: _local_versions(objects))
    if request.param == "s3":
        endpoint, client, bucket = (request.getfixturevalue(f) for f in ("moto_endpoint", "s3_client", "bucket"))
        credentials = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # the dummies of the s3 tests
        settings = {"AIRFLOW__STATESTORE_S3__ENDPOINT_URL": endpoint, **credentials}
        return Worker(
            "statestore.s3.S3StoreBackend",
            {**settings, "AIRFLOW__STATESTORE_S3__BUCKET": bucket, "AIRFLOW__STATESTORE_S3__PREFIX": prefix},
            lambda: _s3_versions(client, bucket, prefix),
        )
    if request.param == "redis":
        section, client = request.getfixturevalue("redis_section"), request.getfixturevalue("admin")
        return Worker(
            "statestore.redis.RedisStoreBackend",
            {
                "AIRFLOW__STATESTORE_REDIS__URL": section["url"],
                "AIRFLOW__STATESTORE_REDIS__KEY_PREFIX": section["key_prefix"],
            },
            lambda: _redis_versions(client, section["key_prefix"]),
        )
    emulator, client, bucket = (request.getfixturevalue(f) for f in ("gcs_emulator", "raw_client", "gcs_bucket"))
    return Worker(
        "statestore.gcs.GCSStoreBackend",
        {
            "STORAGE_EMULATOR_HOST": emulator.url,
            "AIRFLOW__STATESTORE_GCS__ENDPOINT": emulator.url,
            "AIRFLOW__STATESTORE_GCS__BUCKET": bucket,
            "AIRFLOW__STATESTORE_GCS__PREFIX": prefix,
        },
        lambda: _gcs_versions(client, bucket, prefix),
    )


def _run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{args}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


def _json(out: str) -> Any:
    """The JSON document on the last line of a command's output (Airflow may log before it)."""
    return json.loads(out.strip().splitlines()[-1])


def _airflow(base: dict[str, str], tmp_path: Path, worker_class: str, **settings: str) -> dict[str, str]:
    """Environment for ``airflow`` commands: the proof DAG, an SQLite Airflow database, ``worker_class`` on workers."""
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
            "AIRFLOW__WORKERS__STATE_STORE_BACKEND": worker_class,
            "STATESTORE_DAG_OUT": str(tmp_path / "runs.txt"),
            **settings,
        }
    )
    _run(env, "airflow", "db", "migrate")
    return env


def _runs(env: dict[str, str]) -> list[int]:
    """The ``runs`` counter each execution of ``write`` computed from what it read back."""
    return [int(line) for line in Path(env["STATESTORE_DAG_OUT"]).read_text().split()]


def _reconcile(env: dict[str, str]) -> dict[str, Any]:
    return _json(_run(env, "state-store", "--airflow", "reconcile", "--grace-minutes", "0", "--json"))  # type: ignore[no-any-return]


def _clean(env: dict[str, str]) -> dict[str, Any]:
    return _json(_run(env, "state-store", "--airflow", "clean", "--json"))  # type: ignore[no-any-return]


def _query(env: dict[str, str], sql: str) -> list[Any]:
    """The rows of one query on Airflow's database."""
    engine = sa.create_engine(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).all())
    finally:
        engine.dispose()


def _airflow_rows(env: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    """``task/key`` → (reference, expires_at) of every row of Airflow's ``task_state_store`` table."""
    rows = _query(env, "SELECT task_id, key, value, expires_at FROM task_state_store")
    return {f"{task}/{key}": (json.loads(value)[REF_MARKER], at) for task, key, value, at in rows}


def _days_ahead(at: str | None) -> int | None:
    if at is None:
        return None
    return (datetime.fromisoformat(at).replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).days + 1


def _references(rows: dict[str, tuple[str, str | None]]) -> set[str]:
    return {reference for reference, _ in rows.values()}


def test_worker_values_through_retry_clear_rerun_and_db_clean(
    airflow_env: dict[str, str],
    tmp_path: Path,
    worker: Worker,
) -> None:
    """Airflow's metastore as server store, ``worker`` on the workers, from the first run to ``airflow db clean``."""
    env = _airflow(airflow_env, tmp_path, worker.class_path, **worker.settings)
    _run(env, "airflow", "dags", "test", "lifecycle_proof", LOGICAL_DATE)
    assert _runs(env) == [1, 2], "the retry read what the failed first try wrote"

    rows = _airflow_rows(env)
    assert sorted(rows) == ["write/brief", "write/default", "write/never", "write/ninety"]
    assert {key: _days_ahead(at) for key, (_, at) in rows.items() if key != "write/brief"} == {
        "write/never": None,
        "write/ninety": 90,
        "write/default": 30,
    }
    versions = worker.versions()
    assert _references(rows) <= set(versions)
    assert {ref: at for ref, at in versions.items() if at is not None} == {}, (
        "a value written through Airflow's hooks carries an expiry: it could go before its row"
    )
    # Two tries of write made 5 versions each, scratch 2: the worker accessor's delete("gone") and
    # clear() call the worker backend on the old deterministic names, which removed none of them.
    per_key = Counter(reference.rsplit("/", 2)[-2] for reference in versions)
    assert per_key == {"never": 2, "ninety": 2, "default": 2, "brief": 2, "gone": 2, "x": 1, "y": 1}

    # [state_store] backend is Airflow's own metastore: clean runs its cleanup on Airflow's database.
    counted = subprocess.run(
        ["state-store", "--airflow", "clean", "--dry-run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert counted.returncode == 1
    assert "airflow.state.metastore.MetastoreBackend, which cannot count what clean would remove" in counted.stderr
    assert "`airflow state-store clean --dry-run` counts the rows of Airflow's metastore" in counted.stderr
    # It reports no counts; the reconciliation clean runs after it keeps versions younger than an hour.
    assert _clean(env) == {"dry_run": False, "removed": None, "by_kind": {"external_objects": 0, "external_failed": 0}}
    rows = _airflow_rows(env)
    assert sorted(rows) == ["write/default", "write/never", "write/ninety"], "the expired row went"
    reconciled = _reconcile(env)
    assert (reconciled["live"], reconciled["discarded"], reconciled["failed"]) == (3, 9, 0), reconciled
    assert set(worker.versions()) == _references(rows)

    run_id, state = _query(env, "SELECT run_id, state FROM task_instance WHERE task_id = 'write'")[0]
    assert state == "success"
    dates = ["--start-date", LOGICAL_DATE, "--end-date", LOGICAL_DATE]  # 3.3.2 matches --task-regex as a substring
    out = _run(env, "airflow", "tasks", "clear", "lifecycle_proof", "--task-regex", "write", *dates, "--yes")
    assert _query(env, "SELECT state FROM task_instance WHERE task_id = 'write'") == [(None,)], out
    assert _airflow_rows(env) == rows, "Airflow 3.3.2 leaves a task's state rows alone when it clears the task"
    _run(env, "airflow", "tasks", "test", "lifecycle_proof", "write", run_id)
    assert _runs(env) == [1, 2, 3], "the task ran again in the same run and read its state"
    rerun = _airflow_rows(env)
    assert sorted(rerun) == ["write/brief", "write/default", "write/never", "write/ninety"]
    assert not _references(rerun) & _references(rows), "every key was written again, as a new version"
    reconciled = _reconcile(env)
    # the 3 versions the second run replaced and its deleted key's version went; the 4 rows' stayed
    assert (reconciled["live"], reconciled["discarded"], reconciled["failed"]) == (4, 4, 0), reconciled
    assert set(worker.versions()) == _references(rerun)

    future = (datetime.now(timezone.utc) + timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    clean_before = ["--clean-before-timestamp", future, "--skip-archive", "--yes"]
    _run(env, "airflow", "db", "clean", "--tables", "task_state_store", *clean_before)
    left = _airflow_rows(env)
    assert sorted(left) == ["write/never"], "airflow db clean removed every row with an expiry"
    reconciled = _reconcile(env)
    assert (reconciled["live"], reconciled["discarded"], reconciled["failed"]) == (1, 3, 0), reconciled
    assert set(worker.versions()) == _references(left), "reconcile kept an orphan or discarded a live value"


SERVER_ROWS = """
import json, os
import sqlalchemy as sa
import airflow.state

engine = sa.create_engine(os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
with engine.connect() as conn:
    tis = conn.execute(sa.text("SELECT dag_id, run_id, task_id, map_index FROM task_instance")).all()
server = airflow.state.get_state_backend()
rows = {}
for dag_id, run_id, task_id, map_index in tis:
    scope = airflow.state.TaskScope(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)
    for key in server.keys(scope):
        value = server.get(scope, key)  # None once expired
        if value is not None:
            rows[f"{task_id}/{key}"] = json.loads(value)["__airflow_state_ref__"]
print(json.dumps({"server": type(server).__name__, "rows": rows}))
"""


def test_one_location_for_both_roles_in_airflow_cfg(
    airflow_env: dict[str, str],
    tmp_path: Path,
    worker: Worker,
) -> None:
    """``[state_store] backend`` and ``[workers] state_store_backend`` the same class on one path or prefix: it works.

    The retry reads what the first try wrote (a value replaced by its own reference would fail
    there), every row references a version, ``clean`` cleans that class (the expired row), and
    reconciliation then leaves exactly the versions the rows reference: rows and values never
    share a name.
    """
    env = _airflow(
        airflow_env, tmp_path, worker.class_path, **worker.settings, AIRFLOW__STATE_STORE__BACKEND=worker.class_path
    )
    _run(env, "airflow", "dags", "test", "lifecycle_proof", LOGICAL_DATE)
    assert _runs(env) == [1, 2], "the retry read what the failed first try wrote"
    found = _json(_run(env, sys.executable, "-c", textwrap.dedent(SERVER_ROWS)))
    assert found["server"] == worker.class_path.rpartition(".")[2]
    rows = found["rows"]
    assert sorted(rows) == ["write/default", "write/never", "write/ninety"], "the expired row is not read"
    versions = worker.versions()
    assert set(rows.values()) <= set(versions)
    assert {ref: at for ref, at in versions.items() if at is not None} == {}

    cleaned = _clean(env)
    # the expired row of "brief", in the server store Airflow uses (Redis expired the value itself and
    # clean removes its index entry, which no write pruned: the index is far from 64 entries)
    assert cleaned["removed"] == 1, cleaned
    reconciled = _reconcile(env)
    assert (reconciled["live"], reconciled["discarded"], reconciled["failed"]) == (3, 9, 0), reconciled
    assert set(worker.versions()) == set(rows.values())


def test_metastore_for_both_roles_fails_at_the_first_write(
    airflow_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """statestore's metastore named for both roles (one database): the task's first set fails with one clear line."""
    env = _airflow(airflow_env, tmp_path, METASTORE, AIRFLOW__STATE_STORE__BACKEND=METASTORE)
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
