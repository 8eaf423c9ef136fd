"""The contract is Airflow's: backends written to Airflow's eight methods work in StateStore, unchanged.

Three shapes of third-party backend, none of which knows about statestore's primitives:
a subclass of ``statestore.core.BaseStoreBackend`` with exactly the eight methods (the seed
documentation's skeleton), the same with Airflow's reference hooks, and a class that subclasses
nothing (duck-typed, as an Airflow-native class looks to code that does not import Airflow).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
from typing import Any, ClassVar

import pytest

import statestore.core
from statestore.core import (
    BaseStoreBackend,
    CleanupResult,
    PrimitiveStoreBackend,
    StateStore,
    StateStoreError,
    StoreBackend,
    TaskScope,
    load_backend,
)
from statestore.core.config import Config
from statestore.core.store import REF_MARKER

AIRFLOW_EIGHT = {"get", "set", "delete", "clear", "aget", "aset", "adelete", "aclear"}


def _key_of(scope: Any) -> tuple[Any, ...]:
    """A dict key for a scope of either flavour (statestore's or Airflow's: same field names)."""
    if hasattr(scope, "dag_id"):
        return ("task", scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
    return ("asset", scope.name or scope.uri or scope.asset_id)


class DictMethods:
    """Airflow's eight methods over a dict, written the way Airflow's documentation describes them."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], dict[str, str]] = {}

    def get(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        return self.rows.get(_key_of(scope), {}).get(key)

    def set(self, scope: Any, key: str, value: str, *, expires_at: Any = None, session: Any = None) -> None:
        self.rows.setdefault(_key_of(scope), {})[key] = value

    def delete(self, scope: Any, key: str, *, session: Any = None) -> None:
        self.rows.get(_key_of(scope), {}).pop(key, None)

    def clear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        self.rows.pop(_key_of(scope), None)

    async def aget(self, scope: Any, key: str, *, session: Any = None) -> str | None:
        return self.get(scope, key)

    async def aset(self, scope: Any, key: str, value: str, *, expires_at: Any = None, session: Any = None) -> None:
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope: Any, key: str, *, session: Any = None) -> None:
        self.delete(scope, key)

    async def aclear(self, scope: Any, *, all_map_indices: bool = False, session: Any = None) -> None:
        self.clear(scope, all_map_indices=all_map_indices)


class Skeleton(DictMethods, BaseStoreBackend):
    """The seed documentation's shape: subclass our base, implement the eight methods, nothing else."""

    def __init__(self) -> None:  # Airflow builds backends with no arguments; no super().__init__ call either
        DictMethods.__init__(self)


class WithHooks(Skeleton):
    """Airflow's worker-side hooks, deterministic references as Airflow's docstring asks."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, Any] = {}

    def serialize_task_state_store_to_ref(self, *, value: Any, key: str, scope: Any) -> str:
        reference = "dict://" + "/".join(map(str, (*_key_of(scope), key)))
        self.objects[reference] = value
        return reference

    def deserialize_task_state_store_from_ref(self, stored: str) -> Any:
        return self.objects[stored]


class DuckTyped(DictMethods):
    """No statestore base at all: the eight methods and Airflow's task hooks only."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, Any] = {}
        self.cleaned = 0

    def serialize_task_state_store_to_ref(self, *, value: Any, key: str, scope: Any) -> str:
        reference = f"duck://{scope.dag_id}/{scope.task_id}/{key}"
        self.objects[reference] = value
        return reference

    def deserialize_task_state_store_from_ref(self, stored: str) -> Any:
        return self.objects[stored]

    def cleanup(self) -> None:  # Airflow's signature: no report
        self.cleaned += 1


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"state_store": {"backend": "memory"}})


def test_the_abstract_surface_is_exactly_airflows_eight_methods() -> None:
    """Nothing else is abstract; cleanup and the four hooks are concrete with defaults."""
    assert BaseStoreBackend.__abstractmethods__ == AIRFLOW_EIGHT
    assert PrimitiveStoreBackend.__abstractmethods__ == {"_get", "_set", "_delete", "_clear"}
    for name in AIRFLOW_EIGHT:
        ours = inspect.signature(getattr(BaseStoreBackend, name))
        assert [p.name for p in ours.parameters.values()] == {
            "get": ["self", "scope", "key", "session"],
            "aget": ["self", "scope", "key", "session"],
            "set": ["self", "scope", "key", "value", "expires_at", "session"],
            "aset": ["self", "scope", "key", "value", "expires_at", "session"],
            "delete": ["self", "scope", "key", "session"],
            "adelete": ["self", "scope", "key", "session"],
            "clear": ["self", "scope", "all_map_indices", "session"],
            "aclear": ["self", "scope", "all_map_indices", "session"],
        }[name]
        assert inspect.iscoroutinefunction(getattr(BaseStoreBackend, name)) == name.startswith("a")
    assert Skeleton().cleanup() is None


