"""StateStore + MetastoreStoreBackend versus raw SQLAlchemy Core on the same database, in the same run.

Run with ``nox -s bench -- metastore`` or ``python benchmarks/bench_metastore.py [--ops N]
[--rounds N] [--rows N] [--db sqlite,postgresql] [--only ops|cleanup]``.

Operations: ops/s of set/get/delete through ``StateStore`` accessors versus raw SQLAlchemy Core
doing the same work: a table with the metastore's columns, types and indexes (rows keyed by the
SHA-256 of their path, as the metastore keys them), the same upsert/select/delete statements,
an engine with the same settings (autocommit single statements, WAL + ``synchronous=NORMAL``
on SQLite) and a pooled connection checked out per operation. Each round runs a block of
``--ops`` operations on each side, interleaved (alternating which side goes first); the table
shows the median ops/s and the median of the per-round ratios.

Cleanup: time and peak Python memory (tracemalloc, in a fresh subprocess) of ``cleanup()`` over
N expired rows versus one raw ``DELETE``, with ratios. PostgreSQL runs in a private schema of
``STATESTORE_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import argparse
import hashlib
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
    """An engine configured like the metastore's: autocommit statements, WAL and synchronous=NORMAL on SQLite."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True)
    if url.get_backend_name() == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: object, _record: object) -> None:
            for pragma in ("busy_timeout = 60000", "journal_mode = WAL", "synchronous = NORMAL"):
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


def _store_ops(url: sa.URL) -> dict[str, Callable[[int], None]]:
    from statestore.core import Config, StateStore
    from statestore.core.metastore import MetastoreStoreBackend

    config = Config.from_dict({})
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


def bench_ops(url: sa.URL, n: int, rounds: int) -> list[dict[str, float | str]]:
    """Per round and operation, one block of ``n`` ops on each side (alternating who goes first); medians."""
    raw, store = _raw_ops(_raw_engine(url)), _store_ops(url)
    for ops in (raw, store):  # warm up connections and statement caches
        for name in ("set", "get", "delete"):
            ops[name](0)
    rates: dict[tuple[str, str], list[float]] = {}
    for round_no in range(rounds):
        sides = [("raw", raw), ("store", store)]
        for name in ("set", "get", "delete"):
            for side, ops in sides if round_no % 2 == 0 else sides[::-1]:
                rates.setdefault((side, name), []).append(_rate(ops[name], n))
    return [
        {
            "op": name,
            "raw": statistics.median(rates["raw", name]),
            "store": statistics.median(rates["store", name]),
            "ratio": statistics.median(s / r for s, r in zip(rates["store", name], rates["raw", name], strict=True)),
        }
        for name in ("set", "get", "delete")
    ]


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


def bench_cleanup(url: sa.URL, rows: int, batch: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median seconds and peak memory of the raw DELETE and of ``cleanup()`` unbatched and batched."""
    runs = {
        "raw DELETE": ("raw", 0),
        "cleanup() one statement": ("store", 0),
        f"cleanup() batches of {batch}": ("store", batch),
    }
    got: dict[str, list[dict[str, float]]] = {what: [] for what in runs}
    for round_no in range(rounds):
        order = list(runs)
        for what in order[round_no % len(order) :] + order[: round_no % len(order)]:
            mode, size = runs[what]
            got[what].append(measure_cleanup(url, mode, rows, size))
    return {
        what: {field: statistics.median(r[field] for r in results) for field in ("seconds", "peak_bytes")}
        for what, results in got.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000, help="operations per block (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved blocks per side and operation (default 7)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="expired rows for the cleanup run (default 1M)")
    parser.add_argument("--cleanup-rounds", type=int, default=3, help="runs of each cleanup variant (default 3)")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite,postgresql")
    parser.add_argument("--batch", type=int, default=10_000, help="batch size of the batched cleanup run")
    parser.add_argument("--only", choices=("ops", "cleanup"), help="run only the operations or the cleanup part")
    args = parser.parse_args()
    op_rows = [["database", "op", "raw ops/s", "store ops/s", "store/raw (median)"]]
    clean_rows = [["database", "rows", "what", "seconds", "peak MiB", "time vs raw"]]
    for name, url, drop in _databases(args.db.split(",")):
        try:
            if args.only != "cleanup":
                for r in bench_ops(url, args.ops, args.rounds):
                    op_rows.append([name, str(r["op"]), f"{r['raw']:.0f}", f"{r['store']:.0f}", f"{r['ratio']:.2f}x"])
                print(_table(op_rows), flush=True)
            if args.only == "ops":
                continue
            for rows in sorted({args.rows // 10, args.rows}):
                results = bench_cleanup(url, rows, args.batch, args.cleanup_rounds)
                raw_seconds = results["raw DELETE"]["seconds"]
                for what, got in results.items():
                    clean_rows.append(
                        [
                            name,
                            str(rows),
                            what,
                            f"{got['seconds']:.2f}",
                            f"{got['peak_bytes'] / 2**20:.2f}",
                            f"{got['seconds'] / raw_seconds:.2f}x",
                        ]
                    )
                print(_table(clean_rows), flush=True)
        finally:
            drop()
    print("\n" + _table(op_rows) + "\n\n" + _table(clean_rows))


if __name__ == "__main__":
    main()
