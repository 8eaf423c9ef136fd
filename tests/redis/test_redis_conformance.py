"""The statestore conformance suite on RedisStoreBackend (sync and async), one random key prefix per test."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from statestore.core.testing import BackendSuite
from statestore.redis import RedisStoreBackend

from ..raw_storage import PrimitiveRawStorage


class TestRedisConformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., RedisStoreBackend]) -> RedisStoreBackend:
        return make_backend()
