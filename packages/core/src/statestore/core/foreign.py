"""Backends that are not statestore ``BaseStoreBackend`` subclasses, as ``StateStore`` uses them.

Any object with Airflow's eight methods (:class:`statestore.core.StoreBackend`) is a backend: an
Airflow-native subclass of ``airflow.sdk.state.BaseStoreBackend`` or a duck-typed class.
:func:`build_backend` turns an instance, a class or a name into something ``StateStore`` can drive,
wrapping those in :class:`ForeignBackend`.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from statestore.core import airflow_compat
from statestore.core.base import BaseStoreBackend, CleanupResult, JsonValue, StoreBackend
from statestore.core.scopes import StoreScope, TaskScope, to_scope
from statestore.core.values import decode_value, encode_value

__all__ = ["ForeignBackend", "build_backend"]


def build_backend(spec: Any, config: Any) -> BaseStoreBackend:
    """A backend for ``StateStore`` from an instance, a class, a plugin name or a class path.

    A statestore backend class gets ``config=`` when its constructor takes it (else it is built
    with no arguments, as Airflow builds it, and given the configuration after). Any other class,
    and a statestore backend that overrides Airflow's reference hooks but not ``store_value``, is
    wrapped in :class:`ForeignBackend`, so ``StateStore`` drives it exactly as Airflow does.
    """
    from statestore.core.plugins import load_backend

    if isinstance(spec, (str, type)):
        backend_class = load_backend(spec)
        if not issubclass(backend_class, BaseStoreBackend):
            spec = backend_class()
        elif "config" in inspect.signature(backend_class).parameters:
            spec = backend_class(config=config)
        else:
            spec = backend_class()
            spec.config = config
    if isinstance(spec, BaseStoreBackend) and not _uses_own_hooks(type(spec)):
        return spec
    if isinstance(spec, StoreBackend):
        return ForeignBackend(spec, config=config)
    raise TypeError(
        f"a backend is an instance or class with Airflow's eight methods (get, set, delete, clear, aget, aset, "
        f"adelete, aclear), a plugin name or a class path; got {type(spec).__name__}"
    )


def _uses_own_hooks(cls: type[BaseStoreBackend]) -> bool:
    """Whether a statestore backend class writes worker-side values through Airflow's hooks it overrides."""
    if cls.store_value is not BaseStoreBackend.store_value:
        return False
    return any(
        getattr(cls, hook) is not getattr(BaseStoreBackend, hook)
        for hook in ("serialize_task_state_store_to_ref", "serialize_asset_state_store_to_ref")
    )


def _airflow_scopes(backend: object) -> tuple[type[Any], type[Any]] | None:
    """Airflow's ``(TaskScope, AssetScope)`` when ``backend`` subclasses one of Airflow's ``BaseStoreBackend`` ABCs."""
    for cls in type(backend).__mro__:
        module = sys.modules.get(cls.__module__)
        if cls.__name__ == "BaseStoreBackend" and cls.__module__ in airflow_compat.AIRFLOW_STATE_MODULES and module:
            return module.TaskScope, module.AssetScope
    return None


