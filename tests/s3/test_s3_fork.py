"""Fork safety of the S3 backend: an instance used before ``os.fork()`` serves parent and child (moto's server)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from statestore.core.testing import ForkSuite


class TestS3Forks(ForkSuite):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., Any]) -> Any:
        return make_backend()
