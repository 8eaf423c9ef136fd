"""StateStore + MetastoreStoreBackend versus raw SQLAlchemy Core on the same database, in the same run.

Run with ``nox -s bench -- metastore`` or ``python benchmarks/bench_metastore.py [--ops N]
[--rounds N] [--rows N] [--db sqlite,postgresql] [--only ops|cleanup|durability]``.

Operations: ops/s of set/get/delete through ``StateStore`` accessors versus raw SQLAlchemy Core
doing the same work: a table with the metastore's columns, types and indexes (rows keyed by the
SHA-256 of their path, as the metastore keys them), the same upsert/select/delete statements,
an engine with the same settings (autocommit single statements, WAL + the default
``synchronous=FULL`` on SQLite) and a pooled connection checked out per operation. Each round runs a block of
``--ops`` operations on each side, interleaved (alternating which side goes first); the table
shows the median ops/s and the median of the per-round ratios.

Airflow: when ``apache-airflow-core`` is installed (the ``bench`` extra of statestore-core, so
``nox -s bench -- metastore`` has it), Airflow's own ``airflow.state.metastore.MetastoreBackend``
runs the same workload as a third side: same keys, the same JSON payloads (encoded by the caller,
as Airflow's accessor does), ``expires_at`` 30 days ahead, on its own metadata tables created by
Airflow's ``initdb()`` in the same database (a temporary ``AIRFLOW_HOME``; on PostgreSQL the same
private schema) with the ``DagRun`` row its writes reference, and with the engine Airflow configures
for itself. It runs in a child process (Airflow configures itself from the environment at import and
would otherwise become the statestore config source); each block is timed inside the child, so the
pipe is not counted. Its ``cleanup()`` is measured beside ours the same way.

Durability (SQLite): the cost of ``[state_store] sqlite_synchronous = full`` (the default: the WAL
is synced at every commit, so an acknowledged write survives a power loss) against ``normal``
(synced at checkpoints only): ops/s of set/get/delete through ``StateStore`` with each setting,
interleaved the same way, on the same file.

Cleanup: time and peak Python memory (tracemalloc, in a fresh subprocess) of ``cleanup()`` over
N expired rows versus one raw ``DELETE``, with ratios. PostgreSQL runs in a private schema of
``STATESTORE_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

POSTGRES_URL = os.environ.get("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

raw_meta = sa.MetaData()
raw_table = sa.Table(
    "bench_raw_task_state",
    raw_meta,
    sa.Column("id", sa.CHAR(64), primary_key=True),
    sa.Column("task_hash", sa.CHAR(64), nullable=False),
    sa.Column("dag_id", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),
    sa.Column("task_id", sa.Text(), nullable=False),
    sa.Column("map_index", sa.Integer(), nullable=False),
    sa.Column("key", sa.String(512), nullable=False),
    sa.Column("value", sa.Text(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("expires_at", sa.DateTime(), nullable=True),
    sa.Index("bench_raw_task_state_task", "task_hash", "map_index"),
    sa.Index("bench_raw_task_state_expires", "expires_at"),
)


def _raw_engine(url: sa.URL) -> sa.Engine:
    """An engine configured like the metastore's: autocommit statements, WAL and synchronous=FULL on SQLite."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    if url.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: object, _record: object) -> None:
            for pragma in ("busy_timeout = 60000", "journal_mode = WAL", "synchronous = FULL"):
                dbapi_connection.execute(f"PRAGMA {pragma}")  # type: ignore[attr-defined]

    raw_meta.create_all(engine)
    return engine


def _raw_ops(engine: sa.Engine) -> dict[str, Callable[[int], None]]:
    insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(raw_table)
    upsert = insert.on_conflict_do_update(
        index_elements=[raw_table.c.id],
        set_={c: insert.excluded[c] for c in ("value", "updated_at", "expires_at")},
    )
    row = sa.and_(raw_table.c.id == sa.bindparam("id"), raw_table.c.key == sa.bindparam("key"))
    get = sa.select(raw_table.c.value, raw_table.c.expires_at).where(row)
    delete = sa.delete(raw_table).where(row)
    ids = {"dag_id": "bench", "run_id": "run", "task_id": "task", "map_index": -1}
    task_hash = hashlib.sha256(b"task/bench/run/task").hexdigest()

    def row_id(key: str) -> str:
        return hashlib.sha256(f"task/bench/run/task/-1/{key}".encode()).hexdigest()

    def do_set(i: int) -> None:
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        key = f"k{i}"
        params = {
            **ids,
            "id": row_id(key),
            "task_hash": task_hash,
            "key": key,
            "value": json.dumps({"i": i}),
            "updated_at": now,
            "expires_at": now + timedelta(days=30),
        }
        with engine.connect() as conn:
            conn.execute(upsert, params)

    def do_get(i: int) -> None:
        key = f"k{i}"
        with engine.connect() as conn:
            found = conn.execute(get, {"id": row_id(key), "key": key}).first()
        assert found is not None
        json.loads(found[0])

    def do_delete(i: int) -> None:
        key = f"k{i}"
        with engine.connect() as conn:
            conn.execute(delete, {"id": row_id(key), "key": key})

    return {"set": do_set, "get": do_get, "delete": do_delete}


