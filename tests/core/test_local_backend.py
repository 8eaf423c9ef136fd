"""core's ``local`` backend: configuration, on-disk layout, atomic writes, traversal-proof names, pruning."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from statestore.core import AssetScope, Config, InvalidReferenceError, StorageError, TaskScope, load_backend
from statestore.core.backends.local import LocalStoreBackend

TASK = TaskScope("dag", "run", "task")


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_default_directory_is_statestore_home_objects(tmp_path: Path) -> None:
    config = Config.from_dict({}, environ={"STATESTORE_HOME": str(tmp_path)})
    backend = load_backend("local")(config=config)
    assert backend.location == f"local://{tmp_path}/objects/"
    backend.set(TASK, "k", "1")
    assert files_under(tmp_path) == ["objects/task/dag/run/task/-1/k"]


def test_path_setting_and_keyword_override(tmp_path: Path) -> None:
    config = Config.from_dict({"statestore_local": {"path": str(tmp_path / "cfg"), "prefix": "team"}})
    assert LocalStoreBackend(config=config).location == f"local://{tmp_path}/cfg/team/"
    assert LocalStoreBackend(tmp_path / "kw", prefix="", config=config).location == f"local://{tmp_path}/kw/"


def test_relative_path_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = LocalStoreBackend("rel", config=Config.from_dict({}))
    ref = backend.store_value(TASK, "k", "1", allow_inline=False)
    assert ref.startswith(f"local://{tmp_path}/rel/ref/task/dag/run/task/-1/k/")
    monkeypatch.chdir("/")
    assert backend.load_value(ref) == "1"


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        (TaskScope("..", "..", ".."), ".."),
        (TaskScope("../../etc", "/abs", "a\\b"), "../../../../etc/passwd"),
        (AssetScope(uri="file:///etc/passwd"), "/"),
        (AssetScope(name="."), "."),
    ],
)
def test_names_never_leave_the_directory(tmp_path: Path, scope: TaskScope | AssetScope, key: str) -> None:
    root = tmp_path / "objects"
    backend = LocalStoreBackend(root, config=Config.from_dict({}))
    backend.set(scope, key, '"v"')
    (written,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert root in written.resolve().parents
    assert all(part not in (".", "..") for part in written.relative_to(root).parts)
    assert backend.get(scope, key) == '"v"'
    assert backend.keys(scope) == [key]


def test_traversing_references_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    backend = LocalStoreBackend(tmp_path / "objects", config=Config.from_dict({}))
    ref = backend.store_value(TASK, "k", "1", allow_inline=False)
    for bad in (
        f"local://{tmp_path}/secret",
        f"local://{tmp_path}/objects/../secret",
        ref.rsplit("/", 1)[0] + "/../../../../../../secret",
        ref.replace("/objects/", "/objects//"),
        "file://" + ref.removeprefix("local://"),
    ):
        with pytest.raises(InvalidReferenceError, match="refuses"):
            backend.load_value(bad)


def test_every_path_component_fits_255_bytes(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    scope = TaskScope("ü" * 250, "r" * 300, "t")
    key = "🎉/" * 256
    backend.set(scope, key, "1")
    (written,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert max(len(part.encode()) for part in written.relative_to(tmp_path).parts) <= 255
    assert backend.keys(scope) == [key]
    assert backend.get(scope, key) == "1"
    assert backend.resolve_reference(backend.reference_for(scope, key)) == (scope, key)


def test_writes_are_atomic_under_concurrent_readers(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    values = ['"' + "a" * 200_000 + '"', '"' + "b" * 300_000 + '"']
    backend.set(TASK, "k", values[0])
    seen: set[str | None] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(backend.get(TASK, "k"))

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(100):
        backend.set(TASK, "k", values[i % 2])
    stop.set()
    reader.join()
    assert seen <= set(values)
    assert files_under(tmp_path) == ["task/dag/run/task/-1/k"]  # no temporary files left behind


def test_deletes_prune_empty_directories(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    backend.set(TASK, "a", "1")
    backend.set(TaskScope("dag", "run", "task", 1), "b", "2")
    backend.delete(TASK, "a")
    assert sorted(os.listdir(tmp_path / "task/dag/run/task")) == ["1"]
    backend.clear(TASK, all_map_indices=True)
    assert os.listdir(tmp_path) == []


def test_file_without_header_is_a_clear_error(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    path = tmp_path / backend.object_name(TASK, "k")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(Exception, match="has no statestore header; was it written by statestore"):
        backend.get(TASK, "k")


def _hammer(root: str, worker: int, seconds: float) -> tuple[int, list[str]]:
    """Set, delete and clear keys of one task (two map indices) until ``seconds`` pass; return (ops, failures)."""
    backend = LocalStoreBackend(root, config=Config.from_dict({}))
    scope = TaskScope("dag", "run", "task", worker % 2)
    failures: list[str] = []
    deadline, ops = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        ops += 1
        try:
            if ops % 5 < 3:
                backend.set(scope, f"k{ops % 3}", json.dumps([worker, ops]))
            elif ops % 5 == 3:
                backend.delete(scope, f"k{ops % 3}")
            else:
                backend.clear(scope, all_map_indices=ops % 2 == 0)
        except Exception as exc:  # every failure is counted and reported
            failures.append(f"{type(exc).__name__}: {exc}")
    backend.set(TaskScope("dag", "run", f"done-{worker}"), "last", json.dumps(worker))  # nobody deletes these
    return ops, failures


def _hammer_in_child(root: str, worker: int, seconds: float, results: Any) -> None:
    results.put(_hammer(root, worker, seconds))


def test_concurrent_writers_deleters_and_clearers_of_one_scope_never_fail(tmp_path: Path) -> None:
    """Four threads and four forked processes race set/delete/clear (pruning directories under each other)."""
    context = multiprocessing.get_context("fork")
    results: Any = context.Queue()
    processes = [context.Process(target=_hammer_in_child, args=(str(tmp_path), w, 2.0, results)) for w in range(4)]
    threads = [threading.Thread(target=lambda w=w: results.put(_hammer(str(tmp_path), w, 2.0))) for w in range(4, 8)]
    for each in (*processes, *threads):
        each.start()
    outcomes = [results.get(timeout=60) for _ in range(8)]
    for thread in threads:
        thread.join(timeout=60)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    failures = [failure for _, each in outcomes for failure in each]
    assert failures == [], f"{len(failures)} of {sum(ops for ops, _ in outcomes)} operations failed: {failures[:5]}"
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    assert [backend.get(TaskScope("dag", "run", f"done-{w}"), "last") for w in range(8)] == [
        json.dumps(w) for w in range(8)
    ]
    assert not [p for p in tmp_path.rglob(".tmp-*")], "temporary files were left behind"


def test_every_os_error_is_a_storage_error_naming_the_path(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, config=Config.from_dict({}))
    (tmp_path / "task").write_text("a file where a directory belongs")
    for operation in (
        lambda: backend.set(TASK, "k", "1"),
        lambda: backend.keys(TASK),
        lambda: backend.clear(TASK),
    ):
        with pytest.raises(StorageError, match=re.escape(str(tmp_path / "task"))):
            operation()
    (tmp_path / "task").unlink()
    (tmp_path / backend.object_name(TASK, "k")).mkdir(parents=True)  # a directory where the object belongs
    for operation in (lambda: backend.get(TASK, "k"), lambda: backend.delete(TASK, "k")):
        with pytest.raises(StorageError, match=re.escape(str(tmp_path / backend.object_name(TASK, "k")))):
            operation()
