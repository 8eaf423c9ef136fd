"""statestore-s3 beside raw boto3 on the same moto server, in the same run.

Measures ops/s of set/get/delete for (1) raw boto3 put_object/get_object/delete_object, (2)
S3StoreBackend, (3) StateStore task accessors on S3StoreBackend, (4) S3StoreBackend through Airflow's
worker-side hooks (``serialize_task_state_store_to_ref``/``deserialize_task_state_store_from_ref``/
``delete``) and (5) the same hooks of ``apache-airflow-providers-common-io``'s
``StateStoreObjectStorageBackend`` (fsspec/s3fs, configured through ``[common.io]`` and an Airflow
connection) when it is installed (it comes with the ``bench`` extra); the async twins under
concurrency; requests per operation, counted at the S3 server (so every client is counted alike,
retries included); and the requests and time of ``clear`` over 10,000 objects. Implementations take
turns operation by operation (rotating order), so drift of the server hits all of them alike.

Run: ``nox -s bench -- s3`` or ``python benchmarks/bench_s3.py [--ops 50] [--rounds 20] [--clear 10000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
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

import boto3
import botocore.config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from statestore.core import Config, StateStore, TaskScope
from statestore.s3 import S3StoreBackend

BUCKET = "statestore-bench"
PAYLOADS = {
    "100 B": json.dumps({"job_id": "j-" + "x" * 80}),
    "10 KiB": json.dumps({"rows": ["r" * 100] * 100}),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CountingMotoServer:
    """moto's S3 server in a thread, counting the HTTP requests it receives from any client.

    ``kinds`` counts them by method and first query parameter (``GET ?list-type`` is ListObjectsV2,
    ``POST ?delete`` DeleteObjects, a bare ``HEAD`` a HeadObject or HeadBucket).
    """

    def __init__(self) -> None:
        self.requests = 0
        self.kinds: Counter[str] = Counter()
        self._lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            query = environ.get("QUERY_STRING", "").partition("=")[0].partition("&")[0]
            with self._lock:
                self.requests += 1
                self.kinds[f"{environ['REQUEST_METHOD']} ?{query}" if query else environ["REQUEST_METHOD"]] += 1
            return app(environ, start_response)

        self._server = make_server(
            "127.0.0.1", free_port(), counting, threaded=True, request_handler=MotoRequestHandler
        )
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=50, help="operations per implementation per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clear", type=int, default=10_000, help="objects for the clear measurement")
    parser.add_argument(
        "--common-io-clear", type=int, default=1000, help="objects for common-io's clear (2 requests each)"
    )
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines cost time and add noise
    server = CountingMotoServer()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-s3-airflow-") as airflow_home:
            run(server, airflow_home, args)
    finally:
        server.stop()


def run(server: CountingMotoServer, airflow_home: str, args: argparse.Namespace) -> None:
    retries = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 5}, max_pool_connections=32)
    raw = boto3.client("s3", endpoint_url=server.endpoint, config=retries)
    raw.create_bucket(Bucket=BUCKET)
    config = Config.from_dict({"state_store": {"default_retention_days": "30"}})
    backend = S3StoreBackend(BUCKET, "bench", endpoint_url=server.endpoint, config=config)
    store = StateStore(backend=backend, config=config)
    scope = TaskScope("bench_dag", "run", "task")
    accessor = store.task_store(scope)
    expires = datetime.now(timezone.utc) + timedelta(days=30)
    common_io = load_common_io(server.endpoint, airflow_home)
    n = args.ops

    print(f"moto {server.endpoint}; {n} ops x {args.rounds} rounds per cell; ops/s (ratio to raw boto3)")
    print("req/op: HTTP requests per operation counted at the S3 server, for each column in turn")
    tables: dict[str, list[str]] = {
        "backend and StateStore": ["backend", "accessor"],
        "Airflow worker-side hooks (serialize_task_state_store_to_ref / deserialize_..._from_ref / delete)": [
            "hooks",
            *(["common-io"] if common_io else []),
        ],
    }
    headers = {"backend": "backend", "accessor": "StateStore", "hooks": "ours", "common-io": "common-io"}
    total = n * args.rounds
    results: list[tuple[str, dict[tuple[str, str], float], Counter[tuple[str, str]]]] = []
    for label, payload in PAYLOADS.items():
        impls = implementations(raw, backend, accessor, scope, payload, expires, common_io)
        spent: dict[tuple[str, str], float] = Counter()
        sent: Counter[tuple[str, str]] = Counter()
        names = list(impls)
        for round_ in range(args.rounds):
            for op in ("set", "get", "delete"):
                for i in range(n):  # one operation each, in rotating order: server drift hits all alike
                    turn = (i + round_) % len(names)
                    for name in names[turn:] + names[:turn]:
                        requests, start = server.requests, time.perf_counter()
                        impls[name][op](i)
                        spent[(name, op)] += time.perf_counter() - start
                        sent[(name, op)] += server.requests - requests
        assert all(sent[("raw", op)] == total for op in ("set", "get", "delete")), f"raw boto3 requests: {sent}"
        results.append((label, spent, sent))

    for title, columns in tables.items():
        print(f"\n{title}")
        names = "".join(f" {headers[c]:>16}" for c in columns)
        print(f"{'payload':8} {'op':7} {'raw boto3':>10}{names} {'req/op':>8}")
        for label, spent, sent in results:
            for op in ("set", "get", "delete"):
                base = total / spent[("raw", op)]
                cells = [f"{base:10.0f}"]
                for name in columns:
                    rate = total / spent[(name, op)]
                    cells.append(f"{rate:9.0f} ({rate / base:4.2f}x)")
                per_op = "/".join(f"{sent[(name, op)] / total:.2f}".rstrip("0").rstrip(".") for name in columns)
                print(f"{label:8} {op:7} {' '.join(cells)} {per_op:>8}")

    asyncio.run(async_rates(backend, raw, scope, n))
    clear_many(backend, raw, server, args.clear)
    if common_io:
        clear_common_io(common_io, raw, server, min(args.clear, args.common_io_clear))


def load_common_io(endpoint: str, airflow_home: str) -> Any:
    """common-io's StateStoreObjectStorageBackend on ``s3://<conn>@BUCKET/common-io``, or None (one line says why).

    It reads its base path from ``[common.io] state_store_objectstorage_path`` and reaches S3 through the
    Airflow connection named in that path; both come from the environment here, with a throwaway
    AIRFLOW_HOME so no user airflow.cfg takes part.
    """
    os.environ.update(
        {
            "AIRFLOW_HOME": airflow_home,
            "AIRFLOW__COMMON_IO__STATE_STORE_OBJECTSTORAGE_PATH": f"s3://statestore_bench@{BUCKET}/common-io",
            "AIRFLOW_CONN_STATESTORE_BENCH": json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint}}),
        }
    )
    logging.getLogger("aiobotocore").setLevel(logging.WARNING)  # "Found credentials ..." per client
    try:
        from airflow.providers.common.io.state_store.backend import StateStoreObjectStorageBackend
        from airflow.sdk.state import TaskScope as AirflowTaskScope

        backend = StateStoreObjectStorageBackend()
        probe = AirflowTaskScope(dag_id="bench_dag", run_id="run", task_id="probe")
        ref = backend.serialize_task_state_store_to_ref(value=1, key="probe", scope=probe)
        if backend.deserialize_task_state_store_from_ref(ref) != 1:
            raise RuntimeError(f"reading back {ref} did not return the value written")
        backend.delete(probe, "probe")
    except Exception as error:  # any failure to install, import, configure or reach S3 only skips its rows
        print(f"common-io StateStoreObjectStorageBackend skipped: {type(error).__name__}: {error}")
        return None
    return backend


def implementations(
    raw: Any,
    backend: S3StoreBackend,
    accessor: Any,
    scope: TaskScope,
    payload: str,
    expires: datetime,
    common_io: Any,
) -> dict[str, dict[str, Callable[[int], Any]]]:
    """set/get/delete of ``payload`` for raw boto3, the backend, StateStore's task accessor and the hooks."""
    value, body = json.loads(payload), payload.encode()
    impls = {
        "raw": {
            "set": lambda i: raw.put_object(Bucket=BUCKET, Key=f"raw/{i}", Body=body),
            "get": lambda i: raw.get_object(Bucket=BUCKET, Key=f"raw/{i}")["Body"].read(),
            "delete": lambda i: raw.delete_object(Bucket=BUCKET, Key=f"raw/{i}"),
        },
        "backend": {
            "set": lambda i: backend.set(scope, f"b{i}", payload, expires_at=expires),
            "get": lambda i: backend.get(scope, f"b{i}"),
            "delete": lambda i: backend.delete(scope, f"b{i}"),
        },
        "accessor": {
            "set": lambda i: accessor.set(f"a{i}", value),
            "get": lambda i: accessor.get(f"a{i}"),
            "delete": lambda i: accessor.delete(f"a{i}"),
        },
        "hooks": hooks(backend, scope, "h", value),
    }
    if common_io:
        from airflow.sdk.state import TaskScope as AirflowTaskScope

        impls["common-io"] = hooks(common_io, AirflowTaskScope(scope.dag_id, scope.run_id, scope.task_id), "c", value)
    return impls