def _store_ops(url: sa.URL, synchronous: str = "full") -> dict[str, Callable[[int], None]]:
    from statestore.core import Config, StateStore
    from statestore.core.metastore import MetastoreStoreBackend

    config = Config.from_dict({"state_store": {"sqlite_synchronous": synchronous}})
    ts = StateStore(MetastoreStoreBackend(url, config=config), None, config).task_store("bench", "run", "task")

    def do_get(i: int) -> None:
        assert ts.get(f"k{i}") is not None

    return {
        "set": lambda i: ts.set(f"k{i}", {"i": i}),
        "get": do_get,
        "delete": lambda i: ts.delete(f"k{i}"),
    }


def _rate(op: Callable[[int], None], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def _in_process(ops: dict[str, Callable[[int], None]]) -> Callable[[str, int], float]:
    """A side timing blocks of its operations in this process, after one warm-up call of each."""
    for name in ("set", "get", "delete"):
        ops[name](0)
    return lambda name, n: _rate(ops[name], n)


def _airflow_version() -> str | None:
    """The installed apache-airflow-core version, found without importing Airflow into this process."""
    try:
        return importlib.metadata.version("apache-airflow-core")
    except importlib.metadata.PackageNotFoundError:
        return None


AIRFLOW_VERSION = _airflow_version()

# Airflow's side, run as ``python -c _AIRFLOW MODE ...`` with the environment of ``AirflowDatabase``.
# ``init`` creates Airflow's tables and the DagRun its task rows reference; ``ops`` answers each
# ``OP N`` line on stdin with the ops/s of a block timed here; ``cleanup ROWS BATCH`` fills ROWS
# expired rows server-side, then times ``cleanup()`` under tracemalloc after one warm-up call.
_AIRFLOW = """
import json, os, sys, time, tracemalloc
from datetime import datetime, timedelta, timezone
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # Airflow's log output must not mix with the replies
from airflow import settings
from airflow._shared.state import TaskScope
from airflow.models.dagrun import DagRun
from airflow.state.metastore import MetastoreBackend
from airflow.utils.db import initdb
from airflow.utils.session import create_session
mode = sys.argv[1]
if mode == "init":
    initdb()
    with create_session() as session:
        session.add(DagRun(dag_id="bench", run_id="run", run_type="manual", state="running"))
    sys.exit()
backend = MetastoreBackend()
if mode == "ops":
    scope = TaskScope("bench", "run", "task")
    def do_set(i):
        expires_at = datetime.now(timezone.utc) + timedelta(days=30)
        backend.set(scope, f"k{i}", json.dumps({"i": i}), expires_at=expires_at)
    def do_get(i):
        found = backend.get(scope, f"k{i}")
        assert found is not None
        json.loads(found)
    ops = {"set": do_set, "get": do_get, "delete": lambda i: backend.delete(scope, f"k{i}")}
    for name in ("set", "get", "delete"):
        ops[name](0)
    print("ready", file=reply, flush=True)
    for line in sys.stdin:
        name, n = line.split()
        start = time.perf_counter()
        for i in range(int(n)):
            ops[name](i)
        print(int(n) / (time.perf_counter() - start), file=reply, flush=True)
    sys.exit()
rows, past = int(sys.argv[2]), "2000-01-01 00:00:00"
backend.cleanup()  # warm-up with nothing expired: imports, ORM mappers, pooled connection
if settings.engine.dialect.name == "postgresql":
    numbers = "generate_series(1, {rows}) AS c(i)"
else:
    numbers = "(WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) SELECT i FROM c) AS c"
count = "SELECT count(*) FROM task_state_store WHERE expires_at < CURRENT_TIMESTAMP"
with settings.engine.begin() as conn:
    conn.exec_driver_sql(
        "INSERT INTO task_state_store (dag_run_id, task_id, map_index, key, dag_id, run_id, value, updated_at, "
        "expires_at) SELECT (SELECT id FROM dag_run WHERE dag_id = 'bench' AND run_id = 'run'), 'task', -1, "
        "'k' || i, 'bench', 'run', '1', '{past}', '{past}' FROM ".format(past=past) + numbers.format(rows=rows)
    )
    before = conn.exec_driver_sql(count).scalar()
tracemalloc.start()
start = time.perf_counter()
try:
    backend.cleanup()
    error = None
except Exception as exc:
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
elapsed = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
with settings.engine.begin() as conn:
    after = conn.exec_driver_sql(count).scalar()
    conn.exec_driver_sql("DELETE FROM task_state_store")
result = {"seconds": elapsed, "peak_bytes": peak, "removed": before - after, "error": error}
print(json.dumps(result), file=reply, flush=True)
"""


class AirflowDatabase:
    """Airflow's metadata tables in the benchmark's database, and the environment its child processes run in."""

    def __init__(self, url: sa.URL) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="bench-airflow-home-"))
        if url.get_backend_name() == "sqlite":
            url = url.set(database=str(Path(url.database or "").with_name("airflow.db")))
            async_url = url.set(drivername="sqlite+aiosqlite")
        else:
            async_url = url.set(drivername="postgresql+psycopg_async")
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": url.render_as_string(hide_password=False),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": async_url.render_as_string(hide_password=False),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
        self.log = self.home / "airflow.log"
        self._run("init")

    def _run(self, *args: str, env: dict[str, str] | None = None) -> str:
        with self.log.open("a") as log:
            done = subprocess.run(
                [sys.executable, "-c", _AIRFLOW, *args],
                env=env or self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        if done.returncode:
            sys.exit(f"Airflow's side failed ({' '.join(args)}); its output is in {self.log}")
        return done.stdout

    def ops(self) -> tuple[Callable[[str, int], float], Callable[[], None]]:
        """A side running blocks in a child process (timed there), and the function ending that process."""
        log = self.log.open("a")
        child = subprocess.Popen(
            [sys.executable, "-c", _AIRFLOW, "ops"],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        stdin, stdout = child.stdin, child.stdout

        def block(name: str, n: int) -> float:
            stdin.write(f"{name} {n}\n")
            stdin.flush()
            answer = stdout.readline()
            if not answer:
                sys.exit(f"Airflow's side stopped; its output is in {self.log}")
            return float(answer)

        def stop() -> None:
            stdin.close()
            child.wait()
            log.close()

        if stdout.readline().strip() != "ready":
            stop()
            sys.exit(f"Airflow's side failed to start; its output is in {self.log}")
        return block, stop

    def cleanup(self, rows: int, batch: int) -> dict[str, float | str | None]:
        """Time and peak memory of Airflow's ``cleanup()`` over ``rows`` expired rows (fresh process)."""
        env = {**self.env, "AIRFLOW__STATE_STORE__STATE_CLEANUP_BATCH_SIZE": str(batch)}
        result: dict[str, float | str | None] = json.loads(self._run("cleanup", str(rows), env=env))
        if result["error"] is None and result["removed"] != rows:
            result["error"] = f"removed {result['removed']} of {rows} rows"
        return result


def bench_ops(url: sa.URL, n: int, rounds: int, airflow: AirflowDatabase | None) -> list[dict[str, float | str]]:
    """Per round and operation, one block of ``n`` ops on each side (rotating who goes first); medians."""
    sides = {"raw": _in_process(_raw_ops(_raw_engine(url))), "store": _in_process(_store_ops(url))}
    stop: Callable[[], None] = lambda: None  # noqa: E731
    if airflow is not None:
        sides["airflow"], stop = airflow.ops()
    rates: dict[tuple[str, str], list[float]] = {}
    try:
        for round_no in range(rounds):
            order = list(sides)
            order = order[round_no % len(order) :] + order[: round_no % len(order)]
            for name in ("set", "get", "delete"):
                for side in order:
                    rates.setdefault((side, name), []).append(sides[side](name, n))
    finally:
        stop()
    results: list[dict[str, float | str]] = []
    for name in ("set", "get", "delete"):
        row: dict[str, float | str] = {"op": name, "raw": statistics.median(rates["raw", name])}
        for side in list(sides)[1:]:
            row[side] = statistics.median(rates[side, name])
            ratios = (s / r for s, r in zip(rates[side, name], rates["raw", name], strict=True))
            row[f"{side}/raw"] = statistics.median(ratios)
        results.append(row)
    return results


def bench_durability(url: sa.URL, n: int, rounds: int) -> list[list[str]]:
    """Rows of ops/s through StateStore with ``sqlite_synchronous`` full and normal (interleaved blocks)."""
    sides = {s: _in_process(_store_ops(url, s)) for s in ("full", "normal")}
    rates: dict[tuple[str, str], list[float]] = {}
    for round_no in range(rounds):
        order = list(sides)[round_no % 2 :] + list(sides)[: round_no % 2]
        for name in ("set", "get", "delete"):
            for side in order:
                rates.setdefault((side, name), []).append(sides[side](name, n))
    rows = [["op", "full ops/s", "normal ops/s", "full/normal (median)"]]
    for name in ("set", "get", "delete"):
        ratios = (f / m for f, m in zip(rates["full", name], rates["normal", name], strict=True))
        rows.append(
            [
                name,
                f"{statistics.median(rates['full', name]):.0f}",
                f"{statistics.median(rates['normal', name]):.0f}",
                f"{statistics.median(ratios):.2f}x",
            ]
        )
    return rows


def fill_expired(url: sa.URL, rows: int) -> None:
    """Insert ``rows`` expired task rows server-side (no client round trip per row)."""
    from statestore.core import Config
    from statestore.core.metastore import MetastoreStoreBackend

    engine = MetastoreStoreBackend(url, config=Config.from_dict({})).engine
    past = "2000-01-01 00:00:00"
    if engine.dialect.name == "postgresql":
        sql = (
            "INSERT INTO statestore_task_state SELECT md5(i::text) || md5('x' || i), md5('t' || (i / 100)), "
            "'dag', 'run-' || (i / 100), 'task', -1, 'k' || i, '1', TIMESTAMP '{past}', TIMESTAMP '{past}' "
            "FROM generate_series(1, {rows}) AS i"
        )
    else:
        sql = (
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows}) "
            "INSERT INTO statestore_task_state SELECT printf('%064d', i), printf('%064d', i / 100), "
            "'dag', 'run-' || (i / 100), 'task', -1, 'k' || i, '1', '{past}', '{past}' FROM c"
        )
    with engine.begin() as conn:
        conn.exec_driver_sql(sql.format(rows=rows, past=past))
    engine.dispose()


