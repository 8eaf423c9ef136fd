"""RedisStoreBackend (and StateStore accessors on it) beside raw redis-py with the same connection model.

Usage: ``nox -s bench -- redis [--ops N] [--rounds R] [--payload-bytes B] [--url URL] [--skip PART ...]``
or ``python benchmarks/bench_redis.py``; ``--only backend:set --count N`` runs just N operations (for
``valgrind --tool=callgrind``: instructions per operation from the difference of two counts). Parts,
each printed as a table:

* ``single``: one thread, set/get/delete in ``--rounds`` interleaved blocks of ``--ops`` sequential
  operations per variant (so that load from other processes hits all alike); median and best ops/s
  and the median of the per-block ratios to raw redis-py with the backend's connection model (a
  pooled client: a connection borrowed per command), to raw redis-py holding one connection per
  thread, and to raw redis-py sending the backend's own scripts by hand (the same server work);
  round trips per operation as the server saw them (MONITOR); the client's CPU time per operation.
* ``async``: the same with ``redis.asyncio``.
* ``servertime``: server time per operation on a private redis-server: ``INFO commandstats`` time of the
  commands sent, and server CPU per operation (``INFO cpu``).
* ``concurrency``: 8 processes x 2 threads against raw redis-py at equal concurrency (total ops/s).
* ``cluster``: the single-thread workload on a private 3-primary Redis Cluster beside raw ``RedisCluster``.
* ``clear``: the longest PING round trip of another client while ``clear`` deletes 100,000 keys.
* ``reconcile``: reconciliation of 100,000 worker-side versions (one in five still named by a row,
  Redis in both roles on a private server): wall time, peak Python memory, requests by command.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from redis.cluster import RedisCluster

from statestore.core import Config, StateStore, TaskScope
from statestore.core.naming import encode_segment, new_version
from statestore.redis import RedisStoreBackend
from statestore.redis.layout import KeyLayout
from statestore.redis.scripts import DELETE as DELETE_SCRIPT
from statestore.redis.scripts import SET as SET_SCRIPT
from statestore.redis.testing import CommandCounter, LocalCluster, LocalServer

OPS = ("set", "get", "delete")
SCOPE = TaskScope("bench_dag", "manual__2024-01-01T00:00:00+00:00", "extract", 3)
KEYS = [f"progress-{i}" for i in range(1000)]
PARTS = ("single", "async", "servertime", "concurrency", "cluster", "clear", "reconcile")


@dataclass
class Variant:
    """One client's set/get/delete callables taking the operation number."""

    name: str
    client_name: str
    calls: dict[str, Callable[[int], object]]


def payload(size: int) -> str:
    """A JSON document of about ``size`` bytes."""
    text = json.dumps({"job_id": "j-123", "progress": 0.5, "pad": ""})
    return json.dumps({"job_id": "j-123", "progress": 0.5, "pad": "x" * max(0, size - len(text))})


def backend_for(url: str, prefix: str, **kwargs: Any) -> RedisStoreBackend:
    return RedisStoreBackend(url, key_prefix=prefix, config=Config.from_dict({}), **kwargs)


def raw_calls(client: Any, key: str, value: str) -> dict[str, Callable[[int], object]]:
    """Plain SET/GET/DEL of keys as long as the backend's, with the same payload."""
    return {
        "set": lambda i: client.set(f"{key}{i % 1000}", value),
        "get": lambda i: client.get(f"{key}{i % 1000}"),
        "delete": lambda i: client.delete(f"{key}{i % 1000}"),
    }


def backend_calls(backend: RedisStoreBackend, value: str) -> dict[str, Callable[[int], object]]:
    return {
        "set": lambda i: backend.set(SCOPE, KEYS[i % 1000], value),
        "get": lambda i: backend.get(SCOPE, KEYS[i % 1000]),
        "delete": lambda i: backend.delete(SCOPE, KEYS[i % 1000]),
    }


