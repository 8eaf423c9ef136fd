"""The lifecycle suite for S3 as worker-side backend (moto) over the metastore on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from statestore.core import Config, MetastoreStoreBackend, StateStore
from statestore.core.testing import LifecycleSuite


class TestS3Lifecycle(LifecycleSuite):
    @pytest.fixture(params=["sqlite", "postgresql"])
    def store(self, request: pytest.FixtureRequest, make_backend: Callable[..., Any]) -> StateStore:
        url: sa.URL = request.getfixturevalue(f"{request.param}_url")
        config = Config.from_dict({})
        return StateStore(MetastoreStoreBackend(url, config=config), make_backend(config=config), config)