def test_an_incomplete_subclass_is_refused_on_instantiation_and_by_load_backend() -> None:
    class Incomplete(Skeleton):
        aclear = BaseStoreBackend.aclear  # left abstract

    with pytest.raises(TypeError, match=r"abstract method 'aclear'|abstract methods? aclear"):
        Incomplete()
    with pytest.raises(TypeError, match=r"which leaves abstract: aclear; implement them"):
        load_backend(Incomplete)


def test_the_protocol_accepts_any_eight_method_object() -> None:
    assert isinstance(Skeleton(), StoreBackend)
    assert isinstance(DuckTyped(), StoreBackend)
    assert not isinstance(object(), StoreBackend)
    assert load_backend(DuckTyped) is DuckTyped
    assert load_backend(f"{__name__}:DuckTyped") is DuckTyped


@pytest.mark.parametrize("backend_class", [Skeleton, WithHooks, DuckTyped])
def test_third_party_backend_as_the_server_store(config: Config, backend_class: type[Any]) -> None:
    server = backend_class()
    store = StateStore(backend=server, config=config)
    ts = store.task_store("d", "r", "t")
    ts.set("job", {"id": 1})
    assert ts.get("job") == {"id": 1}
    assert json.loads(server.get(TaskScope("d", "r", "t"), "job")) == {"id": 1}
    ts.delete("job")
    assert ts.get("job") is None
    ts.set("a", 1)
    ts.clear()
    assert ts.get("a") is None
    assert asyncio.run(_async_roundtrip(store)) == [2, None]
    with pytest.raises(StateStoreError, match=r"cannot list keys .* read keys by name instead"):
        ts.keys()


async def _async_roundtrip(store: StateStore) -> list[Any]:
    ts = store.task_store("d", "r", "async")
    await ts.aset("k", 2)
    got = await ts.aget("k")
    await ts.adelete("k")
    return [got, await ts.aget("k")]


@pytest.mark.parametrize("backend_class", [Skeleton, WithHooks, DuckTyped])
def test_third_party_backend_as_the_worker_store(config: Config, backend_class: type[Any]) -> None:
    """Offloaded through the backend's own hooks when it has them (else the base class's defaults)."""
    worker = backend_class()
    store = StateStore(backend="memory", worker_backend=worker, config=config)
    ts = store.task_store("d", "r", "t")
    ts.set("big", {"rows": list(range(5))})
    marker = json.loads(store.backend.get(TaskScope("d", "r", "t"), "big"))
    reference = marker[REF_MARKER]
    if hasattr(worker, "objects"):
        assert worker.objects[reference] == {"rows": list(range(5))}  # the hook stored it
    else:
        assert reference.startswith("skeleton://task/d/r/t/-1/")  # BaseStoreBackend's default reference
        assert json.loads(worker.get(TaskScope("d", "r", "t"), "big")) == {"rows": list(range(5))}
    assert ts.get("big") == {"rows": list(range(5))}
    ts.delete("big")
    assert ts.get("big") is None
    assert worker.get(TaskScope("d", "r", "t"), "big") is None


def test_cleanup_of_a_store_that_reports_nothing(config: Config) -> None:
    """``cleanup()`` returning None (Airflow's signature) is accepted; a dry run is refused with a remedy."""
    server = DuckTyped()
    store = StateStore(backend=server, config=config)
    assert store.cleanup() == CleanupResult()
    assert server.cleaned == 1
    with pytest.raises(StateStoreError, match=r"cannot count what clean would remove .* without --dry-run"):
        store.cleanup(dry_run=True)


def test_backend_classes_are_exported_and_lazy() -> None:
    for name in ("PrimitiveStoreBackend", "StoreBackend", "LocalStoreBackend", "MemoryStoreBackend"):
        assert name in statestore.core.__all__
    assert statestore.core.LocalStoreBackend.__module__ == "statestore.core.backends.local"
    assert issubclass(statestore.core.LocalStoreBackend, PrimitiveStoreBackend)


def test_no_import_hook_is_installed() -> None:
    assert not [f for f in sys.meta_path if type(f).__module__.startswith("statestore")]


def test_a_wrapped_backend_keeps_its_declared_opt_outs(config: Config) -> None:
    """The conformance suite run through StateStore sees what the backend itself declared."""

    class Declaring(DuckTyped):
        unsupported_capabilities: ClassVar[dict[str, str]] = {"listing": "no keys() method"}

    store = StateStore(backend=Declaring(), config=config)
    assert store.backend.unsupported_capabilities == {"listing": "no keys() method"}
    assert StateStore(backend=DuckTyped(), config=config).backend.unsupported_capabilities == {}
