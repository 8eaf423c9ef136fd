"""The conformance suite over a backend written against Airflow 3.3.2's own ``BaseStoreBackend`` only.

Not collected by itself: ``test_airflow_native_conformance.py`` runs this module in a fresh
interpreter, since importing Airflow turns every later ``load_config()`` of the process into a
reading of Airflow's configuration.

``AirflowDictBackend`` subclasses ``airflow.sdk.state.BaseStoreBackend``, implements its eight
abstract methods over a dict and imports nothing of statestore. It adopts the suite's mixins for
what Airflow's contract says (get/set/delete/clear and their async twins, expiry, ``cleanup()``)
and declares on the class what it leaves out; the suite's edge-input and asset-identity rules
are statestore's, not Airflow's, so it does not adopt those mixins. The same backend also runs the
suite through ``StateStore``, which wraps it the way it wraps any Airflow-native backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

import pytest

from statestore.core import Config, StateStore, TaskScope
from statestore.core.testing import (
    AsyncSuite,
    BasicSuite,
    CleanupSuite,
    ExpirySuite,
    ListingSuite,
    ReferenceSuite,
)

sdk_state = pytest.importorskip("airflow.sdk.state")


class AirflowDictBackend(sdk_state.BaseStoreBackend):  # type: ignore[misc,name-defined]
    """Airflow's eight methods over a dict, scopes told apart by their fields (Airflow's or anyone's)."""

    unsupported_capabilities: ClassVar[Mapping[str, str]] = {
        "listing": "Airflow's contract has no keys()",
        "cleanup": "Airflow's cleanup() returns None",
        "references": "Airflow's default hooks keep values inline",
    }

    def __init__(self) -> None:
        self.data: dict[tuple[Any, ...], tuple[str, datetime | None]] = {}
        self.scope_types: set[str] = set()

    def _owner(self, scope: Any) -> tuple[Any, ...]:
        self.scope_types.add(f"{type(scope).__module__}.{type(scope).__name__}")
        if hasattr(scope, "dag_id"):
            return ("task", scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
        return ("asset", scope.asset_id, scope.name, scope.uri)

    def get(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        value, expires_at = self.data.get((*self._owner(scope), key), (None, None))
        return None if expires_at is not None and expires_at <= datetime.now(timezone.utc) else value

    def set(self, scope: Any, key: str, value: str, *, expires_at: Any = None, session: Any = None) -> None:
        self.data[(*self._owner(scope), key)] = (value, expires_at)

    def delete(self, scope: Any, key: str, *, session: Any = None) -> None:
        self.data.pop((*self._owner(scope), key), None)

    def clear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        owner = self._owner(scope)
        prefix = owner[:-1] if owner[0] == "task" and all_map_indices else owner
        for name in [name for name in self.data if name[: len(prefix)] == prefix and len(name) == len(owner) + 1]:
            del self.data[name]

    async def aget(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        return self.get(scope, key)

    async def aset(self, scope: Any, key: str, value: str, *, expires_at: Any = None, session: Any = None) -> None:
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: Any, key: str, *, session: Any = None) -> None:
        self.delete(scope, key)

    async def aclear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        self.clear(scope, all_map_indices=all_map_indices)


class _DictEntries:
    """What the dict holds, expired entries included (the suite passes statestore's scopes)."""

    def __init__(self, backend: AirflowDictBackend) -> None:
        self.backend = backend

    def entry(self, scope: Any, key: str) -> tuple[str, datetime | None] | None:
        return self.backend.data.get((*self.backend._owner(scope), key))


class TestAirflowNativeBackend(BasicSuite, AsyncSuite, ExpirySuite, ListingSuite, CleanupSuite, ReferenceSuite):
    @pytest.fixture
    def backend(self) -> AirflowDictBackend:
        return AirflowDictBackend()

    @pytest.fixture
    def raw_storage(self, backend: AirflowDictBackend) -> _DictEntries:
        return _DictEntries(backend)


class TestAirflowNativeBackendThroughStateStore(BasicSuite, AsyncSuite, ExpirySuite, ListingSuite, CleanupSuite):
    """The backend as ``StateStore`` drives it (its ``backend``): Airflow's scope types reach it."""

    unsupported = AirflowDictBackend.unsupported_capabilities

    @pytest.fixture
    def wrapped(self) -> AirflowDictBackend:
        return AirflowDictBackend()

    @pytest.fixture
    def backend(self, wrapped: AirflowDictBackend) -> Any:
        return StateStore(backend=wrapped, config=Config.from_dict({})).backend

    @pytest.fixture
    def raw_storage(self, wrapped: AirflowDictBackend) -> _DictEntries:
        return _DictEntries(wrapped)

    def test_airflow_scopes_reach_the_backend(self, backend: Any, wrapped: AirflowDictBackend) -> None:
        """StateStore hands an Airflow-native backend Airflow's own scope types, as Airflow does."""
        backend.set(TaskScope("d", "r", "t"), "k", '"v"')
        assert wrapped.scope_types == {"airflow.sdk._shared.state.TaskScope"}


def test_statestore_reads_and_writes_through_it() -> None:
    """A task store and an asset store of StateStore over the Airflow-native backend."""
    native = AirflowDictBackend()
    store = StateStore(backend=native, config=Config.from_dict({}))
    task = store.task_store("dag", "run", "task")
    task.set("job", {"id": "j-1", "done": [1, 2]})
    assert task.get("job") == {"id": "j-1", "done": [1, 2]}
    task.delete("job")
    assert task.get("job", "missing") == "missing"
    asset = store.asset_store(name="orders")
    asset.set("watermark", 42)
    assert asset.get("watermark") == 42
    asset.clear()
    assert asset.get("watermark") is None
    assert native.data == {}