def script_calls(client: Any, layout: KeyLayout, value: str) -> dict[str, Callable[[int], object]]:
    """The backend's own commands sent by hand: its ``SET``/``DELETE`` scripts by SHA1, ``GET`` of the value key.

    The same work on the server as the backend's, with none of its client-side layers (validation,
    naming, error translation): what a user hand-writing the index upkeep with redis-py would pay.
    """
    set_sha, delete_sha = client.script_load(SET_SCRIPT), client.script_load(DELETE_SCRIPT)
    names = [layout.command_keys(SCOPE, key) for key in KEYS]
    stored = (":" + value).encode()
    return {
        "set": lambda i: client.evalsha(set_sha, 3, *names[i % 1000], stored),
        "get": lambda i: client.get(names[i % 1000][0]),
        "delete": lambda i: client.evalsha(delete_sha, 3, *names[i % 1000]),
    }


def sync_variants(url: str, prefix: str, value: str) -> tuple[list[Variant], list[Callable[[], None]]]:
    backend = backend_for(url, prefix, client_name=f"{prefix}backend")
    raw_key = backend.layout.value_key(SCOPE, "k")  # the same key length and payload as the backend writes
    pooled = redis.Redis.from_url(url, client_name=f"{prefix}raw")
    per_thread = redis.Redis.from_url(url, client_name=f"{prefix}raw1", single_connection_client=True)
    scripted = redis.Redis.from_url(url, client_name=f"{prefix}rawscripts")
    accessor_backend = backend_for(url, f"{prefix}acc:", client_name=f"{prefix}accessor")
    accessor = StateStore(backend=accessor_backend, config=Config.from_dict({})).task_store(SCOPE)
    document = json.loads(value)
    variants = [
        Variant("raw redis-py (pooled)", f"{prefix}raw", raw_calls(pooled, raw_key, value)),
        Variant("raw redis-py (1 conn)", f"{prefix}raw1", raw_calls(per_thread, raw_key, value)),
        Variant(
            "raw redis-py (scripts)",
            f"{prefix}rawscripts",
            script_calls(scripted, KeyLayout(f"{prefix}scripts:"), value),
        ),
        Variant("RedisStoreBackend", f"{prefix}backend", backend_calls(backend, value)),
        Variant(
            "StateStore accessor",
            f"{prefix}accessor",
            {
                "set": lambda i: accessor.set(KEYS[i % 1000], document),
                "get": lambda i: accessor.get(KEYS[i % 1000]),
                "delete": lambda i: accessor.delete(KEYS[i % 1000]),
            },
        ),
    ]
    return variants, [pooled.close, per_thread.close, scripted.close, backend.close, accessor_backend.close]


Rates = dict[tuple[str, str], list[float]]


def block_rates(variants: list[Variant], ops: int, rounds: int) -> tuple[Rates, Rates]:
    """ops/s, and this process's CPU µs per op, of each variant in each of ``rounds`` interleaved blocks.

    The CPU time (user + system, ``time.process_time``) is the client's own cost per operation,
    much less sensitive to the machine's load than the wall-clock rate.
    """
    rates: Rates = {}
    cpu: Rates = {}
    for _ in range(rounds):
        for op in OPS:
            for variant in variants:
                call = variant.calls[op]
                start, cpu_start = time.perf_counter(), time.process_time()
                for i in range(ops):
                    call(i)
                cpu.setdefault((variant.name, op), []).append((time.process_time() - cpu_start) * 1e6 / ops)
                rates.setdefault((variant.name, op), []).append(ops / (time.perf_counter() - start))
    return rates, cpu


def round_trips(url: str, variants: list[Variant], sample: int = 200) -> dict[tuple[str, str], float]:
    counts: dict[tuple[str, str], float] = {}
    for variant in variants:
        with CommandCounter(url, variant.client_name) as counter:
            for op in OPS:
                counter.take()
                for i in range(sample):
                    variant.calls[op](i)
                counts[variant.name, op] = sum(counter.take().sent.values()) / sample
    return counts