_MEASURE = """
import json, sys, time, tracemalloc
import sqlalchemy as sa
from statestore.core import Config
from statestore.core.metastore import MetastoreStoreBackend
url, mode, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
backend = MetastoreStoreBackend(url, config=Config.from_dict({"state_store": {"state_cleanup_batch_size": batch}}))
engine = backend.engine
with engine.connect() as conn:
    conn.exec_driver_sql("SELECT 1")
tracemalloc.start()
start = time.perf_counter()
if mode == "raw":
    with engine.begin() as conn:
        removed = conn.exec_driver_sql(
            "DELETE FROM statestore_task_state WHERE expires_at <= CURRENT_TIMESTAMP"
        ).rowcount
else:
    removed = backend.cleanup().removed
elapsed = time.perf_counter() - start
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": elapsed, "peak_bytes": peak, "removed": removed}))
"""


def measure_cleanup(url: sa.URL, mode: str, rows: int, batch: int = 0) -> dict[str, float]:
    fill_expired(url, rows)
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, url.render_as_string(hide_password=False), mode, str(batch)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    assert result["removed"] == rows, f"{mode} removed {result['removed']} of {rows} rows"
    return result


def _databases(names: list[str]) -> list[tuple[str, sa.URL, Callable[[], None]]]:
    dbs: list[tuple[str, sa.URL, Callable[[], None]]] = []
    if "sqlite" in names:
        directory = tempfile.mkdtemp(prefix="bench-metastore-")
        dbs.append(("sqlite", sa.make_url(f"sqlite:///{directory}/bench.db"), lambda: None))
    if "postgresql" in names:
        admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')

        def drop(schema: str = schema) -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')

        url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        from statestore.core import Config
        from statestore.core.metastore import MetastoreStoreBackend

        MetastoreStoreBackend(url, config=Config.from_dict({})).migrate()
        dbs.append(("postgresql", url, drop))
    return dbs


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows)


