"""``state-store demo``: the three use cases of task and asset state, narrated, on the embedded defaults.

Runs on an SQLite metastore and the ``local`` worker-side backend in a temporary (or given)
home, so it needs no server and leaves the user's own ``STATESTORE_HOME`` alone.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from statestore.core.config import Config
from statestore.core.store import StateStore

__all__ = ["run_demo"]

_PAGES = 5
_MARKER = "statestore-demo.txt"


class _SimulatedCrash(Exception):
    """Stands in for a worker dying mid-task."""


def _say(text: str) -> None:
    print(text, flush=True)


def _external_job(store: StateStore, submissions: list[str]) -> None:
    _say("\n1. An external job id survives a worker crash")
    for attempt in (1, 2):
        try:
            with store.task_attempt("billing", "2025-01-01", "submit_report", clear_on_success=True) as ts:
                job_id = ts.get("job_id")
                if job_id is None:
                    job_id = f"job-{len(submissions) + 1:03d}"
                    submissions.append(job_id)
                    ts.set("job_id", job_id)
                    _say(f"   attempt {attempt}: submitted {job_id} to the cluster and stored its id")
                else:
                    _say(f"   attempt {attempt}: found {job_id} in the task store: reattached, no new submission")
                if attempt == 1:
                    raise _SimulatedCrash
                _say(f"   attempt {attempt}: {job_id} finished; success clears the task's store")
        except _SimulatedCrash:
            _say(f"   attempt {attempt}: the worker crashed while polling (simulated); Airflow retries the task")
    left = store.task_store("billing", "2025-01-01", "submit_report").keys()
    _say(f"   jobs submitted: {len(submissions)} ({', '.join(submissions)}); keys left after success: {left}")


def _paginated_ingest(store: StateStore) -> None:
    _say("\n2. A paginated ingest resumes from its checkpoint")
    fetched: list[int] = []
    for attempt in (1, 2):
        try:
            with store.task_attempt("ingest", "2025-01-01", "fetch_pages", clear_on_success=True) as ts:
                start = ts.get("next_page", 1)
                _say(f"   attempt {attempt}: starting at page {start}")
                for page in range(start, _PAGES + 1):
                    fetched.append(page)
                    ts.set("next_page", page + 1)
                    if attempt == 1 and page == 3:
                        raise _SimulatedCrash
                _say(f"   attempt {attempt}: all {_PAGES} pages ingested")
        except _SimulatedCrash:
            _say(f"   attempt {attempt}: crashed after page 3; checkpoint next_page=4 is stored")
    _say(f"   pages fetched over both attempts: {fetched} (no page fetched twice)")


def _asset_watermark(store: StateStore) -> None:
    _say("\n3. An asset watermark advances over three runs")
    rows = {1: [3, 7], 2: [9, 12, 15], 3: [18]}  # new row ids arriving before each run
    for run, arrived in rows.items():
        assets = store.asset_stores(inlets=["warehouse.orders"])
        watermark = assets.get("watermark", 0)
        new = [r for r in arrived if r > watermark]
        assets.set("watermark", max([watermark, *new]))
        _say(f"   run {run}: watermark {watermark} -> {assets.get('watermark')} after loading rows {new}")


def _expiry_and_clean(store: StateStore) -> None:
    _say("\n4. Expiry, large values and clean")
    ts = store.task_store("reports", "2025-01-02", "render")
    ts.set("scratch", {"rows": list(range(20_000))}, retention=timedelta(milliseconds=200))
    server_row = store.backend.get(ts.scope, "scratch") or ""
    _say(f"   stored a {len(str(ts.get('scratch')))}-character value; the metastore row holds only {server_row}")
    time.sleep(0.3)
    _say(f"   0.3 s later its 200 ms retention has passed: get() -> {ts.get('scratch')!r}")
    result = store.cleanup()
    parts = ", ".join(f"{kind}={count}" for kind, count in result.by_kind.items() if count)
    _say(f"   state-store clean: removed {result.removed} expired row(s) and their external objects ({parts})")


def _prepare_home(directory: Path) -> bool:
    """Make ``directory`` ready for a fresh demo; False when a previous demo's files had to be removed.

    Only a directory that is new, empty or marked as a demo's own is used, so nothing of the user's is
    ever removed.
    """
    marker = directory / _MARKER
    if directory.is_dir() and any(directory.iterdir()):
        if not marker.is_file():
            raise ValueError(
                f"--home {directory} is not empty and was not made by state-store demo; "
                "give a new or empty directory (or leave --home out for a temporary one)"
            )
        for name in ("statestore.db", "statestore.db-wal", "statestore.db-shm"):
            (directory / name).unlink(missing_ok=True)
        shutil.rmtree(directory / "objects", ignore_errors=True)
        return False
    directory.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by `state-store demo`; the demo removes its database and objects here on its next run\n")
    return True


def run_demo(home: str | None = None) -> int:
    """Run the demo in ``home`` (default: a new temporary directory) and return the exit status."""
    directory = Path(home or tempfile.mkdtemp(prefix="statestore-demo-")).expanduser().resolve()
    fresh = _prepare_home(directory)
    config = Config.from_dict(
        {
            "state_store": {"backend": "metastore", "sql_alchemy_conn": f"sqlite:///{directory / 'statestore.db'}"},
            "workers": {"state_backend": "local"},
            "statestore_local": {"path": str(directory / "objects")},
        },
        environ={"STATESTORE_HOME": str(directory)},
    )
    store = StateStore.from_config(config)
    _say(f"statestore demo in {directory}{'' if fresh else ' (the previous demo there was removed: starting fresh)'}")
    _say(f"   server-side backend: {store.backend!r}")
    _say(f"   worker-side backend: {store.worker_backend!r}")
    _external_job(store, [])
    _paginated_ingest(store)
    _asset_watermark(store)
    _expiry_and_clean(store)
    _say(
        f"\nDone. Inspect it with: STATESTORE_HOME={directory} STATESTORE__WORKERS__STATE_BACKEND=local "
        "state-store asset list --name warehouse.orders"
    )
    return 0