async def async_rates(url: str, prefix: str, value: str, ops: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    raw = aredis.Redis.from_url(url)
    backend = backend_for(url, f"{prefix}async:")
    raw_key = backend.layout.value_key(SCOPE, "k")
    calls: dict[str, dict[str, Callable[[int], Awaitable[object]]]] = {
        "raw redis.asyncio": {
            "set": lambda i: raw.set(f"{raw_key}{i % 1000}", value),
            "get": lambda i: raw.get(f"{raw_key}{i % 1000}"),
            "delete": lambda i: raw.delete(f"{raw_key}{i % 1000}"),
        },
        "RedisStoreBackend async": {
            "set": lambda i: backend.aset(SCOPE, KEYS[i % 1000], value),
            "get": lambda i: backend.aget(SCOPE, KEYS[i % 1000]),
            "delete": lambda i: backend.adelete(SCOPE, KEYS[i % 1000]),
        },
    }
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for op in OPS:
            for name, variant in calls.items():
                start = time.perf_counter()
                for i in range(ops):
                    await variant[op](i)
                rates.setdefault((name, op), []).append(ops / (time.perf_counter() - start))
    await raw.aclose()
    await backend.aclose()
    return rates


_BASELINE_LABELS = {
    "raw redis-py (pooled)": "pooled",
    "raw redis-py (1 conn)": "1 conn",
    "raw redis-py (scripts)": "scripts",
}


def table(
    title: str, rates: Rates, trips: dict[tuple[str, str], float] | None = None, cpu: Rates | None = None
) -> None:
    """Median ops/s per variant and the medians of the per-block ratios to the raw client(s) (paired blocks)."""
    names = list(dict.fromkeys(name for name, _ in rates))
    baselines = [name for name in names if name.startswith("raw")]
    print(f"\n{title}")
    header = f"{'client':<26}{'op':<8}{'median ops/s':>14}{'best ops/s':>12}"
    header += "".join(f"{'vs ' + _BASELINE_LABELS.get(b, 'raw'):>11}" for b in baselines)
    header += (f"{'round trips/op':>16}" if trips else "") + (f"{'client CPU us/op':>18}" if cpu else "")
    print(header)
    print("-" * len(header))
    for op in OPS:
        for name in names:
            blocks = rates[name, op]
            line = f"{name:<26}{op:<8}{statistics.median(blocks):>14,.0f}{max(blocks):>12,.0f}"
            for baseline in baselines:
                ratio = statistics.median(a / b for a, b in zip(blocks, rates[baseline, op], strict=True))
                line += f"{ratio:>10.2f}x"
            line += f"{trips[name, op]:>16.2f}" if trips else ""
            print(line + (f"{statistics.median(cpu[name, op]):>18.1f}" if cpu else ""))


def server_time(directory: Path, value: str, count: int = 20_000) -> None:
    """Server time per operation on a private server: backend vs plain commands.

    Two figures: ``INFO commandstats`` time of the commands the client sent (a script's
    ``EVALSHA`` includes the commands it runs, which commandstats also lists on their own: they
    are not added twice), and the server's CPU time per operation (``INFO cpu``, user + system),
    which adds reading, parsing and answering the request: what a loaded server pays per request.
    """
    server = LocalServer(directory / "servertime")
    admin = server.client()
    backend = backend_for(server.url, "st:")
    raw_key = backend.layout.value_key(SCOPE, "k")
    print(f"\nserver time per operation (private redis-server, {count:,} operations each)")
    print(f"{'operation':<48}{'us/op':>8}{'vs plain':>10}{'cpu us/op':>11}{'vs plain':>10}")
    print("-" * 87)

    def snapshot(sent: tuple[str, ...]) -> tuple[float, float]:
        """(µs of the ``sent`` commands so far, server CPU seconds so far)."""
        stats = admin.info("commandstats")
        info = admin.info("cpu")
        usec = sum(stats[f"cmdstat_{name}"]["usec"] for name in sent if f"cmdstat_{name}" in stats)
        return usec, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def measure(
        sent: tuple[str, ...], run: Callable[[int], object], prepare: Callable[[], object] | None = None
    ) -> tuple[float, float]:
        """Median over three passes of (commandstats µs, CPU µs) per ``run``, in blocks of 1,000 after ``prepare``."""
        for i in range(200):  # warm up: scripts loaded, keys created
            run(i)
        passes = []
        for _ in range(3):
            usec = used = 0.0
            for block in range(0, count, 1000):
                if prepare is not None:
                    prepare()
                before = snapshot(sent)
                for i in range(block, block + 1000):
                    run(i)
                after = snapshot(sent)
                usec, used = usec + after[0] - before[0], used + after[1] - before[1]
            passes.append((usec / count, used * 1e6 / count))
        return statistics.median(p[0] for p in passes), statistics.median(p[1] for p in passes)

    plain = {
        "set": measure(("set",), lambda i: admin.set(f"{raw_key}{i % 1000}", value)),
        "get": measure(("get",), lambda i: admin.get(f"{raw_key}{i % 1000}")),
    }
    later = datetime.now(timezone.utc) + timedelta(days=30)

    def line(label: str, measured: tuple[float, float], base: tuple[float, float]) -> None:
        (usec, cpu_usec), (plain_usec, plain_cpu) = measured, base
        print(f"{label:<48}{usec:>8.2f}{usec / plain_usec:>9.1f}x{cpu_usec:>11.2f}{cpu_usec / plain_cpu:>9.1f}x")

    def moving_expiry(i: int) -> None:
        backend.set(SCOPE, KEYS[i % 1000], value, expires_at=datetime.now(timezone.utc) + timedelta(days=30))

    rows = [
        ("backend set (overwrite, never expires)", "set", lambda i: backend.set(SCOPE, KEYS[i % 1000], value)),
        (
            "backend set (overwrite, same 30-day expiry)",
            "set",
            lambda i: backend.set(SCOPE, KEYS[i % 1000], value, expires_at=later),
        ),
        ("backend set (overwrite, expiry now + 30 days)", "set", moving_expiry),
        ("backend get", "get", lambda i: backend.get(SCOPE, KEYS[i % 1000])),
    ]
    for label, kind, run in rows:
        line(label, measure(("evalsha", "get"), run), plain[kind])
    line(
        "backend set (new key, never expires)",
        measure(("evalsha",), lambda i: backend.set(SCOPE, KEYS[i % 1000], value), lambda: backend.clear(SCOPE)),
        plain["set"],
    )
    line("plain SET", plain["set"], plain["set"])
    line("plain GET", plain["get"], plain["get"])

    def fill_backend() -> None:
        for key in KEYS:
            backend.set(SCOPE, key, value)

    def fill_plain() -> None:
        pipe = admin.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"{raw_key}{i}", value)
        pipe.execute()

    plain_delete = measure(("del",), lambda i: admin.delete(f"{raw_key}{i % 1000}"), fill_plain)
    line(
        "backend delete (of an existing key)",
        measure(("evalsha",), backend_calls(backend, value)["delete"], fill_backend),
        plain_delete,
    )
    line("plain DEL (of an existing key)", plain_delete, plain_delete)
    backend.close()
    admin.close()
    server.stop()


