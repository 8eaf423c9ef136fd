"""Reconciliation and crash-safe maintenance: the API, ``state-store reconcile``, batching, faults and kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from statestore.core import NEVER_EXPIRE, Config, MetastoreStoreBackend, StateStore, StateStoreError, TaskScope
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.base import StoredValue, utcnow
from statestore.core.cli import main
from statestore.core.errors import StorageError
from statestore.core.objectstore import ListedObject
from statestore.core.testing.lifecycle import SHORT, values_of

GRACE_0 = timedelta(0)


class CountingLocal(LocalStoreBackend):
    """The local backend with small pages, counting listing pages and delete batches."""

    delete_batch_size = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pages = 0
        self.batches: list[int] = []
        self.fail_batches = 0

    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        for page in super()._list_objects(prefix):
            self.pages += 1
            yield page

    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        self.batches.append(len(names))
        if self.fail_batches:
            self.fail_batches -= 1
            raise StorageError("the storage service failed (injected)")
        return super()._delete_objects(names)


class CountingMetastore(MetastoreStoreBackend):
    """The metastore, counting batched lookups."""

    lookups: list[int]

    def get_many(self, items: Any, *, session: Any = None) -> list[str | None]:
        pairs = list(items)
        self.lookups.append(len(pairs))
        return super().get_many(pairs, session=session)


@pytest.fixture
def store(sqlite_url: sa.URL, tmp_path: Path) -> StateStore:
    config = Config.from_dict({})
    server = CountingMetastore(sqlite_url, config=config)
    server.lookups = []
    return StateStore(server, CountingLocal(tmp_path / "objects", config=config), config)


def _dag() -> str:
    return f"rec-{os.urandom(4).hex()}"


def test_reconcile_streams_pages_batches_lookups_and_discards(store: StateStore) -> None:
    """250 orphans and 50 live values: ceil(N/100) listings, one lookup per page, deletes in batches of 100."""
    worker, server = store.worker_backend, store.backend
    assert isinstance(worker, CountingLocal)
    assert isinstance(server, CountingMetastore)
    ts = store.task_store(_dag(), "run", "task")
    for i in range(300):
        ts.set(f"k{i}", f"value {i}")
    for i in range(250):
        server.delete(ts.scope, f"k{i}")  # rows deleted behind StateStore's back (airflow db clean)
    worker.pages, worker.batches = 0, []
    result = store.reconcile(grace=GRACE_0)
    assert (result.listed, result.live, result.orphaned, result.discarded, result.failed) == (300, 50, 250, 250, 0)
    assert worker.pages == 3
    assert server.lookups == [100, 100, 100], "one batched lookup per listed page"
    assert max(worker.batches) <= 100
    assert len(values_of(worker)) == 50
    assert [ts.get(f"k{i}") for i in range(250, 300)] == [f"value {i}" for i in range(250, 300)]


def test_a_value_named_by_any_of_several_server_stores_stays(store: StateStore, tmp_path: Path) -> None:
    """Two server stores over one worker storage (inside Airflow: Airflow's and statestore's): either keeps a value."""
    from statestore.core.reconcile import reconcile

    worker, first = store.worker_backend, store.backend
    assert isinstance(worker, CountingLocal)
    assert isinstance(first, CountingMetastore)
    second = StateStore(MemoryStoreBackend(config=store.config), worker, store.config)
    dag = _dag()
    store.task_store(dag, "run", "task").set("in_first", 1)
    second.task_store(dag, "run", "task").set("in_second", 2)
    second.task_store(dag, "run", "task").set("in_neither", 3)
    second.backend.delete(TaskScope(dag, "run", "task"), "in_neither")
    first.lookups = []
    result = reconcile(first, worker, grace=GRACE_0, also=(second.backend,))
    assert (result.live, result.orphaned, result.discarded) == (2, 1, 1)
    assert first.lookups == [3], "the first store is asked about every value, the second only about the rest"
    assert store.task_store(dag, "run", "task").get("in_first") == 1
    assert second.task_store(dag, "run", "task").get("in_second") == 2


def test_grace_period_protects_values_whose_rows_are_not_committed(store: StateStore) -> None:
    assert store.worker_backend is not None
    scope = TaskScope(_dag(), "run", "task")
    written = store.worker_backend.store_value(scope, "k", '"in flight"', allow_inline=False)  # row not written yet
    result = store.reconcile()
    assert (result.young, result.orphaned) == (1, 0)
    assert written in values_of(store.worker_backend)
    with pytest.raises(ValueError, match="grace must be a non-negative timedelta"):
        store.reconcile(grace=timedelta(seconds=-1))


def test_failed_discards_are_reported_and_retried(store: StateStore) -> None:
    worker = store.worker_backend
    assert isinstance(worker, CountingLocal)
    ts = store.task_store(_dag(), "run", "task")
    for i in range(150):
        ts.set(f"k{i}", i)
    store.backend.clear(ts.scope)
    worker.fail_batches = 1
    first = store.reconcile(grace=GRACE_0)
    assert (first.orphaned, first.failed, first.discarded) == (150, 100, 50)
    second = store.reconcile(grace=GRACE_0)
    assert (second.orphaned, second.discarded, second.failed) == (100, 100, 0)
    assert values_of(worker) == []


def test_reconcile_needs_a_versioned_worker_backend(store: StateStore) -> None:
    with pytest.raises(StateStoreError, match="needs a worker-side backend"):
        StateStore(store.backend, None, store.config).reconcile()
    memory = StateStore(store.backend, MemoryStoreBackend(config=store.config), store.config)
    with pytest.raises(StateStoreError, match="cannot be told apart from live ones"):
        memory.reconcile()


def test_pages_without_versions_are_not_reconciled(store: StateStore, tmp_path: Path) -> None:
    """A file under ref/ that statestore did not write (no version name) is never listed, so never deleted."""
    assert isinstance(store.worker_backend, LocalStoreBackend)
    stray = tmp_path / "objects" / "ref" / "task" / "d" / "r" / "t" / "-1" / "k" / "not-a-version"
    stray.parent.mkdir(parents=True)
    stray.write_text("{}\n1")
    assert values_of(store.worker_backend) == []
    store.reconcile(grace=GRACE_0)
    assert stray.exists()


def test_iter_values_reports_when_each_value_was_written(store: StateStore) -> None:
    assert store.worker_backend is not None
    ref = store.worker_backend.store_value(TaskScope("d", "r", "t"), "k", "1", allow_inline=False)
    ((value,),) = [page for page in store.worker_backend.iter_values() if any(v.reference == ref for v in page)]
    assert isinstance(value, StoredValue)
    assert abs((value.written_at - utcnow()).total_seconds()) < 60


# -- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    """A StateStore and the same configuration for ``state-store`` through the environment."""
    settings = {
        "STATESTORE_CONFIG": str(tmp_path / "none.cfg"),
        "STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'cli.db'}",
        "STATESTORE__WORKERS__STATE_BACKEND": "local",
        "STATESTORE__STATESTORE_LOCAL__PATH": str(tmp_path / "cli-objects"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return StateStore.from_config()


def test_cli_reconcile_dry_run_json_and_table(cli_store: StateStore, capsys: pytest.CaptureFixture[str]) -> None:
    ts = cli_store.task_store("d", "r", "t")
    ts.set("live", "l")
    ts.set("gone", "g")
    cli_store.backend.delete(ts.scope, "gone")
    assert main(["reconcile", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["young"] == 2, "the default grace period keeps fresh values"
    assert main(["reconcile", "--dry-run", "--grace-minutes", "0", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert (dry["dry_run"], dry["orphaned"], dry["discarded"], dry["live"]) == (True, 1, 0, 1)
    assert main(["reconcile", "--grace-minutes", "0"]) == 0
    out = capsys.readouterr().out
    assert "discarded: no row references them" in out
    assert ts.get("live") == "l"
    assert cli_store.worker_backend is not None
    assert len(values_of(cli_store.worker_backend)) == 1
    assert main(["reconcile", "--grace-minutes", "-1"]) == 2
    assert "--grace-minutes must be 0 or more" in capsys.readouterr().err


# -- kill -9 in the middle of maintenance -------------------------------------------------------------------

_KILLED = """
import os, signal, sys
from datetime import timedelta
from statestore.core import Config, MetastoreStoreBackend, StateStore
from statestore.core.backends.local import LocalStoreBackend