def hooks(backend: Any, scope: Any, tag: str, value: Any) -> dict[str, Callable[[int], Any]]:
    """set/get/delete of ``value`` through Airflow 3.3.2's worker-side hooks, as a worker calls them."""
    refs: dict[int, str] = {}

    def set_(i: int) -> None:
        refs[i] = backend.serialize_task_state_store_to_ref(value=value, key=f"{tag}{i}", scope=scope)

    return {
        "set": set_,
        "get": lambda i: backend.deserialize_task_state_store_from_ref(refs[i]),
        "delete": lambda i: backend.delete(scope, f"{tag}{i}"),
    }


async def async_rates(backend: S3StoreBackend, raw: Any, scope: TaskScope, n: int, concurrency: int = 16) -> None:
    """Async twins (thread offload) under concurrency beside raw boto3 in a thread pool of the same size."""
    payload = PAYLOADS["100 B"]
    semaphore = asyncio.Semaphore(concurrency)

    async def limited(coro: Any) -> None:
        async with semaphore:
            await coro

    start = time.perf_counter()
    await asyncio.gather(*(limited(backend.aset(scope, f"async{i}", payload)) for i in range(n)))
    aset_rate = n / (time.perf_counter() - start)
    start = time.perf_counter()
    await asyncio.gather(*(limited(backend.aget(scope, f"async{i}")) for i in range(n)))
    aget_rate = n / (time.perf_counter() - start)
    with ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        list(pool.map(lambda i: raw.put_object(Bucket=BUCKET, Key=f"rawa/{i}", Body=payload.encode()), range(n)))
        put_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        list(pool.map(lambda i: raw.get_object(Bucket=BUCKET, Key=f"rawa/{i}")["Body"].read(), range(n)))
        get_rate = n / (time.perf_counter() - start)
    print(
        f"\nasync, {concurrency} in flight: aset {aset_rate:.0f}/s ({aset_rate / put_rate:.2f}x raw put in "
        f"{concurrency} threads: {put_rate:.0f}/s), aget {aget_rate:.0f}/s ({aget_rate / get_rate:.2f}x raw get: "
        f"{get_rate:.0f}/s)"
    )


