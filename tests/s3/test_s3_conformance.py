"""The conformance suite on S3StoreBackend against moto's threaded server, sync and async."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from statestore.core.testing import BackendSuite

from ..raw_storage import PrimitiveRawStorage


class TestS3Conformance(PrimitiveRawStorage, BackendSuite):
    @pytest.fixture
    def backend(self, make_backend: Callable[..., Any]) -> Any:
        return make_backend()


class TestS3GzipNoPrefixConformance(PrimitiveRawStorage, BackendSuite):
    """Compression on, and no prefix at all (objects at the bucket root of a bucket of its own)."""

    @pytest.fixture
    def backend(self, make_backend: Callable[..., Any], fresh_bucket: str) -> Any:
        return make_backend(bucket=fresh_bucket, prefix="", compression="gzip")