def _concurrent_worker(kind: str, url: str, prefix: str, value: str, seconds: float, go: Any, out: Any) -> None:
    """One process of the concurrency run: two threads doing set/get/delete until ``seconds`` passed."""
    if kind == "raw":
        client = redis.Redis.from_url(url)
        key = f"{prefix}raw:{os.getpid()}:"
        calls = raw_calls(client, key, value)
    else:
        backend = backend_for(url, f"{prefix}{os.getpid()}:")
        calls = backend_calls(backend, value)
    counts = [0, 0]
    calls["set"](0)  # connected (and the script loaded) before the clock starts
    out.put(0)
    go.wait()
    deadline = time.monotonic() + seconds

    def work(n: int) -> None:
        i = n * 100_000
        while time.monotonic() < deadline:
            for op in OPS:
                calls[op](i)
            i += 1
            counts[n] += 3

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out.put(sum(counts))


def concurrency(url: str, prefix: str, value: str, seconds: float, rounds: int) -> None:
    """Total ops/s of 8 processes x 2 threads, raw redis-py (pooled) and the backend, alternating runs."""
    context = multiprocessing.get_context("spawn")
    totals: dict[str, list[float]] = {"raw": [], "backend": []}
    for _ in range(rounds):
        for kind in totals:
            out, go = context.Queue(), context.Event()
            procs = [
                context.Process(target=_concurrent_worker, args=(kind, url, prefix, value, seconds, go, out))
                for _ in range(8)
            ]
            for proc in procs:
                proc.start()
            for _ in procs:  # every process imported and connected
                out.get(timeout=120)
            go.set()
            done = sum(out.get(timeout=120) for _ in procs)
            for proc in procs:
                proc.join()
            totals[kind].append(done / seconds)
    print(f"\nconcurrency: 8 processes x 2 threads, set+get+delete for {seconds:.0f} s, {rounds} alternating runs")
    print(f"{'client':<26}{'median ops/s':>14}{'vs raw':>9}")
    print("-" * 49)
    raw = statistics.median(totals["raw"])
    for kind, label in (("raw", "raw redis-py (pooled)"), ("backend", "RedisStoreBackend")):
        median = statistics.median(totals[kind])
        print(f"{label:<26}{median:>14,.0f}{median / raw:>8.2f}x")


