"""Stress per dialect: 8 threads and 8 forked processes on one backend instance, connection kills, bounded time.

Run alone with ``pytest tests/core -m stress`` (``nox`` runs it with the rest);
``STATESTORE_STRESS_SECONDS`` sets the length of each run (default 20).

Every worker owns some task keys and an asset, and writes, reads, deletes and clears them, sync
and async, while all workers also hammer one shared task scope and one shared asset (set racing
clear: MariaDB deadlocks) and a maintenance thread runs ``cleanup()``. The 8 processes are forked
from the test process while its 8 threads are mid-operation, and use the instance they inherited.
On PostgreSQL and MariaDB a killer terminates every server session of the database every 250 ms.
The killer is a process of its own, forked before any thread starts: it opens a connection per
round, and a fork landing while a thread outside the library is inside the driver's connect
(OpenSSL's locks) can hang the child, which the library cannot prevent (``engines`` docstring).

A worker knows what each of its keys must hold after its last acknowledged operation, and which
values a failed (``StateStoreError``) operation may or may not have left. Reported: lost
acknowledged writes (a read, during the run or at the end, returning anything else of its own),
foreign reads (a value another worker wrote), and raw exceptions (anything not a
``StateStoreError``); all must be 0. A process that hangs dumps its stacks and exits (watchdog),
and the test fails with them; the longest time an ``os.fork()`` waited is reported too.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import os
import random
import secrets
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from statestore.core import AssetScope, Config, StateStoreError, TaskScope
from statestore.core.metastore import MetastoreStoreBackend

from ..conftest import kill_connections

pytestmark = pytest.mark.stress
SECONDS = float(os.environ.get("STATESTORE_STRESS_SECONDS", "20"))
THREADS = PROCESSES = 8
KEYS = 4
WATCHDOG_SECONDS = 60.0
"""How long a forked child may run past its deadline (final reads included) before it dumps its stacks and exits."""


@dataclass
class Tally:
    """What one worker did and saw."""

    acked_writes: int = 0
    reads: int = 0
    lost: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    expected: dict[str, list[Any]] = field(default_factory=dict)  # key -> [acked value, *maybe values]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "errors": dict(self.errors)}


class Worker:
    """One worker's operations on its own scopes and the shared ones, checking every read of its own keys."""

    def __init__(self, backend: MetastoreStoreBackend, token: str, name: str) -> None:
        self.backend, self.name, self.tally = backend, name, Tally()
        self.task = TaskScope(f"stress-{token}", "run", name)
        self.asset = AssetScope(name=f"stress-{token}-{name}")
        self.shared_task = TaskScope(f"stress-{token}", "run", "shared")
        self.shared_asset = AssetScope(name=f"stress-{token}-shared")
        self.seq = 0
        self.state: dict[tuple[str, str], tuple[str | None, set[str | None]]] = {}  # (scope, key) -> (acked, maybe)

    def _scope(self, kind: str) -> TaskScope | AssetScope:
        return self.task if kind == "task" else self.asset

    def _value(self) -> str:
        self.seq += 1
        return json.dumps(f"{self.name}:{self.seq}")

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, StateStoreError):
            self.tally.errors[type(exc).__name__] += 1
        else:
            self.tally.raw.append(f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:200]}")

    def _check(self, where: tuple[str, str], got: str | None) -> None:
        self.tally.reads += 1
        acked, maybe = self.state.get(where, (None, set()))
        if got == acked or got in maybe:
            return
        if got is not None and not json.loads(got).startswith(f"{self.name}:"):
            self.tally.foreign.append(f"{where}: {got}")
        else:
            self.tally.lost.append(f"{where}: expected {acked} (or one of {sorted(map(str, maybe))}), read {got}")

    def _record(self, where: tuple[str, str], value: str | None, ok: bool) -> None:
        acked, maybe = self.state.get(where, (None, set()))
        if ok:
            self.state[where] = (value, set())
            self.tally.acked_writes += value is not None
        else:
            self.state[where] = (acked, maybe | {value})

    def step_sync(self, rng: random.Random) -> None:
        b, kind, key = self.backend, rng.choice(("task", "asset")), f"k{rng.randrange(KEYS)}"
        scope, where, roll = self._scope(kind), (kind, key), rng.random()
        try:
            if roll < 0.45:
                value = self._value()
                try:
                    b.set(scope, key, value)
                except BaseException:
                    self._record(where, value, ok=False)
                    raise
                self._record(where, value, ok=True)
            elif roll < 0.75:
                self._check(where, b.get(scope, key))
            elif roll < 0.85:
                try:
                    b.delete(scope, key)
                except BaseException:
                    self._record(where, None, ok=False)
                    raise
                self._record(where, None, ok=True)
            elif roll < 0.9:
                self._clear(kind)
            elif roll < 0.95:
                b.set(self.shared_task, key, self._value())
                b.clear(self.shared_task)
            else:
                b.set(self.shared_asset, key, self._value())
                b.clear(self.shared_asset)
        except Exception as exc:
            self._failed(exc)

    def _clear(self, kind: str) -> None:
        wheres = [(kind, f"k{i}") for i in range(KEYS)]
        try:
            self.backend.clear(self._scope(kind))
        except BaseException:
            for where in wheres:
                self._record(where, None, ok=False)
            raise
        for where in wheres:
            self._record(where, None, ok=True)

    async def step_async(self, rng: random.Random) -> None:
        b, kind, key = self.backend, rng.choice(("task", "asset")), f"k{rng.randrange(KEYS)}"
        scope, where = self._scope(kind), (kind, key)
        try:
            if rng.random() < 0.5:
                value = self._value()
                try:
                    await b.aset(scope, key, value)
                except BaseException:
                    self._record(where, value, ok=False)
                    raise
                self._record(where, value, ok=True)
            else:
                self._check(where, await b.aget(scope, key))
        except Exception as exc:
            self._failed(exc)

    def run(self, deadline: float, seed: int) -> dict[str, Any]:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            for _ in range(20):
                self.step_sync(rng)

            async def batch() -> None:
                for _ in range(10):
                    await self.step_async(rng)

            asyncio.run(batch())
        for kind, key in self.state:  # the final read of every key, by the worker itself
            try:
                self._check((kind, key), self.backend.get(self._scope(kind), key))
            except Exception as exc:
                self._failed(exc)
        self.tally.expected = {f"{k}/{key}": [acked, *maybe] for (k, key), (acked, maybe) in self.state.items()}
        return {**self.tally.as_dict(), "name": self.name}


