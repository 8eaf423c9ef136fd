"""The conformance suite on the metastore: SQLite, PostgreSQL and MariaDB, sync and async."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from statestore.core import Config
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.testing import BackendSuite

from ..raw_storage import PrimitiveRawStorage


class TestMetastoreConformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, metastore_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
        backend = MetastoreStoreBackend(metastore_url, config=Config.from_dict({}))
        yield backend
        backend.dispose()
