"""The core README's third-party backend ("A complete third-party backend in 40 lines"), run as written.

The block is read from the README and executed, so the example a reader copies is the one that
passes the conformance suite.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from statestore.core import BaseStoreBackend, Config, StoreBackend
from statestore.core.naming import scope_path
from statestore.core.scopes import StoreScope
from statestore.core.testing import BackendSuite

from ..readmes import ROOT, Block, blocks

README = ROOT / "packages" / "core" / "README.md"
HEADING = "### A complete third-party backend in 40 lines"
AIRFLOW_METHODS = {"get", "set", "delete", "clear", "aget", "aset", "adelete", "aclear"}


def _example() -> Block:
    """The first python block under the heading."""
    heading = README.read_text(encoding="utf-8").splitlines().index(HEADING) + 1
    return next(block for block in blocks("python") if block.readme == README and block.line > heading)


def _example_class() -> Any:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    block = _example()
    exec(compile("\n" * block.line + block.text, str(README), "exec"), namespace)
    return namespace["DictStoreBackend"]


DictStoreBackend = _example_class()


def test_the_example_fits_in_40_lines() -> None:
    lines = _example().text.splitlines()
    assert len(lines) <= 40, f"the README's third-party example has {len(lines)} lines"


def test_the_example_implements_exactly_airflow_s_eight_methods() -> None:
    assert issubclass(DictStoreBackend, BaseStoreBackend)
    assert isinstance(DictStoreBackend(), StoreBackend)
    public = {name for name, value in vars(DictStoreBackend).items() if callable(value) and not name.startswith("_")}
    assert public == AIRFLOW_METHODS


class _DictEntries:
    """What the example's dict holds, expired entries included."""

    def __init__(self, backend: Any) -> None:
        self.data = backend.data

    def entry(self, scope: StoreScope, key: str) -> tuple[str, datetime | None] | None:
        return self.data.get((scope_path(scope), key))  # type: ignore[no-any-return]


class TestThirdPartyExample(BackendSuite):
    """Every mixin of the suite; the example declares ``listing`` and ``cleanup`` unsupported itself."""

    @pytest.fixture
    def backend(self) -> Any:
        return DictStoreBackend(config=Config.from_dict({}))

    @pytest.fixture
    def raw_storage(self, backend: Any) -> _DictEntries:
        return _DictEntries(backend)
