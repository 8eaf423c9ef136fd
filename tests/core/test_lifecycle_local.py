"""The lifecycle suite for the ``local`` worker-side backend over the metastore on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from statestore.core import Config, MetastoreStoreBackend, StateStore
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.testing import LifecycleSuite


class TestLocalLifecycle(LifecycleSuite):
    @pytest.fixture(params=["sqlite", "postgresql"])
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
        url: sa.URL = request.getfixturevalue(f"{request.param}_url")
        config = Config.from_dict({})
        return StateStore(MetastoreStoreBackend(url, config=config), LocalStoreBackend(tmp_path, config=config), config)