def _forked(work: Callable[[], dict[str, Any]], dump: Path, watchdog: float) -> tuple[int, int]:
    """Fork a process running ``work``; return its pid and the read end of the pipe its report comes through.

    A child still running after ``watchdog`` seconds writes every thread's stack to ``dump`` and
    exits, so a hang is reported with where it hangs instead of stalling the run.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            faulthandler.dump_traceback_later(watchdog, exit=True, file=dump.open("w"))
            report = work()
        except BaseException as exc:
            report = {"crash": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(writer, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(writer)
    return pid, reader


def _collect(pid: int, reader: int, dump: Path) -> dict[str, Any]:
    """The child's report; a child that exits without one (its watchdog fired) reports its stack dump."""
    chunks = []
    while chunk := os.read(reader, 1 << 20):
        chunks.append(chunk)
    os.close(reader)
    os.waitpid(pid, 0)
    if not chunks:
        return {"crash": f"hung; stacks:\n{dump.read_text()}"}
    return dict(json.loads(b"".join(chunks)))


def _killer(url: sa.URL, stop: tuple[int, int]) -> dict[str, Any]:
    """Terminate every server session of the backend every 250 ms until the test closes the pipe ``stop``."""
    os.close(stop[1])
    killed = 0
    while not select.select([stop[0]], [], [], 0.25)[0]:
        killed += kill_connections(url)
    return {"sessions": killed}


