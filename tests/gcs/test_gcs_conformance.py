"""The conformance suite (sync and async) against GCSStoreBackend on fake-gcs-server."""

from __future__ import annotations

import secrets

import pytest

from statestore.core.testing import BackendSuite
from statestore.gcs import GCSStoreBackend

from ..raw_storage import PrimitiveRawStorage
from .conftest import MakeBackend


class TestGCSBackend(PrimitiveRawStorage, BackendSuite):
    """Every capability is supported: listing, cleanup, references and async."""

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> GCSStoreBackend:
        return make_backend()


class TestGCSBackendGzip(PrimitiveRawStorage, BackendSuite):
    """The same suite with gzip compression and a prefix of several segments."""

    @pytest.fixture
    def backend(self, make_backend: MakeBackend) -> GCSStoreBackend:
        return make_backend(prefix=f"team-a/{secrets.token_hex(4)}/state.v1", compression="gzip")
