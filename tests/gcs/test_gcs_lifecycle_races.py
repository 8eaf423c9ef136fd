"""The lifecycle suite for GCS as worker-side backend (fake-gcs-server) over the metastore on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from statestore.core import Config, MetastoreStoreBackend, StateStore
from statestore.core.testing import LifecycleSuite

from .conftest import MakeBackend


class TestGCSLifecycle(LifecycleSuite):
    @pytest.fixture(params=["sqlite", "postgresql"])
    def store(self, request: pytest.FixtureRequest, make_backend: MakeBackend) -> StateStore:
        url: sa.URL = request.getfixturevalue(f"{request.param}_url")
        config = Config.from_dict({})
        return StateStore(MetastoreStoreBackend(url, config=config), make_backend(config=config), config)
