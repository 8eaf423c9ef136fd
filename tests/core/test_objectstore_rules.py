"""The shared object-store rules, exercised through the local backend: threshold, compression, batching, cleanup."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from statestore.core import AssetScope, Config, ConfigurationError, TaskScope
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.objectstore import ListedObject

TASK = TaskScope("dag", "run", "task")
CONFIG = Config.from_dict({})


class CountingLocal(LocalStoreBackend):
    """The local backend with batches of 10, counting list pages and delete batches."""

    delete_batch_size = 10

    def __init__(self, path: Path) -> None:
        super().__init__(path, config=CONFIG)
        self.pages = 0
        self.batches: list[int] = []

    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        for page in super()._list_objects(prefix):
            self.pages += 1
            yield page

    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        self.batches.append(len(names))
        return super()._delete_objects(names)


def test_threshold_and_compression_changes_never_break_reads(tmp_path: Path) -> None:
    writers = [
        LocalStoreBackend(tmp_path, config=CONFIG),
        LocalStoreBackend(tmp_path, compression="gzip", config=CONFIG),
        LocalStoreBackend(tmp_path, threshold=1000, compression="gzip", config=CONFIG),
    ]
    refs = []
    for index, writer in enumerate(writers):
        refs.append(writer.store_value(TASK, f"k{index}", json.dumps("v" * 50), allow_inline=False))
    for reader in writers:
        for index, ref in enumerate(refs):
            assert reader.load_value(ref, scope=TASK, key=f"k{index}") == json.dumps("v" * 50)
    assert refs[1] is not None
    header, _, body = (tmp_path / writers[1]._name_from_reference(refs[1])).read_bytes().partition(b"\n")
    assert json.loads(header) == {"statestore-encoding": "gzip"}
    assert gzip.decompress(body) == json.dumps("v" * 50).encode()


def test_threshold_counts_utf8_bytes_and_is_strict(tmp_path: Path) -> None:
    backend = LocalStoreBackend(tmp_path, threshold=8, config=CONFIG)
    assert backend.store_value(TASK, "a", '"éé"') is None  # 6 bytes < 8
    assert backend.store_value(TASK, "b", '"ééé"') is not None  # 8 bytes: stored
    assert [backend.resolve_reference(v.reference) for page in backend.iter_values() for v in page] == [(TASK, "b")]


async def test_clear_lists_and_deletes_in_batches(tmp_path: Path) -> None:
    backend = CountingLocal(tmp_path)
    for i in range(25):
        backend.set(TASK, f"k{i}", "1")
    backend.set(TaskScope("dag", "run", "task", 0), "other", "1")
    backend.clear(TASK)
    assert (backend.pages, backend.batches) == (3, [10, 10, 5])
    for i in range(12):
        await backend.aset(TASK, f"k{i}", "1")
    backend.pages, backend.batches = 0, []
    await backend.aclear(TASK, all_map_indices=True)
    assert (backend.pages, backend.batches) == (2, [10, 3])
    assert backend.keys(TaskScope("dag", "run", "task", 0)) == []


def test_cleanup_reclaims_only_expired_and_reports_kinds(tmp_path: Path) -> None:
    backend = CountingLocal(tmp_path)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    for i in range(12):
        backend.set(TASK, f"old{i}", "1", expires_at=past)
    backend.set(AssetScope(name="a"), "old", "1", expires_at=past)
    backend.set(TASK, "new", "1", expires_at=future)
    backend.set(AssetScope(name="a"), "forever", "1")
    result = backend.cleanup()
    assert (result.removed, result.by_kind) == (13, {"expired_task": 12, "expired_asset": 1})
    assert all(size <= 10 for size in backend.batches)
    assert backend.keys(TASK) == ["new"]
    assert backend.keys(AssetScope(name="a")) == ["forever"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prefix": "../x"}, "invalid prefix '../x'"),
        ({"prefix": "a b"}, "invalid prefix 'a b'"),
        ({"threshold": -1}, "LocalStoreBackend: threshold must be >= 0, got -1"),
        ({"threshold": True}, "LocalStoreBackend: threshold must be an integer, got True"),
        ({"compression": "brotli"}, "compression must be one of none, gzip"),
    ],
)
def test_layer_settings_are_validated(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LocalStoreBackend(tmp_path, config=CONFIG, **kwargs)  # type: ignore[arg-type]