def clear_many(backend: S3StoreBackend, raw: Any, server: CountingMotoServer, count: int) -> None:
    """``clear`` of ``count`` objects in one task scope; expected ceil(N/1000) list + ceil(N/1000) delete requests."""
    scope = TaskScope("bench_clear", secrets.token_hex(4), "task")
    prefix = backend.object_name(scope, "x").rpartition("/")[0]
    expected = f"ceil(N/1000) list + delete = {2 * math.ceil(count / 1000)}"
    measure_clear("backend", lambda: backend.clear(scope), prefix, raw, server, count, expected)


def clear_common_io(backend: Any, raw: Any, server: CountingMotoServer, count: int) -> None:
    """common-io's ``clear`` (glob, then one ``unlink`` per object) of ``count`` objects in one task scope."""
    from airflow.sdk.state import TaskScope as AirflowTaskScope

    scope = AirflowTaskScope(dag_id="bench_clear", run_id=secrets.token_hex(4), task_id="task")
    ref = backend.serialize_task_state_store_to_ref(value=1, key="x", scope=scope)
    prefix = ref.partition(f"@{BUCKET}/")[2].rpartition("/")[0]
    backend.delete(scope, "x")
    measure_clear("common-io", lambda: backend.clear(scope), prefix, raw, server, count, "")


def measure_clear(
    name: str, clear: Callable[[], None], prefix: str, raw: Any, server: CountingMotoServer, count: int, expected: str
) -> None:
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: raw.put_object(Bucket=BUCKET, Key=f"{prefix}/k{i}", Body=b"1"), range(count)))
    fill = time.perf_counter() - start
    before_kinds = server.kinds.copy()
    start = time.perf_counter()
    clear()
    elapsed = time.perf_counter() - start
    kinds = server.kinds - before_kinds
    left = raw.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("KeyCount", 0)
    print(
        f"\n{name} clear of {count} objects: {kinds.total()} requests ({dict(kinds)}{'; ' if expected else ''}"
        f"{expected}), {elapsed:.2f} s, {left} left (fill took {fill:.1f} s)"
    )


if __name__ == "__main__":
    main()