@pytest.mark.parametrize("db", ["fresh_sqlite", "postgresql", "mysql"])
def test_stress(request: pytest.FixtureRequest, db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url: sa.URL = request.getfixturevalue(f"{db}_url")
    if db == "postgresql":
        url = url.update_query_dict({"application_name": f"statestore-stress-{secrets.token_hex(4)}"})
    backend = MetastoreStoreBackend(url, config=Config.from_dict({"state_store": {"state_cleanup_batch_size": 50}}))
    token = secrets.token_hex(4)
    backend.set(TaskScope(f"stress-{token}", "run", "warm-up"), "k", '"used before the forks"')
    deadline = time.monotonic() + SECONDS
    reports: list[dict[str, Any]] = []
    done = threading.Event()
    kills = Counter[str]()
    killer = None
    if db != "fresh_sqlite":  # forked before any thread starts (see the module docstring)
        stop = os.pipe()
        outlive = SECONDS + 3 * WATCHDOG_SECONDS  # the children's watchdog and the two joins below
        killer = _forked(partial(_killer, url, stop), tmp_path / "killer.stacks", outlive)
        os.close(stop[0])

    def thread_worker(i: int) -> None:
        reports.append(Worker(backend, token, f"t{i}").run(deadline, i))

    def maintenance() -> None:
        while not done.wait(1.0):
            try:
                backend.cleanup()
            except StateStoreError as exc:
                kills[f"cleanup {type(exc).__name__}"] += 1

    threads = [threading.Thread(target=thread_worker, args=(i,)) for i in range(THREADS)]
    helper = threading.Thread(target=maintenance)
    for t in [*threads, helper]:
        t.start()
    children, fork_waits = [], []
    for p in range(PROCESSES):  # forked while the threads are mid-operation
        time.sleep(SECONDS / 4 / PROCESSES)
        work = partial(Worker(backend, token, f"p{p}").run, deadline, 100 + p)
        started = time.monotonic()
        children.append(_forked(work, tmp_path / f"p{p}.stacks", deadline - time.monotonic() + WATCHDOG_SECONDS))
        fork_waits.append(time.monotonic() - started)
    reports += [_collect(pid, reader, tmp_path / f"p{p}.stacks") for p, (pid, reader) in enumerate(children)]
    for t in threads:
        t.join(timeout=WATCHDOG_SECONDS)
    done.set()
    helper.join(timeout=WATCHDOG_SECONDS)
    if killer is not None:
        os.close(stop[1])
        killed = _collect(*killer, tmp_path / "killer.stacks")
        assert "crash" not in killed, f"the killer process failed: {killed['crash']}"
        kills.update(killed)
    stuck = [t.name for t in [*threads, helper] if t.is_alive()]
    assert stuck == [], f"threads of the test process still running {WATCHDOG_SECONDS:.0f} s after the deadline"
    crashes = [r["crash"] for r in reports if "crash" in r]
    assert crashes == [], f"workers crashed or hung: {crashes}"
    # The final word, from a fresh instance: every key holds what its worker last had acknowledged.
    fresh = MetastoreStoreBackend(url, config=Config.from_dict({}))
    final_lost = []
    for report in reports:
        owner = Worker(fresh, token, report["name"])
        for where, allowed in report["expected"].items():
            kind, key = where.split("/")
            got = fresh.get(owner._scope(kind), key)
            if got not in allowed:
                final_lost.append(f"{report['name']} {where}: expected one of {allowed}, read {got}")
    fresh.dispose()
    total = Counter[str]()
    for r in reports:
        total["acked writes"] += r["acked_writes"]
        total["reads checked"] += r["reads"]
        total["lost"] += len(r["lost"])
        total["foreign"] += len(r["foreign"])
        total["raw"] += len(r["raw"])
        for name, n in r["errors"].items():
            total[f"StateStoreError {name}"] += n
    with capsys.disabled():
        print(
            f"\nstress {db}: {SECONDS:.0f} s, {THREADS} threads + {PROCESSES} forks: {dict(total)}, {dict(kills)}, "
            f"longest fork {max(fork_waits) * 1000:.0f} ms"
        )
    assert total["lost"] == 0, [r["lost"][:3] for r in reports if r["lost"]]
    assert total["foreign"] == 0, [r["foreign"][:3] for r in reports if r["foreign"]]
    assert total["raw"] == 0, [r["raw"][:3] for r in reports if r["raw"]]
    assert final_lost == [], final_lost[:5]
    backend.dispose()
