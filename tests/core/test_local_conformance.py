"""The conformance suite on core's ``local`` backend (a temporary directory per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from statestore.core import Config
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.testing import BackendSuite

from ..raw_storage import PrimitiveRawStorage


class TestLocalConformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalStoreBackend:
        return LocalStoreBackend(tmp_path / "objects", config=Config.from_dict({}))


class TestLocalGzipPrefixConformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalStoreBackend:
        return LocalStoreBackend(tmp_path, prefix="team/state", compression="gzip", config=Config.from_dict({}))
