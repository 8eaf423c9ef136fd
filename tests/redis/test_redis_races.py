"""Redis under racing set, delete, clear, cleanup and reads.

As the worker-side backend (issue 9), over the SQLite and PostgreSQL metastores: no read ever fails or
returns an unwritten value, the last acknowledged set wins once writers stop, and reconciliation then
leaves exactly the versions the rows name. As the server store: writes that prune their index (each
time it reaches a multiple of ``PRUNE_EVERY`` entries) race deletes and cleanups, and no value is ever
left out of its index (``keys`` lists it, ``clear`` removes it)."""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from statestore.core import NEVER_EXPIRE, Config, StateStore, TaskScope
from statestore.core.base import utcnow
from statestore.core.metastore import MetastoreStoreBackend
from statestore.redis import RedisStoreBackend
from statestore.redis.scripts import PRUNE_EVERY

POSTGRES_URL = os.environ.get("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
KEYS = [f"k{i}" for i in range(4)]


@pytest.fixture(params=["sqlite", "postgresql"])
def metastore(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[MetastoreStoreBackend]:
    """A migrated metastore: an SQLite file, or a private schema of the test PostgreSQL database."""
    config = Config.from_dict({})
    if request.param == "sqlite":
        backend = MetastoreStoreBackend(f"sqlite:///{tmp_path / 'meta.db'}", config=config)
        backend.migrate()
        yield backend
        return
    engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    schema = f"statestore_race_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(f"no PostgreSQL at {POSTGRES_URL} ({exc.orig}); start it or set STATESTORE_TEST_POSTGRES_URL")
    backend = MetastoreStoreBackend(
        sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}), config=config
    )
    backend.migrate()
    yield backend
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


class Race:
    """Threads for a bounded time; the first unexpected exception of any is kept and re-raised by ``join``."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []

    def start(self, work: Callable[[], None]) -> None:
        def loop() -> None:
            try:
                while not self.stop.is_set():
                    work()
            except BaseException as exc:  # re-raised by join
                self.errors.append(exc)

        self.threads.append(threading.Thread(target=loop, daemon=True))
        self.threads[-1].start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)
        if self.errors:
            raise self.errors[0]


def race_then_settle(churn: Race, writers: Race, settled: threading.Event, writes: dict[str, int]) -> None:
    """Let ``churn`` race ``writers`` for 3 s, stop it, then set ``settled`` and let the writers alone write
    each key twice more (``writes`` counts each key's writes): its last acknowledged set now lasts."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not (churn.errors or writers.errors):
        time.sleep(0.05)
    churn.join()
    settled.set()
    snapshot = dict(writes)
    while any(writes[key] < snapshot[key] + 2 for key in writes) and not writers.errors:
        time.sleep(0.01)
    writers.join()


def test_racing_writes_deletes_clears_and_cleanups_lose_nothing(
    metastore: MetastoreStoreBackend, make_backend: Callable[..., RedisStoreBackend]
) -> None:
    worker = make_backend()
    store = StateStore(backend=metastore, worker_backend=worker, config=Config.from_dict({}))
    scope = TaskScope(f"race-{secrets.token_hex(4)}", "run", "task")
    ts = store.task_store(scope)
    written: dict[str, set[str]] = {key: set() for key in KEYS}  # every value a set was asked to write
    last_acked: dict[str, str] = {}
    counters = dict.fromkeys(KEYS, 0)
    settled = threading.Event()  # once set, writers write only never-expiring values

    def writer(key: str) -> Callable[[], None]:
        def write() -> None:
            counters[key] += 1
            value = f"{key}:{counters[key]}"
            written[key].add(value)
            brief = not settled.is_set() and random.random() < 0.3  # expiring soon: cleanup races these rows
            ts.set(key, value, retention=timedelta(milliseconds=30) if brief else NEVER_EXPIRE)
            last_acked[key] = value

        return write

    def reader() -> None:
        key = random.choice(KEYS)
        got = ts.get(key)  # never ReferenceNotFoundError: a row's version exists while the row does
        assert got is None or got in written[key], (key, got)

    def pause(action: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            action()
            time.sleep(0.005)

        return run

    churn = Race()
    writers = Race()
    for key in KEYS:
        writers.start(writer(key))
    churn.start(pause(lambda: ts.delete(random.choice(KEYS))))
    churn.start(pause(ts.clear))
    churn.start(pause(store.cleanup))
    churn.start(reader)
    churn.start(reader)
    race_then_settle(churn, writers, settled, counters)
    for key in KEYS:
        assert ts.get(key) == last_acked[key], key
    assert sum(counters.values()) > 20
    result = store.reconcile(grace=timedelta(0))
    assert result.failed == 0
    rows = {key: metastore.get(scope, key) for key in KEYS}
    left = {value.reference for page in worker.iter_values() for value in page}
    assert len(left) == len([row for row in rows.values() if row is not None])
    for key in KEYS:
        assert ts.get(key) == last_acked[key]


def test_index_prunes_racing_writes_deletes_and_cleanups_leave_no_value_unlisted(
    make_backend: Callable[..., RedisStoreBackend], admin: redis.Redis
) -> None:
    """Four writers over 3 x PRUNE_EVERY keys of one scope, a third of their values expiring in 20 ms (so
    every prune finds entries to remove), against deletes, cleanups and reads; then each key's last
    acknowledged write is read back, listed, and removed by ``clear`` with nothing left behind."""
    backend = make_backend()
    scope = TaskScope(f"prune-{secrets.token_hex(4)}", "run", "task")
    keys = [f"k{i:03d}" for i in range(3 * PRUNE_EVERY)]
    last_acked: dict[str, str | None] = dict.fromkeys(keys)
    acked = dict.fromkeys(keys, 0)  # writes acknowledged per key
    settled = threading.Event()  # once set, writers write only never-expiring values

    def writer(owned: list[str]) -> Callable[[], None]:
        count = 0

        def write() -> None:
            nonlocal count
            count += 1
            key = owned[count % len(owned)]
            brief = not settled.is_set() and random.random() < 0.3
            expires_at = utcnow() + timedelta(milliseconds=20) if brief else None
            backend.set(scope, key, f'"{key}:{count}"', expires_at=expires_at)
            last_acked[key] = f'"{key}:{count}"'
            acked[key] += 1

        return write

    def reader() -> None:
        key = random.choice(keys)
        got = backend.get(scope, key)
        assert got is None or got.startswith(f'"{key}:'), (key, got)

    churn, writers = Race(), Race()
    for part in range(4):
        writers.start(writer(keys[part::4]))
    churn.start(lambda: backend.delete(scope, random.choice(keys)))
    churn.start(backend.cleanup)
    churn.start(reader)
    race_then_settle(churn, writers, settled, acked)
    assert all(backend.get(scope, key) == last_acked[key] for key in keys)
    assert backend.keys(scope) == keys
    backend.clear(scope)
    assert list(admin.scan_iter(match=backend.layout.tag(scope) + "*")) == []  # values, index, map-index set