def cluster(directory: Path, value: str, ops: int, rounds: int) -> None:
    """The single-thread workload on a private 3-primary cluster: raw RedisCluster vs the backend."""
    local = LocalCluster(directory / "cluster")
    try:
        raw = RedisCluster.from_url(local.url)
        backend = backend_for(local.url, "bench:", cluster=True)
        variants = [
            Variant("raw RedisCluster", "", raw_calls(raw, backend.layout.value_key(SCOPE, "k"), value)),
            Variant("RedisStoreBackend cluster", "", backend_calls(backend, value)),
        ]
        rates, cpu = block_rates(variants, ops, rounds)
        table("Redis Cluster (3 primaries, private redis-server processes)", rates, cpu=cpu)
        raw.close()
        backend.close()
    finally:
        local.stop()


def clear_block(directory: Path, keys: int = 100_000) -> None:
    """Longest PING round trip of another client while ``clear`` deletes ``keys`` keys, beside idle PINGs."""
    server = LocalServer(directory / "clear")
    admin = server.client()
    backend = backend_for(server.url, "clear:")
    index = backend.layout.index_key(SCOPE)
    for start in range(0, keys, 10_000):
        pipe = admin.pipeline(transaction=False)
        for i in range(start, min(keys, start + 10_000)):
            pipe.set(backend.layout.value_key(SCOPE, f"k{i}"), ":1")
            pipe.zadd(index, {f"k{i}": "inf"})
        pipe.execute()

    def longest_ping(during: Callable[[], object]) -> tuple[float, float]:
        stop = threading.Event()
        pings: list[float] = []

        def ping() -> None:
            with server.client() as client:
                while not stop.is_set():
                    start = time.perf_counter()
                    client.ping()
                    pings.append(time.perf_counter() - start)

        thread = threading.Thread(target=ping)
        thread.start()
        started = time.perf_counter()
        during()
        took = time.perf_counter() - started
        stop.set()
        thread.join()
        return max(pings) * 1000, took

    idle, _ = longest_ping(lambda: time.sleep(1))
    admin.config_resetstat()
    during, took = longest_ping(lambda: backend.clear(SCOPE))
    stats = admin.info("commandstats")["cmdstat_evalsha"]
    print(f"\nclear of {keys:,} keys (private redis-server): {took:.2f} s in {stats['calls']} scripts of")
    print(f"{stats['usec_per_call'] / 1000:.2f} ms server time each (INFO commandstats);")
    print(f"longest PING round trip of another client: {during:.1f} ms during the clear, {idle:.1f} ms idle")
    backend.close()
    admin.close()
    server.stop()