class ForeignBackend(BaseStoreBackend):
    """Drives a backend that implements only Airflow's contract, the way Airflow drives it.

    Calls reach it with Airflow's own ``TaskScope``/``AssetScope`` when it subclasses one of Airflow's
    ABCs (so ``match scope: case TaskScope()`` works as in Airflow), else with statestore's. Its
    optional methods (``keys``, ``pop``, ``pop_scope``, ``get_many``, ``cleanup``) are used when it
    has them. As a worker-side backend it stores values through Airflow's four reference hooks (their
    Airflow defaults, JSON text as the "reference", when it has none), and deleting or clearing a key
    then deletes or clears the same ``(scope, key)`` in it, as Airflow's worker does.
    """

    deletes_by_name = True
    """``StateStore`` deletes and clears by ``(scope, key)`` in this worker backend, not by reference."""

    def __init__(self, backend: StoreBackend, *, config: Any = None) -> None:
        super().__init__(config=config)
        self.wrapped = backend
        self._airflow_scopes = _airflow_scopes(backend)
        for optional in ("keys", "akeys", "pop", "apop", "pop_scope", "apop_scope", "get_many"):
            method = getattr(backend, optional, None)
            if callable(method):
                setattr(self, optional, self._scoped(method, optional))

    def __repr__(self) -> str:
        return f"ForeignBackend({self.wrapped!r})"

    @property
    def unsupported_capabilities(self) -> Mapping[str, str]:
        """The wrapped backend's declared conformance-suite opt-outs (none when it declares none)."""
        declared = getattr(self.wrapped, "unsupported_capabilities", None)
        return declared if isinstance(declared, Mapping) else {}

    @property
    def location(self) -> str | None:
        """The wrapped backend's ``location``, when it tells one."""
        location = getattr(self.wrapped, "location", None)
        return location if isinstance(location, str) else None

    def _native(self, scope: Any) -> Any:
        """``scope`` as the wrapped backend expects it: Airflow's scope types, or statestore's."""
        scope = to_scope(scope)
        if self._airflow_scopes is None:
            return scope
        task_scope, asset_scope = self._airflow_scopes
        if isinstance(scope, TaskScope):
            return task_scope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
        return asset_scope(asset_id=scope.asset_id, name=scope.name, uri=scope.uri)

    def _scoped(self, method: Any, name: str) -> Any:
        if name == "get_many":
            return lambda items, **kw: method([(self._native(s), k) for s, k in items], **kw)
        return lambda scope, *args, **kw: method(self._native(scope), *args, **kw)

    def get(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """The wrapped backend's ``get``."""
        return self.wrapped.get(self._native(scope), key, session=session)

    def set(self, scope: StoreScope, key: str, value: str, *, expires_at: Any = None, session: Any = None) -> None:
        """The wrapped backend's ``set``."""
        self.wrapped.set(self._native(scope), key, value, expires_at=expires_at, session=session)

    def delete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """The wrapped backend's ``delete``."""
        self.wrapped.delete(self._native(scope), key, session=session)

    def clear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """The wrapped backend's ``clear``."""
        self.wrapped.clear(self._native(scope), all_map_indices=all_map_indices, session=session)

    async def aget(self, scope: StoreScope, key: str, *, session: Any = None) -> str | None:
        """The wrapped backend's ``aget``."""
        return await self.wrapped.aget(self._native(scope), key, session=session)

    async def aset(
        self, scope: StoreScope, key: str, value: str, *, expires_at: Any = None, session: Any = None
    ) -> None:
        """The wrapped backend's ``aset``."""
        await self.wrapped.aset(self._native(scope), key, value, expires_at=expires_at, session=session)

    async def adelete(self, scope: StoreScope, key: str, *, session: Any = None) -> None:
        """The wrapped backend's ``adelete``."""
        await self.wrapped.adelete(self._native(scope), key, session=session)

    async def aclear(self, scope: StoreScope, *, all_map_indices: bool = False, session: Any = None) -> None:
        """The wrapped backend's ``aclear``."""
        await self.wrapped.aclear(self._native(scope), all_map_indices=all_map_indices, session=session)

    def cleanup(self) -> CleanupResult | None:
        """The wrapped backend's ``cleanup`` (None when it has none or reports nothing)."""
        cleanup = getattr(self.wrapped, "cleanup", None)
        result = cleanup() if callable(cleanup) else None
        return result if isinstance(result, CleanupResult) else None

    # -- the worker role, through Airflow's hooks ---------------------------------------------------------

    def _hook(self, scope: StoreScope, action: str) -> Any:
        kind = "task" if isinstance(scope, TaskScope) else "asset"
        return getattr(
            self.wrapped, f"{action}_{kind}_state_store_{'to' if action == 'serialize' else 'from'}_ref", None
        )

    def store_value(
        self, scope: StoreScope, key: str, value_json: str, *, expires_at: Any = None, allow_inline: bool = True
    ) -> str | None:
        """The reference the wrapped backend's serialize hook returns (Airflow's default: the JSON text)."""
        scope = to_scope(scope)
        hook = self._hook(scope, "serialize")
        if hook is None:
            return value_json
        reference: Any = hook(value=decode_value(value_json), key=key, scope=self._native(scope))
        return None if reference is None and allow_inline else str(reference)

    async def astore_value(
        self, scope: StoreScope, key: str, value_json: str, *, expires_at: Any = None, allow_inline: bool = True
    ) -> str | None:
        """Async twin of :meth:`store_value` (Airflow's hooks are synchronous)."""
        return self.store_value(scope, key, value_json, expires_at=expires_at, allow_inline=allow_inline)

    def load_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """The value the wrapped backend's deserialize hook reads for ``reference``, as JSON text."""
        if scope is None:
            raise TypeError("load_value of a foreign backend takes scope= (it picks Airflow's task or asset hook)")
        hook = self._hook(to_scope(scope), "deserialize")
        value: JsonValue = decode_value(reference) if hook is None else hook(reference)
        return encode_value(value)

    async def aload_value(self, reference: str, *, scope: StoreScope | None = None, key: str | None = None) -> str:
        """Async twin of :meth:`load_value`."""
        return self.load_value(reference, scope=scope, key=key)

    def discard_value(self, reference: str) -> None:
        """Nothing: ``StateStore`` deletes this backend's values by ``(scope, key)`` (``deletes_by_name``)."""

    async def adiscard_value(self, reference: str) -> None:
        """Nothing, as :meth:`discard_value`."""
