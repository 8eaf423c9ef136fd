"""Fork safety of the GCS backend: an instance used before ``os.fork()`` serves parent and child (fake-gcs-server)."""

from __future__ import annotations

import pytest

from statestore.core.testing import ForkSuite
from statestore.gcs import GCSStoreBackend

from .conftest import MakeBackend


class TestGCSForks(ForkSuite):
    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> GCSStoreBackend:
        return make_backend()
