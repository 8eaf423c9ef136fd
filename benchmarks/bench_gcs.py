"""GCSStoreBackend beside raw google-cloud-storage on the same emulator, in the same run.

Usage: ``nox -s bench -- gcs [--ops N] [--rounds R] [--payload-bytes B] [--clear-objects C] [--url URL]``
or ``python benchmarks/bench_gcs.py``. fake-gcs-server is started on 127.0.0.1 unless ``--url`` (or
``STATESTORE_TEST_GCS_URL``) names a running emulator.

* ops/s: blocks of ``--ops`` sequential set/get/delete calls per variant, ``--rounds`` blocks
  interleaved across variants so background load hits all alike; the best block counts. The raw
  variant is ``blob.upload_from_string`` / ``blob.download_as_bytes`` / ``blob.delete`` of the same
  payload; the backend writes the same payload with its expiry (metadata and ``customTime``).
* concurrent: ``aset``/``aget``/``adelete`` with 16 operations in flight (offloaded to the loop's
  default executor, sized to 16 threads here) beside the raw calls in a pool of 16 threads.
* requests per operation and the cost of ``clear`` are counted on the wire by a loopback proxy
  (``statestore.gcs.testing.CountingProxy``); timings are taken without the proxy, except clear's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from statestore.core import Config, TaskScope
from statestore.gcs import GCSStoreBackend
from statestore.gcs.testing import CountingProxy, Emulator, create_bucket, start_fake_gcs_server

OPS = ("set", "get", "delete")
SCOPE = TaskScope("bench_dag", "manual__2024-01-01T00:00:00+00:00", "extract", 3)
Calls = dict[str, Callable[[int], object]]


def payload(size: int) -> str:
    """A JSON document of about ``size`` bytes."""
    text = json.dumps({"job_id": "j-123", "progress": 0.5, "pad": ""})
    return json.dumps({"job_id": "j-123", "progress": 0.5, "pad": "x" * max(0, size - len(text))})


def raw_client(url: str) -> storage.Client:
    """A plain client on the emulator, as an application would create it."""
    return storage.Client(project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})


def variants(url: str, bucket: str, value: str, keys: int) -> dict[str, Calls]:
    """Sync set/get/delete callables of the raw client and of the backend, by variant name."""
    raw_bucket = raw_client(url).bucket(bucket)
    backend = GCSStoreBackend(bucket, f"bench-{secrets.token_hex(4)}", endpoint=url, config=Config.from_dict({}))
    names = [backend.object_name(SCOPE, f"k{i}").replace(backend.prefix, "raw", 1) for i in range(keys)]
    data = value.encode()
    expires = datetime.now(timezone.utc) + timedelta(days=1)
    return {
        "raw google-cloud-storage": {
            "set": lambda i: raw_bucket.blob(names[i % keys]).upload_from_string(data),
            "get": lambda i: raw_bucket.blob(names[i % keys]).download_as_bytes(),
            "delete": lambda i: raw_bucket.blob(names[i % keys]).delete(),
        },
        "GCSStoreBackend": {
            "set": lambda i: backend.set(SCOPE, f"k{i % keys}", value, expires_at=expires),
            "get": lambda i: backend.get(SCOPE, f"k{i % keys}"),
            "delete": lambda i: backend.delete(SCOPE, f"k{i % keys}"),
        },
    }


def timed_block(call: Callable[[int], object], ops: int) -> float:
    """Operations per second of ``ops`` sequential calls."""
    started = time.perf_counter()
    for i in range(ops):
        call(i)
    return ops / (time.perf_counter() - started)


def sequential(url: str, bucket: str, value: str, ops: int, rounds: int) -> dict[str, dict[str, float]]:
    """Best ops/s per variant and operation over interleaved rounds."""
    calls = variants(url, bucket, value, ops)
    best: dict[str, dict[str, float]] = {name: dict.fromkeys(OPS, 0.0) for name in calls}
    for _ in range(rounds):
        for name, ops_of in calls.items():
            for op in OPS:  # each block deletes what its set wrote, so every round starts empty
                best[name][op] = max(best[name][op], timed_block(ops_of[op], ops))
    return best


def concurrent(
    url: str, bucket: str, value: str, ops: int, rounds: int, width: int = 16
) -> dict[str, dict[str, float]]:
    """Best ops/s with ``width`` operations in flight: raw calls in a thread pool, backend async twins."""
    calls = variants(url, bucket, value, ops)
    backend = GCSStoreBackend(bucket, f"bench-{secrets.token_hex(4)}", endpoint=url, config=Config.from_dict({}))
    expires = datetime.now(timezone.utc) + timedelta(days=1)

    async def gathered(op: str) -> float:
        # The async twins offload to the loop's default executor; give it as many threads as the raw pool.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(width))
        limit = asyncio.Semaphore(width)

        async def one(i: int) -> None:
            async with limit:
                if op == "set":
                    await backend.aset(SCOPE, f"k{i}", value, expires_at=expires)
                elif op == "get":
                    await backend.aget(SCOPE, f"k{i}")
                else:
                    await backend.adelete(SCOPE, f"k{i}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(ops)))
        return ops / (time.perf_counter() - started)

    def pooled(call: Callable[[int], object]) -> float:
        with ThreadPoolExecutor(width) as pool:
            started = time.perf_counter()
            list(pool.map(call, range(ops)))
            return ops / (time.perf_counter() - started)

    raw = calls["raw google-cloud-storage"]
    best: dict[str, dict[str, float]] = {
        f"raw, {width} threads": dict.fromkeys(OPS, 0.0),
        f"backend async, {width} in flight": dict.fromkeys(OPS, 0.0),
    }
    for _ in range(rounds):
        for op in OPS:
            best[f"raw, {width} threads"][op] = max(best[f"raw, {width} threads"][op], pooled(raw[op]))
            rate = asyncio.run(gathered(op))
            best[f"backend async, {width} in flight"][op] = max(best[f"backend async, {width} in flight"][op], rate)
    return best


def requests_per_op(url: str, bucket: str, value: str, ops: int = 50) -> dict[str, dict[str, float]]:
    """Requests the emulator received per operation, counted by the proxy."""
    with CountingProxy(url) as proxy:
        calls = variants(proxy.url, bucket, value, ops)
        counts: dict[str, dict[str, float]] = {}
        for name, ops_of in calls.items():
            ops_of["set"](0)  # a first call may set up the client; count steady-state calls
            ops_of["delete"](0)
            proxy.take()
            counts[name] = {}
            for op in OPS:
                for i in range(ops):
                    ops_of[op](i)
                counts[name][op] = len(proxy.take()) / ops
    return counts


def clear_cost(url: str, bucket: str, value: str, objects: int) -> dict[str, float]:
    """Write ``objects`` keys into one task scope, then count and time the backend's ``clear``."""
    prefix = f"bench-clear-{secrets.token_hex(4)}"
    writer = GCSStoreBackend(bucket, prefix, endpoint=url, config=Config.from_dict({}))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: writer.set(SCOPE, f"k{i}", value), range(objects)))
    with CountingProxy(url) as proxy:
        backend = GCSStoreBackend(bucket, prefix, endpoint=proxy.url, config=Config.from_dict({}))
        started = time.perf_counter()
        backend.clear(SCOPE)
        seconds = time.perf_counter() - started
        seen = proxy.take()
    left = len(writer.keys(SCOPE))
    batches = [r.batch_calls for r in seen if r.path.startswith("/batch/")]
    return {
        "objects": objects,
        "requests": len(seen),
        "list requests": sum(1 for r in seen if r.method == "GET"),
        "batch requests": len(batches),
        "largest batch": max(batches, default=0),
        "seconds": round(seconds, 2),
        "objects left": left,
    }