config = Config.from_dict({{}})
server = MetastoreStoreBackend(sys.argv[1], config=config)
store = StateStore(server, LocalStoreBackend(sys.argv[2], config=config), config)
worker = store.worker_backend
worker.delete_batch_size = 10
original = worker._delete_objects
calls = [0]

def dying(names):
    calls[0] += 1
    if calls[0] == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(names)

worker._delete_objects = dying
store.{operation}
"""


@pytest.mark.parametrize(
    ("operation", "kill_at"), [("cleanup()", 1), ("cleanup()", 2), ("reconcile(grace=timedelta(0))", 2)]
)
def test_kill_9_during_maintenance_leaves_only_what_reconcile_reclaims(
    sqlite_url: sa.URL, tmp_path: Path, operation: str, kill_at: int
) -> None:
    """A SIGKILL at a value-delete step of cleanup or reconcile: the next reconcile removes exactly the orphans."""
    config = Config.from_dict({})
    objects = tmp_path / "objects"
    store = StateStore(MetastoreStoreBackend(sqlite_url, config=config), LocalStoreBackend(objects, config=config))
    worker = store.worker_backend
    assert isinstance(worker, LocalStoreBackend)
    worker.delete_batch_size = 10  # several delete batches, so the kill lands between two of them
    ts = store.task_store(_dag(), "run", "task")
    for i in range(30):
        ts.set(f"old{i}", i, retention=SHORT)
    for i in range(5):
        ts.set(f"live{i}", i, retention=NEVER_EXPIRE)
    if operation.startswith("reconcile"):
        store.backend.clear(ts.scope)  # orphans for reconcile to work on ...
        for i in range(5):
            ts.set(f"live{i}", i, retention=NEVER_EXPIRE)  # ... and live values it must keep
    else:
        while store.cleanup(dry_run=True).removed < 30:
            pass
    script = textwrap.dedent(_KILLED.format(kill_at=kill_at, operation=operation))
    child = subprocess.run(
        [sys.executable, "-c", script, str(sqlite_url), str(objects)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    left = len(values_of(worker))
    assert left > 5, "the kill landed after every value was already gone"
    store.reconcile(grace=timedelta(0))
    assert sorted(ts.keys()) == [f"live{i}" for i in range(5)]
    assert [ts.get(f"live{i}") for i in range(5)] == list(range(5))
    remaining = {r.rpartition("/")[0].rpartition("/")[2] for r in values_of(worker) if f"/{ts.scope.dag_id}/" in r}
    assert remaining == {f"live{i}" for i in range(5)}, "an orphan survived, or a live value was discarded"
