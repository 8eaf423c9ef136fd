"""The memory backend passes the conformance suite."""

from __future__ import annotations

import pytest

from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.config import Config
from statestore.core.testing import BackendSuite

from ..raw_storage import PrimitiveRawStorage


class TestMemoryBackend(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self) -> MemoryStoreBackend:
        return MemoryStoreBackend(config=Config.from_dict({}))