def main() -> None:
    """Run every measurement and print the tables (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ops", type=int, default=300, help="operations per timed block (default 300)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best block counts (default 5)")
    parser.add_argument("--payload-bytes", type=int, default=256, help="size of each value (default 256)")
    parser.add_argument("--clear-objects", type=int, default=10_000, help="objects for the clear run (default 10000)")
    parser.add_argument("--url", default=os.environ.get("STATESTORE_TEST_GCS_URL"), help="a running GCS emulator")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()

    emulator = Emulator(args.url.rstrip("/")) if args.url else start_fake_gcs_server()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url  # anonymous credentials for every client
    try:
        bucket = f"bench-{secrets.token_hex(4)}"
        create_bucket(emulator.url, bucket)
        value = payload(args.payload_bytes)
        results = {
            "sequential ops/s": sequential(emulator.url, bucket, value, args.ops, args.rounds),
            "concurrent ops/s": concurrent(emulator.url, bucket, value, args.ops, max(1, args.rounds // 2)),
            "requests per op": requests_per_op(emulator.url, bucket, value),
            "clear": clear_cost(emulator.url, bucket, value, args.clear_objects),
        }
    finally:
        emulator.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"GCS emulator {emulator.url}; payload {len(value)} bytes; {args.ops} ops x {args.rounds} rounds (best)")
    for title in ("sequential ops/s", "concurrent ops/s", "requests per op"):
        table = results[title]
        print(f"\n{title:<34}" + "".join(f"{op:>10}" for op in OPS))
        for name, row in table.items():
            print(f"{name:<34}" + "".join(f"{row[op]:>10.1f}" for op in OPS))
    seq = results["sequential ops/s"]
    ratios = {op: seq["GCSStoreBackend"][op] / seq["raw google-cloud-storage"][op] for op in OPS}
    print("\nbackend / raw (sequential):       " + "".join(f"{ratios[op]:>10.2f}" for op in OPS))
    print("\nclear: " + ", ".join(f"{k} {v}" for k, v in results["clear"].items()))


if __name__ == "__main__":
    main()
