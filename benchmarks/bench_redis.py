"""RedisStoreBackend (and StateStore accessors on it) beside raw redis-py on the same server, in the same run.

Usage: ``nox -s bench -- redis [--ops N] [--rounds R] [--payload-bytes B] [--url URL]`` or
``python benchmarks/bench_redis.py``. Every variant runs blocks of ``--ops`` sequential operations
on one connection, ``--rounds`` blocks interleaved with the other variants (so that load from
other processes hits all alike); the table shows median and best ops/s and the median of the
per-block ratios to the raw client. Round trips per operation are
the commands the server saw from each client (MONITOR, see ``statestore.redis.testing``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aredis

from statestore.core import Config, TaskScope
from statestore.redis import RedisStoreBackend
from statestore.redis.testing import CommandCounter

OPS = ("set", "get", "delete")


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


def sync_variants(url: str, prefix: str, value: str) -> tuple[list[Variant], list[Callable[[], None]]]:
    raw = redis.Redis.from_url(url, client_name=f"{prefix}raw")
    backend = RedisStoreBackend(url, key_prefix=prefix, client_name=f"{prefix}backend", config=Config.from_dict({}))
    scope = TaskScope("bench_dag", "manual__2024-01-01T00:00:00+00:00", "extract", 3)
    raw_key = backend.layout.value_key(scope, "k")  # the same key length and payload as the backend writes
    keys = [f"progress-{i % 1000}" for i in range(1000)]
    variants = [
        Variant(
            "raw redis-py",
            f"{prefix}raw",
            {
                "set": lambda i: raw.set(f"{raw_key}{i % 1000}", value),
                "get": lambda i: raw.get(f"{raw_key}{i % 1000}"),
                "delete": lambda i: raw.delete(f"{raw_key}{i % 1000}"),
            },
        ),
        Variant(
            "RedisStoreBackend",
            f"{prefix}backend",
            {
                "set": lambda i: backend.set(scope, keys[i % 1000], value),
                "get": lambda i: backend.get(scope, keys[i % 1000]),
                "delete": lambda i: backend.delete(scope, keys[i % 1000]),
            },
        ),
    ]
    closers: list[Callable[[], None]] = [raw.close, backend.close]
    try:
        from statestore.core import StateStore
    except ImportError:
        print("(StateStore not available in this checkout: accessor rows skipped)")
        return variants, closers
    accessor_backend = RedisStoreBackend(
        url, key_prefix=f"{prefix}acc:", client_name=f"{prefix}accessor", config=Config.from_dict({})
    )
    store = StateStore(backend=accessor_backend, config=Config.from_dict({}))
    accessor = store.task_store(scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
    document = json.loads(value)
    variants.append(
        Variant(
            "StateStore accessor",
            f"{prefix}accessor",
            {
                "set": lambda i: accessor.set(keys[i % 1000], document),
                "get": lambda i: accessor.get(keys[i % 1000]),
                "delete": lambda i: accessor.delete(keys[i % 1000]),
            },
        )
    )
    closers.append(accessor_backend.close)
    return variants, closers


def block_rates(variants: list[Variant], ops: int, rounds: int) -> dict[tuple[str, str], list[float]]:
    """ops/s of each variant in each of ``rounds`` interleaved blocks of ``ops`` operations."""
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for op in OPS:
            for variant in variants:
                call = variant.calls[op]
                start = time.perf_counter()
                for i in range(ops):
                    call(i)
                rates.setdefault((variant.name, op), []).append(ops / (time.perf_counter() - start))
    return rates


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
    backend = RedisStoreBackend(url, key_prefix=f"{prefix}async:", config=Config.from_dict({}))
    scope = TaskScope("bench_dag", "manual__2024-01-01T00:00:00+00:00", "extract", 3)
    raw_key = backend.layout.value_key(scope, "k")
    keys = [f"progress-{i % 1000}" for i in range(1000)]
    calls: dict[str, dict[str, Callable[[int], Awaitable[object]]]] = {
        "raw redis.asyncio": {
            "set": lambda i: raw.set(f"{raw_key}{i % 1000}", value),
            "get": lambda i: raw.get(f"{raw_key}{i % 1000}"),
            "delete": lambda i: raw.delete(f"{raw_key}{i % 1000}"),
        },
        "RedisStoreBackend async": {
            "set": lambda i: backend.aset(scope, keys[i % 1000], value),
            "get": lambda i: backend.aget(scope, keys[i % 1000]),
            "delete": lambda i: backend.adelete(scope, keys[i % 1000]),
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
    backend.close()
    return rates


def table(title: str, rates: dict[tuple[str, str], list[float]], trips: dict[tuple[str, str], float] | None) -> None:
    """Median ops/s per variant and the median of the per-block ratios to the raw client (paired blocks)."""
    names = list(dict.fromkeys(name for name, _ in rates))
    baseline = names[0]
    print(f"\n{title}")
    header = f"{'client':<24}{'op':<8}{'median ops/s':>14}{'best ops/s':>12}{'vs raw':>9}"
    print(header + (f"{'round trips/op':>16}" if trips else ""))
    print("-" * (len(header) + (16 if trips else 0)))
    for op in OPS:
        for name in names:
            blocks = rates[name, op]
            ratio = statistics.median(a / b for a, b in zip(blocks, rates[baseline, op], strict=True))
            line = f"{name:<24}{op:<8}{statistics.median(blocks):>14,.0f}{max(blocks):>12,.0f}{ratio:>8.2f}x"
            print(line + (f"{trips[name, op]:>16.2f}" if trips else ""))


def cleanup(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("STATESTORE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--ops", type=int, default=1000, help="operations per variant and block")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved blocks per variant")
    parser.add_argument("--payload-bytes", type=int, default=200)
    args = parser.parse_args()
    prefix = f"ssbench:{secrets.token_hex(4)}:"
    value = payload(args.payload_bytes)
    version = redis.Redis.from_url(args.url).info("server")["redis_version"]
    print(f"Redis {version} at {args.url}; redis-py {redis.__version__}")
    print(f"{args.rounds} interleaved blocks of {args.ops} sequential ops per variant, {len(value)}-byte JSON values")
    variants, closers = sync_variants(args.url, prefix, value)
    try:
        rates = block_rates(variants, args.ops, args.rounds)
        table("sync", rates, round_trips(args.url, variants))
        table("async", asyncio.run(async_rates(args.url, prefix, value, args.ops, args.rounds)), None)
    finally:
        for close in closers:
            close()
        cleanup(args.url, prefix)


if __name__ == "__main__":
    main()
