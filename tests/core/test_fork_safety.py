"""Fork safety of core's backends: memory, local and the metastore on SQLite, PostgreSQL and MariaDB.

The plugins run the same :class:`~statestore.core.testing.ForkSuite` in their own test folders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from statestore.core import Config
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.testing import ForkSuite


class TestMemoryForks(ForkSuite):
    shares_storage_across_processes = False  # each process has its own copy of the data

    @pytest.fixture
    def backend(self) -> MemoryStoreBackend:
        return MemoryStoreBackend(config=Config.from_dict({}))


class TestLocalForks(ForkSuite):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalStoreBackend:
        return LocalStoreBackend(tmp_path, config=Config.from_dict({}))


class TestMetastoreForks(ForkSuite):
    @pytest.fixture
    def backend(self, metastore_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
        backend = MetastoreStoreBackend(metastore_url, config=Config.from_dict({}))
        yield backend
        backend.dispose()
