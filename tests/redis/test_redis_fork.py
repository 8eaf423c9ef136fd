"""Fork safety of the Redis backend: an instance used before ``os.fork()`` serves parent and child."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from statestore.core.testing import ForkSuite
from statestore.redis import RedisStoreBackend


class TestRedisForks(ForkSuite):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., RedisStoreBackend]) -> RedisStoreBackend:
        return make_backend()
