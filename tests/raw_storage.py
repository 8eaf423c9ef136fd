"""``raw_storage`` for the conformance suites of statestore's own backends: their ``_get`` primitive.

The suite itself calls only the public contract; what storage holds underneath ``get`` (expired
entries not yet reclaimed, the stored expiry) is ours to show it, through the primitive every
``PrimitiveStoreBackend`` implements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from statestore.core.scopes import StoreScope


class PrimitiveEntries:
    """A ``RawStorage`` answering with the backend's ``_get`` primitive (expired entries included)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def entry(self, scope: StoreScope, key: str) -> tuple[str, datetime | None] | None:
        return self.backend._get(scope, key, None)  # type: ignore[no-any-return]


class PrimitiveRawStorage:
    """Put before the suite in a test class's bases: ``raw_storage`` reads through ``_get``."""

    @pytest.fixture
    def raw_storage(self, backend: Any) -> PrimitiveEntries:
        return PrimitiveEntries(backend)
