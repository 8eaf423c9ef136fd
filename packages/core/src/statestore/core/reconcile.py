"""Reconciliation: discard the worker-side values that no server row references any more.

Orphaned values come from an overwritten key (every ``set`` writes a new version and leaves the
previous one), a crash or failure between a row delete and the discard of its value, and rows
deleted by someone else than ``StateStore`` (``airflow db clean``, clearing a task instance,
Airflow's sweep of inactive assets, a ``state-store clean`` of another server store).

How (:func:`reconcile`), streaming, so memory holds one page whatever the number of values:

1. The worker backend lists its values page by page (``iter_values``: one listing request per
   page of up to 1000), each with the time it was written, read from its version's name.
2. Values younger than the grace period (default :data:`RECONCILE_GRACE`, one hour) are kept: a
   ``set`` writes its value before its row, so a fresh value may be referenced a moment later.
   A ``set`` that takes longer than half the grace period checks its value is still there and
   fails instead of acknowledging when it is not.
3. For the rest, the server store is asked which ``(scope, key)`` rows still hold exactly that
   reference (``get_many``: one query per table for a page on the metastore, one ``get`` per
   value on other server stores).
4. Values no row references are discarded in batches (``discard_values``: S3 1000 and GCS 100
   names per request). A failure is counted and reported; the next run retries it.

A crash at any step leaves nothing the next run cannot finish: nothing is discarded that a row
references, and whatever a run did not get to is found again by the next listing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from statestore.core.base import RECONCILE_GRACE, BaseStoreBackend, StoredValue, utcnow
from statestore.core.errors import InvalidReferenceError, StateStoreError
from statestore.core.scopes import StoreScope, TaskScope
from statestore.core.store import references_in

__all__ = ["ReconcileResult", "reconcile"]


@dataclass
class ReconcileResult:
    """What one reconciliation saw and did (counts of worker-side values)."""

    dry_run: bool = False
    listed: int = 0
    """Values listed."""
    young: int = 0
    """Kept: written within the grace period."""
    live: int = 0
    """Kept: a server row references them."""
    unresolved: int = 0
    """Kept: their reference names no scope and key, or the server store cannot be asked about it."""
    orphaned: int = 0
    """No row references them: discarded (or, on a dry run, would be)."""
    discarded: int = 0
    failed: int = 0
    """Orphans whose discard failed; the next run retries them."""
    pages: int = 0


def reconcile(
    server: BaseStoreBackend,
    worker: BaseStoreBackend,
    *,
    dry_run: bool = False,
    grace: timedelta = RECONCILE_GRACE,
    progress: Callable[[ReconcileResult], None] | None = None,
    now: datetime | None = None,
    also: Sequence[Any] = (),
) -> ReconcileResult:
    """Discard ``worker``'s values that no row of ``server`` references; see the module docstring.

    ``also`` names more server stores whose rows keep a value live (inside Airflow: statestore's own
    server store beside the one Airflow's tasks write to, both pointing into the same worker storage);
    each is asked only about the values the stores before it do not reference. ``progress`` is
    called with the running totals after each page. Raises ``StateStoreError`` when ``worker``
    cannot list its values (only versioned worker backends can be reconciled).
    """
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise ValueError(f"grace must be a non-negative timedelta, got {grace!r}")
    if not worker.versioned_references:
        raise StateStoreError(
            f"{type(worker).__name__} writes its values under the same names as rows, so they cannot be told "
            "apart from live ones; reconciliation needs a worker-side backend with versioned references "
            "(local, s3, gcs, redis)"
        )
    cutoff = (now or utcnow()) - grace
    result = ReconcileResult(dry_run=dry_run)
    for page in worker.iter_values():
        result.pages += 1
        result.listed += len(page)
        orphans = _orphans([server, *also], worker, [value for value in page if value.written_at <= cutoff], result)
        result.young += sum(1 for value in page if value.written_at > cutoff)
        result.orphaned += len(orphans)
        if orphans and not dry_run:
            failures = worker.discard_values(orphans)
            result.failed += len(failures)
            result.discarded += len(orphans) - len(failures)
        if progress is not None:
            progress(result)
    return result


def _orphans(
    servers: Sequence[Any], worker: BaseStoreBackend, values: Sequence[StoredValue], result: ReconcileResult
) -> list[str]:
    """The references among ``values`` that no row of any of ``servers`` holds (one batched lookup per store)."""
    pending: list[tuple[str, tuple[StoreScope, str]]] = []
    for value in values:
        try:
            pending.append((value.reference, worker.resolve_reference(value.reference)))
        except InvalidReferenceError:
            result.unresolved += 1
    unknown: set[str] = set()
    for server in servers:
        rows = _rows(server, [pair for _, pair in pending])
        still = []
        for (reference, pair), text in zip(pending, rows, strict=True):
            if isinstance(text, str) and reference in references_in([text]):
                result.live += 1
                continue
            if text is _UNKNOWN:
                unknown.add(reference)
            still.append((reference, pair))
        pending = still
    result.unresolved += sum(1 for reference, _ in pending if reference in unknown)
    return [reference for reference, _ in pending if reference not in unknown]


_UNKNOWN = object()
"""A row the server store cannot be asked about: its value is kept."""


def _rows(server: Any, pairs: list[tuple[StoreScope, str]]) -> list[object]:
    """The server's text for each pair: ``get_many`` when it has it, else one ``get`` each (Airflow-only stores)."""
    if not pairs:
        return []
    get_many = getattr(server, "get_many", None)
    if get_many is not None:
        return get_many(pairs)  # type: ignore[no-any-return]
    return [_foreign_get(server, scope, key) for scope, key in pairs]


def _foreign_get(server: Any, scope: StoreScope, key: str) -> object:
    """Ask a server store that has only Airflow's eight methods, in its own scope type.

    Airflow's own metastore matches its own ``TaskScope`` class and keys asset state by asset id,
    which a reference does not name: asset values are never judged against it (kept, counted as
    unresolved).
    """
    if type(server).__module__.split(".")[0] != "airflow":
        return server.get(scope, key)
    if not isinstance(scope, TaskScope):
        return _UNKNOWN
    from airflow.state import TaskScope as AirflowTaskScope

    return server.get(AirflowTaskScope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index), key)
