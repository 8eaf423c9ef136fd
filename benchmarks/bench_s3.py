"""statestore-s3 beside raw boto3 on the same moto server, in the same run.

Measures ops/s of set/get/delete for (1) raw boto3 put_object/get_object/delete_object, (2)
S3StoreBackend, (3) StateStore task accessors on S3StoreBackend, and the async twins under
concurrency; requests per operation (botocore ``before-send`` events, retries included); and the
requests and time of ``clear`` over 10,000 objects. Implementations take turns operation by operation
(rotating order), so drift of the server hits all of them alike.

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
from moto.server import ThreadedMotoServer

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


class Sent:
    """Counts HTTP requests a client sends, by operation."""

    def __init__(self, client: Any) -> None:
        self.ops: Counter[str] = Counter()
        self._op = "?"
        client.meta.events.register("before-call.s3", self._call)
        client.meta.events.register("before-send.s3", self._send)

    def _call(self, model: Any, **_: Any) -> None:
        self._op = model.name

    def _send(self, **_: Any) -> None:
        self.ops[self._op] += 1

    def total(self) -> int:
        return sum(self.ops.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=50, help="operations per implementation per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clear", type=int, default=10_000, help="objects for the clear measurement")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines cost time and add noise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        run(endpoint, args)
    finally:
        server.stop()


def run(endpoint: str, args: argparse.Namespace) -> None:
    retries = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 5}, max_pool_connections=32)
    raw = boto3.client("s3", endpoint_url=endpoint, config=retries)
    raw.create_bucket(Bucket=BUCKET)
    config = Config.from_dict({"state_store": {"default_retention_days": "30"}})
    backend = S3StoreBackend(BUCKET, "bench", endpoint_url=endpoint, config=config)
    store = StateStore(backend=backend, config=config)
    raw_sent, backend_sent = Sent(raw), Sent(backend.client)
    scope = TaskScope("bench_dag", "run", "task")
    accessor = store.task_store(scope)
    expires = datetime.now(timezone.utc) + timedelta(days=30)
    n = args.ops

    print(f"moto {endpoint}; {n} ops x {args.rounds} rounds per cell; ops/s (ratio to raw boto3)\n")
    print(f"{'payload':8} {'op':7} {'raw boto3':>10} {'backend':>16} {'StateStore':>16} {'req/op':>7}")
    for label, payload in PAYLOADS.items():
        impls = implementations(raw, backend, accessor, scope, payload, expires)
        spent: dict[tuple[str, str], float] = Counter()
        before = backend_sent.ops.copy()
        names = list(impls)
        for round_ in range(args.rounds):
            for op in ("set", "get", "delete"):
                for i in range(n):  # one operation each, in rotating order: server drift hits all alike
                    for name in names[(i + round_) % 3 :] + names[: (i + round_) % 3]:
                        start = time.perf_counter()
                        impls[name][op](i)
                        spent[(name, op)] += time.perf_counter() - start
        total = n * args.rounds
        requests = backend_sent.ops - before
        for op, operation in (("set", "PutObject"), ("get", "GetObject"), ("delete", "DeleteObject")):
            base = total / spent[("raw", op)]
            cells = [f"{base:10.0f}"]
            for name in ("backend", "accessor"):
                rate = total / spent[(name, op)]
                cells.append(f"{rate:9.0f} ({rate / base:4.2f}x)")
            per_op = requests[operation] / (2 * total)  # the backend's client serves the accessor too
            print(f"{label:8} {op:7} {' '.join(cells)} {per_op:7.2f}")
        assert sum(requests.values()) == 2 * 3 * total, f"unexpected requests: {requests}"
    assert raw_sent.total() > 0

    asyncio.run(async_rates(backend, raw, scope, n))
    clear_many(backend, raw, backend_sent, args.clear)


def implementations(
    raw: Any, backend: S3StoreBackend, accessor: Any, scope: TaskScope, payload: str, expires: datetime
) -> dict[str, dict[str, Callable[[int], Any]]]:
    """set/get/delete of ``payload`` for raw boto3, the backend and StateStore's task accessor."""
    value, body = json.loads(payload), payload.encode()
    return {
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


def clear_many(backend: S3StoreBackend, raw: Any, sent: Sent, count: int) -> None:
    scope = TaskScope("bench_clear", secrets.token_hex(4), "task")
    prefix = backend.object_name(scope, "x").rpartition("/")[0]
    start = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: raw.put_object(Bucket=BUCKET, Key=f"{prefix}/k{i}", Body=b"1"), range(count)))
    fill = time.perf_counter() - start
    sent.ops.clear()
    start = time.perf_counter()
    backend.clear(scope)
    elapsed = time.perf_counter() - start
    left = raw.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/").get("KeyCount", 0)
    expected = 2 * math.ceil(count / 1000)
    print(
        f"\nclear of {count} objects: {sent.total()} requests ({dict(sent.ops)}; ceil(N/1000) list + delete = "
        f"{expected}), {elapsed:.2f} s, {left} left (fill took {fill:.1f} s)"
    )


if __name__ == "__main__":
    main()
