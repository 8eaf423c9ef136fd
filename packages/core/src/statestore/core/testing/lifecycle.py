"""``LifecycleSuite``: the life of an offloaded value under races, crashes and reconciliation.

A worker-side backend (``[workers] state_backend``) adopts it by subclassing and overriding one
fixture, ``store``: a ``StateStore`` whose worker backend is the backend under test, over a real
server store (the metastore on SQLite or PostgreSQL). Every test is bounded in time and uses only
the public API, plus two injection points on the store's own instances (``discard_values`` and
``store_value``, wrapped to run a step of another operation in the middle of one): the windows
between a row delete and its value's discard, and between a value's write and its row's.

What the tests hold a backend to (see "Lifecycle" in the core README):

* no delete, clear or cleanup aimed at an old value removes a newer one, whatever lands between
  its steps (deterministic interleavings, then at least 8 threads racing on the same keys);
* a key whose last acknowledged operation was a ``set`` reads that value, never an error;
* a reference is honoured only for its own scope and key;
* a server that refuses the row leaves no value behind;
* an error or a kill at any step of ``cleanup`` leaves only orphans that ``reconcile`` removes,
  and ``reconcile`` never removes a referenced value or one younger than its grace period.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, ClassVar, cast

import pytest

from statestore.core.base import BaseStoreBackend
from statestore.core.errors import InvalidReferenceError, StorageError
from statestore.core.scopes import NEVER_EXPIRE, AssetScope, TaskScope
from statestore.core.store import REF_MARKER, StateStore, TaskStoreAccessor

__all__ = ["LifecycleSuite", "values_of"]

PAD = "." * 64
"""Appended to every value so that no worker backend keeps it inline (thresholds of a few bytes)."""
SHORT = timedelta(milliseconds=1)
"""A retention that has passed by the time cleanup runs (tests wait for it, never sleep blindly)."""


def values_of(worker: BaseStoreBackend) -> list[str]:
    """Every value reference the worker backend holds (one listing)."""
    return [value.reference for page in worker.iter_values() for value in page]


def _referenced(store: StateStore, scopes: Iterable[Any]) -> set[str]:
    """The references the rows of ``scopes`` hold."""
    found = set()
    for scope in scopes:
        for key in cast(Any, store.backend).keys(scope):
            text = store.backend.get(scope, key)
            value = None if text is None else json.loads(text)
            if isinstance(value, dict) and REF_MARKER in value:
                found.add(value[REF_MARKER])
    return found


def _wait_until_expired(store: StateStore, count: int) -> None:
    """Wait (bounded) until cleanup would remove at least ``count`` rows."""
    deadline = time.monotonic() + 10
    while store.cleanup(dry_run=True).removed < count:
        assert time.monotonic() < deadline, "short retentions did not expire within 10 s"
        time.sleep(0.005)


def _inject(obj: Any, method: str, before: Callable[[], None]) -> None:
    """Make ``obj.method`` run ``before()`` once, the first time it is called, then do its work."""
    original = getattr(obj, method)
    pending = [before]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if pending:
            pending.pop()()
        return original(*args, **kwargs)

    setattr(obj, method, wrapped)


def _run_threads(workers: list[Callable[[], None]], timeout: float = 120) -> None:
    """Run each callable in its own thread, all started together; re-raise the first failure."""
    start = threading.Barrier(len(workers))

    def run(work: Callable[[], None]) -> None:
        start.wait(timeout)
        work()

    with ThreadPoolExecutor(len(workers)) as pool:
        for future in [pool.submit(run, work) for work in workers]:
            future.result(timeout)


class LifecycleSuite:
    """Lifecycle tests for a worker-side backend under ``StateStore``; override the ``store`` fixture."""

    threads: ClassVar[int] = 8
    """Threads of the race tests (at least 8)."""
    rounds: ClassVar[int] = 12
    """Keys each racing pair of threads fights over (more rounds, more interleavings, more time)."""

    @pytest.fixture
    def store(self) -> StateStore:
        """A ``StateStore`` over a real server store, with the backend under test as worker backend."""
        raise NotImplementedError("override the `store` fixture")

    @pytest.fixture
    def ts(self, store: StateStore) -> TaskStoreAccessor:
        """A task store of a scope unique to the test."""
        return store.task_store(f"lifecycle-{secrets.token_hex(5)}", "run", "task")

    # -- deterministic interleavings: one step of another operation inside each window -----------------

    def test_set_inside_cleanup_survives(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Cleanup deleted the expired row; a set of the key lands before cleanup discards the old value."""
        assert store.worker_backend is not None
        ts.set("k", "old" * 20, retention=SHORT)
        _wait_until_expired(store, 1)
        _inject(store.worker_backend, "discard_values", lambda: ts.set("k", "new" * 20, retention=NEVER_EXPIRE))
        store.cleanup()
        assert ts.get("k") == "new" * 20, "cleanup removed the value of a set acknowledged after its row delete"
        assert ts.keys() == ["k"]

    def test_set_inside_delete_survives(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Delete removed the row; a set lands before delete discards the old value."""
        assert store.worker_backend is not None
        ts.set("k", "old" * 20)
        _inject(store.worker_backend, "discard_values", lambda: ts.set("k", "new" * 20))
        ts.delete("k")
        assert ts.get("k") == "new" * 20, "a delete aimed at the old value removed the newer one"

    def test_delete_inside_set_leaves_the_set(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """A set wrote its value; a whole delete runs before the set writes its row: the set wins."""
        assert store.worker_backend is not None
        ts.set("k", "old" * 20)
        worker = store.worker_backend
        original = worker.store_value

        def store_then_delete(*args: Any, **kwargs: Any) -> str | None:
            reference = original(*args, **kwargs)
            worker.store_value = original  # type: ignore[method-assign]
            ts.delete("k")
            return reference

        worker.store_value = store_then_delete  # type: ignore[method-assign]
        ts.set("k", "new" * 20)
        assert ts.get("k") == "new" * 20, "the last acknowledged set does not read back"

    def test_set_inside_clear_survives(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Clear removed the scope's rows; a set lands before clear discards their values."""
        assert store.worker_backend is not None
        ts.set("a", "a" * 50)
        ts.set("b", "b" * 50)
        _inject(store.worker_backend, "discard_values", lambda: ts.set("a", "new" * 20))
        ts.clear()
        assert ts.get("a") == "new" * 20, "a clear removed the value of a set acknowledged after its row delete"
        assert ts.get("b") is None
        assert ts.keys() == ["a"]

    def test_overwrite_leaves_old_reference_readable_until_reconciled(
        self, store: StateStore, ts: TaskStoreAccessor
    ) -> None:
        """An overwrite never touches the previous value: a reader holding the old reference still reads it."""
        assert store.worker_backend is not None
        ts.set("k", "v1" * 20)
        old = json.loads(store.backend.get(ts.scope, "k") or "")[REF_MARKER]
        ts.set("k", "v2" * 20)
        assert store.worker_backend.load_value(old, scope=ts.scope, key="k") == json.dumps("v1" * 20)
        assert store.reconcile(grace=timedelta(0)).discarded >= 1
        assert ts.get("k") == "v2" * 20
        assert old not in values_of(store.worker_backend)

    # -- references, rejects ----------------------------------------------------------------------------

    def test_reference_of_another_scope_or_key_is_refused(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """A marker copied into another row (bug, migration, hand edit) never reads another scope's value."""
        ts.set("secret", "s" * 50)
        marker = store.backend.get(ts.scope, "secret")
        assert marker is not None
        other = TaskScope(ts.scope.dag_id, ts.scope.run_id, "other-task")
        store.backend.set(other, "secret", marker)
        store.backend.set(ts.scope, "copy", marker)
        with pytest.raises(InvalidReferenceError):
            store.task_store(other).get("secret")
        with pytest.raises(InvalidReferenceError):
            ts.get("copy")
        asset = AssetScope(name=f"{ts.scope.dag_id}-asset")
        store.backend.set(asset, "secret", marker)
        with pytest.raises(InvalidReferenceError):
            store.asset_store(asset).get("secret")
        assert ts.get("secret") == "s" * 50

    def test_refused_row_leaves_no_value(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """When the server store refuses the row, the value written for it is discarded again."""
        assert store.worker_backend is not None
        before = set(values_of(store.worker_backend))

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise StorageError("the server refused the row (injected)")

        store.backend.set = refuse  # type: ignore[method-assign]
        with pytest.raises(StorageError, match="injected"):
            ts.set("k", "x" * 100)
        assert set(values_of(store.worker_backend)) == before, "a refused write left its value behind"

    # -- crash-safe maintenance -------------------------------------------------------------------------

    def test_failed_cleanup_leaves_only_what_reconcile_removes(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """An error at the value step of cleanup: the next reconcile removes exactly the orphans."""
        assert store.worker_backend is not None
        for i in range(6):
            ts.set(f"old{i}", "x" * 50, retention=SHORT)
        ts.set("live", "y" * 50, retention=NEVER_EXPIRE)
        _wait_until_expired(store, 6)

        def fail(*args: Any, **kwargs: Any) -> dict[str, str]:
            raise StorageError("the storage service failed (injected)")

        worker = store.worker_backend
        original = worker.discard_values
        worker.discard_values = fail  # type: ignore[method-assign]
        with pytest.raises(StorageError, match="injected"):
            store.cleanup()
        worker.discard_values = original  # type: ignore[method-assign]
        assert len(values_of(worker)) >= 7, "the failed step discarded values"
        store.cleanup()  # the next cleanup cannot see them (their rows are gone) ...
        result = store.reconcile(grace=timedelta(0))  # ... reconciliation does
        assert result.discarded >= 6
        assert ts.keys() == ["live"]
        assert ts.get("live") == "y" * 50
        assert set(values_of(worker)) >= _referenced(store, [ts.scope])

    def test_reconcile_keeps_young_and_referenced_values(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Grace period and references: reconcile keeps both; a dry run discards nothing."""
        assert store.worker_backend is not None
        ts.set("live", "l" * 50)
        ts.set("gone", "g" * 50)
        store.backend.delete(ts.scope, "gone")  # as `airflow db clean` would
        assert store.reconcile().orphaned == 0, "a value younger than the grace period was judged"
        dry = store.reconcile(grace=timedelta(0), dry_run=True)
        assert dry.orphaned >= 1
        assert dry.discarded == 0
        assert len([r for r in values_of(store.worker_backend) if "/gone/" in r]) == 1
        store.reconcile(grace=timedelta(0))
        assert [r for r in values_of(store.worker_backend) if "/gone/" in r] == []
        assert ts.get("live") == "l" * 50

    # -- races: at least 8 threads ------------------------------------------------------------------------

    def _keys(self, prefix: str) -> list[str]:
        return [f"{prefix}{i}" for i in range(self.rounds)]

    def test_race_never_expire_sets_during_cleanups(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Half the threads re-set expired keys with NEVER_EXPIRE while the other half run cleanup: none is lost."""
        pairs = self.threads // 2
        keys = [self._keys(f"t{t}-") for t in range(pairs)]
        for group in keys:
            for key in group:
                ts.set(key, "expiring" * 10, retention=SHORT)
        _wait_until_expired(store, pairs * self.rounds)
        acknowledged: dict[str, str] = {}

        def writer(group: list[str]) -> Callable[[], None]:
            def run() -> None:
                for key in group:
                    ts.set(key, f"kept-{key}{PAD}", retention=NEVER_EXPIRE)
                    acknowledged[key] = f"kept-{key}{PAD}"

            return run

        def cleaner() -> None:
            for _ in range(self.rounds):
                store.cleanup()

        _run_threads([writer(group) for group in keys] + [cleaner] * (self.threads - pairs))
        for key, value in acknowledged.items():
            assert ts.get(key) == value, f"the acknowledged NEVER_EXPIRE set of {key!r} was lost to a cleanup"

    def test_race_set_and_delete_on_the_same_keys(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Setters and deleters on the same keys: a key that is listed always reads, never a dangling row."""
        keys = self._keys("k")
        seen: list[Any] = []
        written: set[str] = set()

        def setter(name: str) -> Callable[[], None]:
            def run() -> None:
                for round_ in range(3):
                    for key in keys:
                        value = f"{name}-{round_}-{key}{PAD}"
                        written.add(value)
                        ts.set(key, value)

            return run

        def deleter() -> None:
            for _ in range(3):
                for key in keys:
                    ts.delete(key)

        def reader() -> None:
            for _ in range(3):
                for key in keys:
                    seen.append(ts.get(key))

        half = self.threads // 2
        _run_threads([setter(f"s{i}") for i in range(half - 1)] + [deleter] * half + [reader])
        assert all(value is None or value in written for value in seen), "a read returned a value never written"
        self._assert_reconciled(store, ts)

    def test_race_set_and_clear(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Setters and clearers of one scope: every listed key reads its value afterwards."""
        keys = self._keys("c")

        def setter(name: str) -> Callable[[], None]:
            def run() -> None:
                for key in keys:
                    ts.set(key, f"{name}-{key}{PAD}")

            return run

        def clearer() -> None:
            for _ in range(self.rounds // 2):
                ts.clear()

        half = self.threads // 2
        _run_threads([setter(f"s{i}") for i in range(half)] + [clearer] * half)
        self._assert_reconciled(store, ts)

    def test_race_last_acknowledged_set_wins(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Each key's last operation is a set, racing with deletes, clears and cleanups: it reads back."""
        keys = self._keys("w")
        barrier = threading.Barrier(self.threads)
        final: dict[str, str] = {}

        def writer(index: int) -> Callable[[], None]:
            def run() -> None:
                for key in keys[index::2]:
                    ts.set(key, "first" * 10, retention=SHORT)
                barrier.wait(60)  # everyone's noise starts together
                for key in keys[index::2]:
                    ts.set(key, f"final-{key}{PAD}", retention=NEVER_EXPIRE)
                    final[key] = f"final-{key}{PAD}"

            return run

        def noise(action: Callable[[], object]) -> Callable[[], None]:
            def run() -> None:
                barrier.wait(60)
                for _ in range(self.rounds // 3 + 1):
                    action()

            return run

        actions: list[Callable[[], object]] = [lambda: ts.delete(keys[0])]
        actions += [store.cleanup] * (self.threads - 3)
        _run_threads([writer(0), writer(1), *(noise(action) for action in actions)])
        for key, value in final.items():
            if key != keys[0]:  # keys[0] is also deleted concurrently: either outcome is acknowledged
                assert ts.get(key) == value, f"the last acknowledged set of {key!r} does not read back"
        self._assert_reconciled(store, ts)

    def _assert_reconciled(self, store: StateStore, ts: TaskStoreAccessor) -> None:
        """Every listed key reads; after reconciliation every value of the scope has a row and every row its value."""
        assert store.worker_backend is not None
        listed = ts.keys()
        assert None not in [ts.get(key) for key in listed], f"a key of {listed} has a row whose value is gone"
        store.reconcile(grace=timedelta(0))
        referenced = _referenced(store, [ts.scope])
        mine = {r for r in values_of(store.worker_backend) if f"/{ts.scope.dag_id}/" in r}
        assert referenced <= mine, "a row references a value that is gone"
        assert mine <= referenced, "reconciliation left an orphan"
