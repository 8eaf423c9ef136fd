"""Reconciliation over many worker-side values on S3 (moto): requests by operation, wall time, peak memory.

A child process runs moto's threaded S3 server and fills its bucket directly through moto's own
backend (filling is not what is measured): N versioned values under ``<prefix>/ref/``, written more
than an hour ago. The metastore (SQLite) gets rows referencing ``--live`` of them. This process
then runs ``StateStore.reconcile`` against the server over HTTP and reports the requests it sent
by S3 operation (botocore ``before-call`` events), the metastore lookups, wall time and this
process's peak resident memory and its growth during the run, for each N given: flat memory shows
as no growth between N and 10 N.

Run: ``nox -s bench -- reconcile`` or ``python benchmarks/bench_reconcile.py [--objects 10000 100000]``.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import resource
import socket
import tempfile
import time
from collections import Counter
from datetime import timedelta
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
)

import sqlalchemy as sa

from statestore.core import Config, MetastoreStoreBackend, StateStore, TaskScope
from statestore.core.base import utcnow
from statestore.core.metastore.schema import row_hash, task_hash, task_state
from statestore.core.naming import VERSION_LENGTH
from statestore.s3 import S3StoreBackend

BUCKET = "statestore-bench-reconcile"
PREFIX = "bench"
WRITTEN_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: every value is older than the grace period."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scope(i: int) -> TaskScope:
    return TaskScope("bench-dag", f"run-{i // 1000}", "task", i % 1000)


def _version(i: int) -> str:
    version = f"{WRITTEN_MS:013x}{i:016x}"
    assert len(version) == VERSION_LENGTH
    return version


def _serve(port: int, objects: int, ready: Any) -> None:
    """The child: moto's threaded server on ``port``, its bucket filled with ``objects`` values."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    backend.create_bucket(BUCKET, "us-east-1")
    namer = S3StoreBackend(BUCKET, PREFIX, endpoint_url=f"http://127.0.0.1:{port}", config=Config.from_dict({}))
    for i in range(objects):
        backend.put_object(BUCKET, namer._value_name(_scope(i), "k", _version(i))[0], b'"value"')
    ready.set()
    while True:
        time.sleep(3600)


def _rows(server: MetastoreStoreBackend, worker: S3StoreBackend, objects: int, live: int) -> None:
    """Rows naming every ``objects // live``-th value (bulk insert: setup, not measured)."""
    step = max(1, objects // live) if live else objects + 1
    rows = []
    for i in range(0, objects, step):
        scope = _scope(i)
        reference = worker._reference(worker._value_name(scope, "k", _version(i))[0])
        rows.append(
            {
                "id": row_hash(scope, "k"),
                "task_hash": task_hash(scope),
                "dag_id": scope.dag_id,
                "run_id": scope.run_id,
                "task_id": scope.task_id,
                "map_index": scope.map_index,
                "key": "k",
                "value": '{"__airflow_state_ref__":"%s"}' % reference,  # noqa: UP031
                "updated_at": utcnow(),
                "expires_at": None,
            }
        )
    with server.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(task_state), rows[start : start + 5000])


def run(objects: int, live: int) -> dict[str, Any]:
    """Fill, reconcile once, and measure."""
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    child = context.Process(target=_serve, args=(port, objects, ready), daemon=True)
    child.start()
    try:
        if not ready.wait(1800):
            raise RuntimeError("the moto child did not fill its bucket within 30 minutes")
        config = Config.from_dict({})
        with tempfile.TemporaryDirectory() as home:
            server = MetastoreStoreBackend(f"sqlite:///{home}/meta.db", config=config)
            worker = S3StoreBackend(BUCKET, PREFIX, endpoint_url=f"http://127.0.0.1:{port}", config=config)
            _rows(server, worker, objects, live)
            sent: Counter[str] = Counter()
            worker.client.meta.events.register("before-call.s3", lambda model, **_: sent.update([model.name]))
            lookups = [0]
            get_many = server.get_many

            def counted(items: Any, **kwargs: Any) -> Any:
                lookups[0] += 1
                return get_many(items, **kwargs)

            server.get_many = counted  # type: ignore[method-assign]
            store = StateStore(server, worker, config)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            result = store.reconcile(grace=timedelta(hours=1))
            elapsed = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        child.kill()
        child.join()
    return {
        "objects": objects,
        "live": result.live,
        "discarded": result.discarded,
        "requests": dict(sent),
        "metastore lookups": lookups[0],
        "seconds": round(elapsed, 1),
        "peak RSS MiB": round(after / 1024, 1),
        "RSS growth MiB": round((after - before) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--live-fraction", type=float, default=0.5, help="share of values a row references")
    args = parser.parse_args()
    print("| values | live kept | discarded | S3 requests | metastore lookups | wall s | peak RSS MiB (growth) |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for objects in args.objects:
        row = run(objects, int(objects * args.live_fraction))
        requests = ", ".join(f"{op} {n}" for op, n in sorted(row["requests"].items()))
        print(
            f"| {objects:,} | {row['live']:,} | {row['discarded']:,} | {requests} | {row['metastore lookups']} "
            f"| {row['seconds']} | {row['peak RSS MiB']} (+{row['RSS growth MiB']}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
