"""The lifecycle suite for the ``local`` worker-side backend over the metastore on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
import sqlalchemy as sa

from statestore.core import Config, MemoryStoreBackend, MetastoreStoreBackend, StateStore
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.testing import LifecycleSuite


class TestLocalLifecycle(LifecycleSuite):
    @pytest.fixture(params=["sqlite", "postgresql"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
        url: sa.URL = request.getfixturevalue(f"{request.param}_url")
        config = Config.from_dict({})
        return StateStore(MetastoreStoreBackend(url, config=config), LocalStoreBackend(tmp_path, config=config), config)


def test_a_deterministic_worker_keeps_airflows_race(sqlite_url: sa.URL) -> None:
    """What the core README's Lifecycle says of deterministic references, pinned down.

    A worker whose references are a pure function of ``(scope, key)`` has its values deleted by
    that name after their rows; a set landing in between rewrites the same object, and the delete
    then removes the acknowledged value (versioned backends pass ``test_set_inside_delete_survives``).
    """
    config = Config.from_dict({})
    store = StateStore(MetastoreStoreBackend(sqlite_url, config=config), MemoryStoreBackend(config=config), config)
    ts = store.task_store("deterministic", "run", "task")
    ts.set("k", "old")
    worker = store.worker_backend
    assert worker is not None
    assert not worker.versioned_references
    original = worker.discard_values

    def discard_after_a_set(references: Iterable[str]) -> dict[str, str]:
        ts.set("k", "new")
        return original(references)

    worker.discard_values = discard_after_a_set  # type: ignore[method-assign]
    ts.delete("k")
    assert ts.keys() == ["k"]  # the new row survives the delete
    assert ts.get("k") is None  # but the value it names went with the old one