def reconcile_run(directory: Path, total: int = 100_000, live: int = 20_000) -> None:
    """Reconcile ``total`` versions of which ``live`` are named by rows: time, peak memory, commands sent."""
    server = LocalServer(directory / "reconcile")
    admin = server.client()
    backend = backend_for(server.url, "rec:")
    store = StateStore(backend=backend, worker_backend=backend, config=Config.from_dict({}))
    for start in range(0, total, 10_000):
        pipe = admin.pipeline(transaction=False)
        for i in range(start, min(total, start + 10_000)):
            scope, key = TaskScope("rec", f"run{i % 1000}", "task"), f"k{i}"
            name = backend.layout.version_key(scope, key, new_version())
            pipe.set(name, ":1")
            if i < live:  # a row naming this version, as StateStore writes it
                pipe.set(
                    backend.layout.value_key(scope, key), ":" + json.dumps({"__airflow_state_ref__": "redis://" + name})
                )
                pipe.zadd(backend.layout.index_key(scope), {encode_segment(key): "inf"})
        pipe.execute()
    admin.config_resetstat()
    tracemalloc.start()
    started = time.perf_counter()
    result = store.reconcile(grace=timedelta(0))
    took = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    stats = admin.info("commandstats")
    commands = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items() if "config" not in k}
    print(f"\nreconcile of {total:,} versions, {live:,} named by rows (Redis in both roles, private server):")
    print(f"{took:.1f} s, peak Python memory {peak / 1e6:.1f} MB, {result.pages} pages, {result.discarded:,} discarded")
    print("commands: " + ", ".join(f"{name} {calls:,}" for name, calls in sorted(commands.items())))
    assert (result.live, result.discarded) == (live, total - live), result
    backend.close()
    admin.close()
    server.stop()


def cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def only(url: str, prefix: str, value: str, which: str, count: int) -> None:
    """``count`` operations of one client and op, nothing printed: the difference of two counts, run under
    ``valgrind --tool=callgrind``, is the instructions per operation (set-up cancels out)."""
    client, op = which.split(":")
    variants, closers = sync_variants(url, prefix, value)
    call = {"raw": variants[0], "backend": next(v for v in variants if v.name == "RedisStoreBackend")}[client].calls[op]
    for i in range(count):
        call(i)
    for close in closers:
        close()
    cleanup(url, prefix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("STATESTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--ops", type=int, default=1000, help="operations per variant and block")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved blocks per variant")
    parser.add_argument("--payload-bytes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5, help="length of each concurrency run")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument(
        "--only",
        metavar="CLIENT:OP",
        choices=[f"{client}:{op}" for client in ("raw", "backend") for op in OPS],
        help="run just --count operations of raw redis-py (pooled) or the backend, for a profiler or valgrind",
    )
    parser.add_argument("--count", type=int, default=1000, help="operations of --only")
    args = parser.parse_args()
    prefix = f"ssbench:{secrets.token_hex(4)}:"
    value = payload(args.payload_bytes)
    if args.only:
        only(args.url, prefix, value, args.only, args.count)
        return
    with redis.Redis.from_url(args.url) as info:
        version = info.info("server")["redis_version"]
    print(f"Redis {version} at {args.url}; redis-py {redis.__version__}; {os.cpu_count()} CPUs")
    print(f"{args.rounds} interleaved blocks of {args.ops} sequential ops per variant, {len(value)}-byte JSON values")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        try:
            if "single" not in args.skip:
                variants, closers = sync_variants(args.url, prefix, value)
                rates, cpu = block_rates(variants, args.ops, args.rounds)
                table("single node, one thread", rates, round_trips(args.url, variants), cpu)
                for close in closers:
                    close()
            if "async" not in args.skip:
                table("async", asyncio.run(async_rates(args.url, prefix, value, args.ops, args.rounds)))
            if "servertime" not in args.skip:
                server_time(directory, value)
            if "concurrency" not in args.skip:
                concurrency(args.url, prefix, value, args.seconds, 3)
            if "cluster" not in args.skip:
                cluster(directory, value, args.ops, args.rounds)
            if "clear" not in args.skip:
                clear_block(directory)
            if "reconcile" not in args.skip:
                reconcile_run(directory)
        finally:
            cleanup(args.url, prefix)


if __name__ == "__main__":
    main()