def bench_cleanup(
    url: sa.URL, rows: int, batch: int, rounds: int, airflow: AirflowDatabase | None
) -> dict[str, dict[str, float | str | None]]:
    """Median seconds and peak memory of the raw DELETE and of each ``cleanup()`` unbatched and batched.

    A variant that fails (Airflow's unbatched cleanup may exceed the driver's bound-parameter limit)
    keeps its first error instead of figures.
    """
    runs: dict[str, Callable[[], dict[str, float | str | None]]] = {
        "raw DELETE": lambda: {**measure_cleanup(url, "raw", rows), "error": None},
        "cleanup() one statement": lambda: {**measure_cleanup(url, "store", rows), "error": None},
        f"cleanup() batches of {batch}": lambda: {**measure_cleanup(url, "store", rows, batch), "error": None},
    }
    if airflow is not None:
        runs["Airflow cleanup() one statement"] = lambda: airflow.cleanup(rows, 0)
        runs[f"Airflow cleanup() batches of {batch}"] = lambda: airflow.cleanup(rows, batch)
    got: dict[str, list[dict[str, float | str | None]]] = {what: [] for what in runs}
    for round_no in range(rounds):
        order = list(runs)
        for what in order[round_no % len(order) :] + order[: round_no % len(order)]:
            got[what].append(runs[what]())
    summary: dict[str, dict[str, float | str | None]] = {}
    for what, results in got.items():
        errors = [r["error"] for r in results if r["error"] is not None]
        summary[what] = (
            {"error": errors[0]}
            if errors
            else {
                field: statistics.median(float(r[field] or 0) for r in results) for field in ("seconds", "peak_bytes")
            }
        )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="operations per block (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved blocks per side and operation (default 7)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired rows for the cleanup run (default 1M)")
    parser.add_argument("--cleanup-rounds", type=int, default=3, help="runs of each cleanup variant (default 3)")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=10_000, help="batch size of the batched cleanup run")
    parser.add_argument("--only", choices=("ops", "cleanup", "durability"), help="run only one part")
    parser.add_argument("--no-airflow", action="store_true", help="leave Airflow's MetastoreBackend out")
    args = parser.parse_args()
    with_airflow = AIRFLOW_VERSION is not None and not args.no_airflow
    if AIRFLOW_VERSION is None:
        print(
            "Airflow's MetastoreBackend left out: apache-airflow-core is not installed here "
            "(`nox -s bench -- metastore` installs it, as does the bench extra of statestore-core).",
            flush=True,
        )
    op_rows = [["database", "op", "raw ops/s", "store ops/s", "store/raw (median)"]]
    if with_airflow:
        op_rows[0] += [f"Airflow {AIRFLOW_VERSION} ops/s", "Airflow/raw (median)"]
    clean_rows = [["database", "rows", "what", "seconds", "peak MiB", "time vs raw"]]
    for name, url, drop in _databases(args.db.split(",")):
        try:
            if name == "sqlite" and args.only in (None, "durability"):
                durability = bench_durability(url, args.ops, args.rounds)
                print("SQLite durability: sqlite_synchronous = full vs normal\n" + _table(durability), flush=True)
            if args.only == "durability":
                continue
            airflow = AirflowDatabase(url) if with_airflow else None
            if args.only not in ("cleanup",):
                for r in bench_ops(url, args.ops, args.rounds, airflow):
                    row = [name, str(r["op"]), f"{r['raw']:.0f}", f"{r['store']:.0f}", f"{r['store/raw']:.2f}x"]
                    if airflow is not None:
                        row += [f"{r['airflow']:.0f}", f"{r['airflow/raw']:.2f}x"]
                    op_rows.append(row)
                print(_table(op_rows), flush=True)
            if args.only == "ops":
                continue
            for rows in sorted({args.rows // 10, args.rows}):
                results = bench_cleanup(url, rows, args.batch, args.cleanup_rounds, airflow)
                raw_seconds = float(results["raw DELETE"]["seconds"] or 0)
                for what, got in results.items():
                    if got.get("error") is not None:
                        clean_rows.append([name, str(rows), what, "-", "-", f"failed: {got['error']}"])
                        continue
                    seconds, peak = float(got["seconds"] or 0), float(got["peak_bytes"] or 0)
                    clean_rows.append(
                        [
                            name,
                            str(rows),
                            what,
                            f"{seconds:.2f}",
                            f"{peak / 2**20:.2f}",
                            f"{seconds / raw_seconds:.2f}x",
                        ]
                    )
                print(_table(clean_rows), flush=True)
        finally:
            drop()
    print("\n" + _table(op_rows) + "\n\n" + _table(clean_rows))


if __name__ == "__main__":
    main()
