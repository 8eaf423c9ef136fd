"""The tests of :class:`BackendSuite`; see :mod:`statestore.core.testing` for how to use them.

Most behaviours are written once as an async *scenario* against a small :class:`Api` and run
twice: synchronously (``SyncApi`` calls ``get``/``set``/...; the coroutine never suspends, so it
is driven without an event loop) and asynchronously under pytest-asyncio (``AsyncApi`` awaits
``aget``/``aset``/...). A failing assertion names the scope, key and API flavour involved.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Final, cast

import pytest

from statestore.core.base import (
    EARLIEST_EXPIRY,
    LATEST_EXPIRY,
    BaseStoreBackend,
    CleanupResult,
    ReferenceNotFoundError,
    StoredEntry,
    utcnow,
)
from statestore.core.errors import InvalidReferenceError
from statestore.core.scopes import MAX_ASSET_ID, MAX_MAP_INDEX, AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.values import MAX_DEPTH

__all__ = ["CAPABILITIES", "ODD_KEYS", "UNSTORABLE", "AirflowLikeAssetScope", "AirflowLikeTaskScope", "BackendSuite"]

CAPABILITIES: Final = frozenset({"listing", "cleanup", "references", "async"})
"""Capability names a suite subclass may list in ``unsupported``."""

ODD_KEYS: Final = (
    "/",
    "a/b",
    "/leading",
    "trailing/",
    "..",
    "../escape",
    "a/../b",
    ".",
    "%",
    "%2F",
    "%%41",
    "ü",
    "日本語",
    "🎉",
    ":",
    "a:b",
    "{}",
    "{{x}}",
    "[a-z]*?",
    "with space",
    " ",
    "tab\tand\nnewline",
    "back\\slash",
    "#&=+;,",
    "~",
    "'\"`",
    "\x01\x1f\x7f",
    "\u0085\u2028",
    "\ufeff\u202e\u200b",
    "\uffff\ufffe",
    "\U0010ffff",
    "e\u0301",
    "k" * 512,
)
"""Keys every backend must store, list and delete exactly (all legal, all hostile to naive naming)."""
UNSTORABLE: Final = ("a\x00b", "\x00", "a\ud800b", "\udfff")
"""Text no store can hold (NUL, lone surrogates): refused in keys and ids with the same message everywhere."""
_UNSTORABLE_MESSAGE: Final = "contains (a NUL character|a lone surrogate)"

SCOPE_KINDS: Final = ("task", "mapped_task", "asset_name", "asset_uri", "asset_id", "asset_name_uri")
_VALUES: Final = ('"x"', "0", "-1.5e-07", "true", "[]", '{"a":[1,2,{"b":null}],"c":"ü🎉"}', '""', '"line\\nbreak"')


@dataclass(frozen=True)
class AirflowLikeTaskScope:
    """A task scope as a later Airflow might send it: the same fields plus one statestore ignores."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    region_id: str | None = "eu-west-1"


@dataclass(frozen=True)
class AirflowLikeAssetScope:
    """An asset scope as a later Airflow might send it: the same fields plus one statestore ignores."""

    asset_id: int | None = None
    name: str | None = None
    uri: str | None = None
    region_id: str | None = "eu-west-1"


class Ids:
    """Scopes unique to one test: every dag id, asset name and uri carries a random token."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(6)
        self.asset_id = secrets.randbelow(2**31 - 2) + 1  # fits a 32-bit INTEGER column, like Airflow's asset ids

    def task(self, task_id: str = "t", map_index: int = -1, *, dag: str = "d", run: str = "r") -> TaskScope:
        """A task scope whose dag id starts with this test's token."""
        return TaskScope(f"{self.token}{dag}", run, task_id, map_index)

    def asset(self, kind: str = "name", text: str = "asset") -> AssetScope:
        """An asset scope addressed by ``name``, ``uri``, ``id`` or ``name_uri`` (both, as Airflow's workers send)."""
        if kind == "name":
            return AssetScope(name=f"{self.token}{text}")
        if kind == "uri":
            return AssetScope(uri=f"s3://{self.token}/{text}")
        if kind == "name_uri":
            return AssetScope(name=f"{self.token}{text}", uri=f"s3://{self.token}/{text}")
        return AssetScope(asset_id=self.asset_id)

    def scope(self, kind: str) -> StoreScope:
        """The scope of one of ``SCOPE_KINDS``."""
        if kind == "task":
            return self.task()
        if kind == "mapped_task":
            return self.task(map_index=3)
        return self.asset(kind.removeprefix("asset_"))

    def sibling(self, scope: StoreScope) -> StoreScope:
        """A different scope of the same kind, as close to ``scope`` as possible."""
        if isinstance(scope, TaskScope):
            return TaskScope(scope.dag_id, scope.run_id, scope.task_id + "2", scope.map_index)
        if scope.name:  # a different asset differs in every identifying field (Airflow keeps name and uri unique)
            return AssetScope(name=scope.name + "2", uri=None if scope.uri is None else scope.uri + "2")
        if scope.uri:
            return AssetScope(uri=scope.uri + "2")
        return AssetScope(asset_id=self.asset_id + 1)


class Api:
    """One flavour (sync or async) of the backend API, as coroutines; ``label`` names it in failures."""

    label: ClassVar[str]

    def __init__(self, backend: BaseStoreBackend, unsupported: dict[str, str]) -> None:
        self.backend = backend
        self.unsupported = unsupported

    def can(self, capability: str) -> bool:
        """Whether the backend under test supports ``capability``."""
        return capability not in self.unsupported

    async def get(self, scope: Any, key: str) -> str | None:
        raise NotImplementedError

    async def set(self, scope: Any, key: str, value: Any, expires_at: datetime | None = None) -> None:
        raise NotImplementedError

    async def delete(self, scope: Any, key: str) -> None:
        raise NotImplementedError

    async def clear(self, scope: Any, all_map_indices: bool = False) -> None:
        raise NotImplementedError

    async def keys(self, scope: Any) -> list[str]:
        raise NotImplementedError

    async def raw_get(self, scope: StoreScope, key: str) -> StoredEntry | None:
        """The ``_get`` primitive: what storage still holds, expired or not."""
        raise NotImplementedError

    async def store_value(self, scope: Any, key: str, value_json: str) -> str | None:
        raise NotImplementedError

    async def load_value(self, reference: Any, **expected: Any) -> str:
        raise NotImplementedError

    async def discard_value(self, reference: str) -> None:
        raise NotImplementedError


class SyncApi(Api):
    """The synchronous methods; its coroutines never suspend."""

    label = "sync"

    async def get(self, scope: Any, key: str) -> str | None:
        return self.backend.get(scope, key)

    async def set(self, scope: Any, key: str, value: Any, expires_at: datetime | None = None) -> None:
        self.backend.set(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: Any, key: str) -> None:
        self.backend.delete(scope, key)

    async def clear(self, scope: Any, all_map_indices: bool = False) -> None:
        self.backend.clear(scope, all_map_indices=all_map_indices)

    async def keys(self, scope: Any) -> list[str]:
        return cast(Any, self.backend).keys(scope)  # type: ignore[no-any-return]

    async def raw_get(self, scope: StoreScope, key: str) -> StoredEntry | None:
        return cast(Any, self.backend)._get(scope, key, None)  # type: ignore[no-any-return]

    async def store_value(self, scope: Any, key: str, value_json: str) -> str | None:
        return self.backend.store_value(scope, key, value_json, allow_inline=False)

    async def load_value(self, reference: Any, **expected: Any) -> str:
        return self.backend.load_value(reference, **expected)

    async def discard_value(self, reference: str) -> None:
        self.backend.discard_value(reference)


class AsyncApi(Api):
    """The ``a*`` twins, awaited in pytest-asyncio's event loop."""

    label = "async"

    async def get(self, scope: Any, key: str) -> str | None:
        return await self.backend.aget(scope, key)

    async def set(self, scope: Any, key: str, value: Any, expires_at: datetime | None = None) -> None:
        await self.backend.aset(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: Any, key: str) -> None:
        await self.backend.adelete(scope, key)

    async def clear(self, scope: Any, all_map_indices: bool = False) -> None:
        await self.backend.aclear(scope, all_map_indices=all_map_indices)

    async def keys(self, scope: Any) -> list[str]:
        return await cast(Any, self.backend).akeys(scope)  # type: ignore[no-any-return]

    async def raw_get(self, scope: StoreScope, key: str) -> StoredEntry | None:
        return await cast(Any, self.backend)._aget(scope, key, None)  # type: ignore[no-any-return]

    async def store_value(self, scope: Any, key: str, value_json: str) -> str | None:
        return await self.backend.astore_value(scope, key, value_json, allow_inline=False)

    async def load_value(self, reference: Any, **expected: Any) -> str:
        return await self.backend.aload_value(reference, **expected)

    async def discard_value(self, reference: str) -> None:
        await self.backend.adiscard_value(reference)


def _run_sync(coro: Coroutine[Any, Any, None]) -> None:
    """Drive a scenario whose awaits never suspend (``SyncApi``) to completion without an event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("a synchronous scenario awaited something that suspended")


Scenario = Callable[[Api, Ids, Any], Awaitable[None]]
Test = Callable[..., Any]


def _needing(test: Test, capabilities: tuple[str, ...], doc: str | None) -> Test:
    test.__doc__ = doc
    test._statestore_needs = capabilities  # type: ignore[attr-defined]
    return test


def _scoped_pair(scenario: Scenario) -> tuple[Test, Test]:
    """A sync and an async test running ``scenario`` once per kind of scope."""

    def sync_test(self: BackendSuite, backend: BaseStoreBackend, suite_ids: Ids, scope_kind: str) -> None:
        _run_sync(scenario(SyncApi(backend, self.unsupported), suite_ids, suite_ids.scope(scope_kind)))  # type: ignore[arg-type]

    async def async_test(self: BackendSuite, backend: BaseStoreBackend, suite_ids: Ids, scope_kind: str) -> None:
        await scenario(AsyncApi(backend, self.unsupported), suite_ids, suite_ids.scope(scope_kind))

    mark = pytest.mark.parametrize("scope_kind", SCOPE_KINDS)
    return mark(sync_test), mark(async_test)


def _plain_pair(scenario: Scenario) -> tuple[Test, Test]:
    """A sync and an async test running ``scenario`` once (it makes its own scopes)."""

    def sync_test(self: BackendSuite, backend: BaseStoreBackend, suite_ids: Ids) -> None:
        _run_sync(scenario(SyncApi(backend, self.unsupported), suite_ids, None))  # type: ignore[arg-type]

    async def async_test(self: BackendSuite, backend: BaseStoreBackend, suite_ids: Ids) -> None:
        await scenario(AsyncApi(backend, self.unsupported), suite_ids, None)

    return sync_test, async_test


def _twins(*needs: str, scoped: bool = False) -> Callable[[Scenario], tuple[Test, Test]]:
    """Turn a scenario into a sync test and an async test (``scoped``: once per kind of scope)."""

    def build(scenario: Scenario) -> tuple[Test, Test]:
        sync_test, async_test = (_scoped_pair if scoped else _plain_pair)(scenario)
        return (
            _needing(sync_test, needs, scenario.__doc__),
            _needing(pytest.mark.asyncio(async_test), (*needs, "async"), scenario.__doc__),
        )

    return build


def _needs(*capabilities: str) -> Callable[[Test], Test]:
    """Mark a plain test as needing ``capabilities`` (skipped with the stated reason otherwise)."""
    return lambda test: _needing(test, capabilities, test.__doc__)


def _past() -> datetime:
    return utcnow() - timedelta(hours=1)


def _future() -> datetime:
    return utcnow() + timedelta(hours=1)


def _battery(ids: Ids) -> list[tuple[tuple[StoreScope, str], tuple[StoreScope, str]]]:
    """Pairs of distinct ``(scope, key)`` that naive joins, encodings or collations would merge."""
    t = ids.task

    def name(text: str) -> AssetScope:
        return AssetScope(name=ids.token + text)

    def uri(text: str) -> AssetScope:
        return AssetScope(uri=ids.token + text)

    long = "a" * 200
    return [
        ((t(dag="a/b", run="c"), "k"), (t(dag="a", run="b/c"), "k")),
        ((t(dag="a", run="r/t"), "k"), (t(dag="a", run="r", task_id="t/k"), "k")),
        ((t("t/x"), "k"), (t("t"), "x/k")),
        ((t("t", 1), "k"), (t("t/1"), "k")),
        ((t("t"), "1/k"), (t("t", 1), "k")),
        ((t("t"), "k"), (t("t", 0), "k")),
        ((t(dag="a%2Fb"), "k"), (t(dag="a/b"), "k")),
        ((t(dag="a_b"), "k"), (t(dag="a b"), "k")),
        ((t(dag="a.b"), "k"), (t(dag="a-b"), "k")),
        ((t(), "k"), (t(), "K")),
        ((t(), "k"), (t(), "k ")),
        ((t(), "k"), (t(), "k/")),
        ((t(), "é"), (t(), "e\u0301")),
        ((t(), "ss"), (t(), "ß")),
        ((t(), "a/b"), (t(), "a%2Fb")),
        ((t(), "k" * 511 + "a"), (t(), "k" * 511 + "b")),
        ((t(), "a" + "k" * 511), (t(), "b" + "k" * 511)),
        ((t(dag=long + "1"), "k"), (t(dag=long + "2"), "k")),
        ((t(long + "1"), "k"), (t(long + "2"), "k")),
        ((name("x"), "k"), (uri("x"), "k")),
        ((name("x"), "y/z"), (name("x/y"), "z")),
        ((uri("s3://b/k"), "x"), (uri("s3://b"), "k/x")),
        ((name("X"), "k"), (name("x"), "k")),
        ((AssetScope(name=str(ids.asset_id)), "k"), (AssetScope(asset_id=ids.asset_id), "k")),
        ((t(dag="", run="name", task_id="x"), "k"), (AssetScope(name=f"{ids.token}/name/x"), "k")),
    ]


def _flat(ids: Ids) -> list[tuple[StoreScope, str]]:
    """Every distinct ``(scope, key)`` of the battery, once."""
    return list(dict.fromkeys(entry for pair in _battery(ids) for entry in pair))


def _where(api: Api, scope: Any, key: str) -> str:
    return f"[{api.label}] scope={scope!r} key={key!r}"


# -- scenarios run sync and async ---------------------------------------------------------------------


async def _missing_key_is_none(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A key never written reads as None."""
    assert await api.get(scope, "never-written") is None, _where(api, scope, "never-written")


async def _set_then_get(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Values (JSON text) come back verbatim, each under its own key."""
    for index, value in enumerate(_VALUES):
        await api.set(scope, f"k{index}", value)
    for index, value in enumerate(_VALUES):
        assert await api.get(scope, f"k{index}") == value, _where(api, scope, f"k{index}")


async def _overwrite(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A second set replaces the value."""
    await api.set(scope, "k", '"first"')
    await api.set(scope, "k", '"second"')
    assert await api.get(scope, "k") == '"second"', _where(api, scope, "k")


async def _large_value(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A value of ~40 KB (multi-byte characters included) round-trips exactly."""
    value = json.dumps({"blob": "ü🎉x" * 5000, "n": list(range(1000))}, ensure_ascii=False)
    await api.set(scope, "big", value)
    assert await api.get(scope, "big") == value, _where(api, scope, "big")


async def _delete(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Delete removes one key only; deleting a missing key or a key of an unused scope is a no-op."""
    await api.set(scope, "gone", '"a"')
    await api.set(scope, "kept", '"b"')
    await api.delete(scope, "gone")
    assert await api.get(scope, "gone") is None, _where(api, scope, "gone")
    assert await api.get(scope, "kept") == '"b"', _where(api, scope, "kept")
    await api.delete(scope, "gone")
    await api.delete(scope, "never-written")
    await api.delete(ids.sibling(scope), "never-written")
    assert await api.get(scope, "kept") == '"b"', _where(api, scope, "kept")


async def _clear(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Clear removes every key of the scope and nothing else; clearing an empty scope is a no-op."""
    sibling = ids.sibling(scope)
    await api.set(scope, "a", '"1"')
    await api.set(scope, "b/c", '"2"')
    await api.set(sibling, "a", '"other"')
    await api.clear(scope)
    for key in ("a", "b/c"):
        assert await api.get(scope, key) is None, _where(api, scope, key)
    assert await api.get(sibling, "a") == '"other"', _where(api, sibling, "a")
    await api.clear(scope)
    await api.clear(scope, all_map_indices=True)
    assert await api.get(sibling, "a") == '"other"', _where(api, sibling, "a")


async def _keys(api: Api, ids: Ids, scope: StoreScope) -> None:
    """keys() lists exactly this scope's keys, sorted; an unused scope has none."""
    assert await api.keys(scope) == [], _where(api, scope, "-")
    for key in ("b", "a", "x/y", "ü"):
        await api.set(scope, key, '"v"')
    await api.set(ids.sibling(scope), "other", '"v"')
    assert await api.keys(scope) == ["a", "b", "x/y", "ü"], _where(api, scope, "-")
    await api.delete(scope, "a")
    assert await api.keys(scope) == ["b", "x/y", "ü"], _where(api, scope, "-")


async def _odd_keys(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Keys with '/', '..', '%', unicode, ':', '{}', whitespace and 512 characters are stored exactly."""
    for index, key in enumerate(ODD_KEYS):
        await api.set(scope, key, json.dumps(index))
    for index, key in enumerate(ODD_KEYS):
        assert await api.get(scope, key) == json.dumps(index), _where(api, scope, key)
    if api.can("listing"):
        assert await api.keys(scope) == sorted(ODD_KEYS), _where(api, scope, "-")
    for key in ODD_KEYS:
        await api.delete(scope, key)
        assert await api.get(scope, key) is None, _where(api, scope, key)
    if api.can("listing"):
        assert await api.keys(scope) == [], _where(api, scope, "-")


async def _bad_keys_rejected(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Empty, 513-character and non-str keys are rejected, and nothing is written."""
    with pytest.raises(ValueError, match="512"):
        await api.set(scope, "k" * 513, '"v"')
    with pytest.raises(ValueError, match="non-empty"):
        await api.set(scope, "", '"v"')
    with pytest.raises(TypeError, match="str"):
        await api.set(scope, 5, '"v"')  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="512"):
        await api.get(scope, "k" * 513)
    assert await api.get(scope, "k" * 512) is None, _where(api, scope, "k" * 512)
    if api.can("listing"):
        assert await api.keys(scope) == [], _where(api, scope, "-")


async def _bad_values_rejected(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A value that is not JSON text (str) raises TypeError and writes nothing."""
    for value in (5, b'"bytes"', {"a": 1}, None):
        with pytest.raises(TypeError, match="str"):
            await api.set(scope, "k", value)
    assert await api.get(scope, "k") is None, _where(api, scope, "k")
    await api.set(scope, "k", '"kept"')
    with pytest.raises(TypeError):
        await api.set(scope, "k", 7)
    assert await api.get(scope, "k") == '"kept"', _where(api, scope, "k")


async def _expiry(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A past expires_at is never returned; a future one and None (never) are."""
    await api.set(scope, "past", '"p"', expires_at=_past())
    await api.set(scope, "future", '"f"', expires_at=_future())
    await api.set(scope, "never", '"n"', expires_at=None)
    assert await api.get(scope, "past") is None, _where(api, scope, "past")
    assert await api.get(scope, "future") == '"f"', _where(api, scope, "future")
    assert await api.get(scope, "never") == '"n"', _where(api, scope, "never")
    entry = await api.raw_get(to_scope(scope), "never")
    assert entry is not None, f"{_where(api, scope, 'never')}: the _get primitive lost a live entry"
    assert entry.value == '"n"', _where(api, scope, "never")
    assert entry.expires_at is None, f"{_where(api, scope, 'never')}: an entry without expiry got {entry.expires_at}"
    expires_at = _future()
    await api.set(scope, "future", '"f"', expires_at=expires_at)
    entry = await api.raw_get(to_scope(scope), "future")
    assert entry is not None, _where(api, scope, "future")
    assert entry.expires_at is not None, f"{_where(api, scope, 'future')}: the expiry was not stored"
    drift = abs(entry.expires_at - expires_at)
    assert drift < timedelta(seconds=2), f"{_where(api, scope, 'future')}: stored expiry is off by {drift}"


async def _expiry_replaced_on_overwrite(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Overwriting replaces the expiry too: expired → never-expiring revives, live → expired hides."""
    await api.set(scope, "k", '"old"', expires_at=_past())
    await api.set(scope, "k", '"new"', expires_at=None)
    assert await api.get(scope, "k") == '"new"', _where(api, scope, "k")
    await api.set(scope, "j", '"old"', expires_at=_future())
    await api.set(scope, "j", '"new"', expires_at=_past())
    assert await api.get(scope, "j") is None, _where(api, scope, "j")


async def _expiry_timezones(api: Api, ids: Ids, scope: StoreScope) -> None:
    """An aware expires_at in any timezone is compared as the instant it is; naive ones are rejected."""
    far_east, far_west = timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))
    await api.set(scope, "past-east", '"p"', expires_at=_past().astimezone(far_east))
    await api.set(scope, "future-west", '"f"', expires_at=_future().astimezone(far_west))
    assert await api.get(scope, "past-east") is None, _where(api, scope, "past-east")
    assert await api.get(scope, "future-west") == '"f"', _where(api, scope, "future-west")
    with pytest.raises(ValueError, match="timezone"):
        await api.set(scope, "naive", '"n"', expires_at=datetime.now() + timedelta(days=1))
    assert await api.get(scope, "naive") is None, _where(api, scope, "naive")


async def _airflow_like_scopes(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Scope objects with the same fields plus extra ones (Airflow's) address the same data as ours."""
    if isinstance(scope, TaskScope):
        like: Any = AirflowLikeTaskScope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
    else:
        like = AirflowLikeAssetScope(scope.asset_id, scope.name, scope.uri)
    await api.set(like, "via-like", '"1"')
    await api.set(scope, "via-ours", '"2"')
    assert await api.get(scope, "via-like") == '"1"', _where(api, scope, "via-like")
    assert await api.get(like, "via-ours") == '"2"', _where(api, like, "via-ours")
    if api.can("listing"):
        assert await api.keys(like) == ["via-like", "via-ours"], _where(api, like, "-")
    await api.delete(like, "via-ours")
    assert await api.get(scope, "via-ours") is None, _where(api, scope, "via-ours")
    await api.clear(like)
    assert await api.get(scope, "via-like") is None, _where(api, scope, "via-like")


async def _map_index_isolation(api: Api, ids: Ids, scope: None) -> None:
    """Map indices are separate namespaces; clear touches one unless all_map_indices, and never a neighbour."""
    task = ids.task("t")
    indices = [ids.task("t", mi) for mi in (-1, 0, 1, 2)]
    neighbours = [ids.task("t2"), ids.task("t", run="r2"), ids.task("t", dag="d2"), ids.task("tt", 0), ids.asset()]
    for index, each in enumerate([*indices, *neighbours]):
        await api.set(each, "k", json.dumps(index))
    for index, each in enumerate(indices):
        assert await api.get(each, "k") == json.dumps(index), _where(api, each, "k")
    await api.clear(ids.task("t", 0))
    assert await api.get(ids.task("t", 0), "k") is None, _where(api, ids.task("t", 0), "k")
    for each in (indices[0], *indices[2:]):
        assert await api.get(each, "k") is not None, f"{_where(api, each, 'k')}: clear of map index 0 removed it"
    await api.clear(ids.task("t", 1), all_map_indices=True)
    for each in indices:
        assert await api.get(each, "k") is None, f"{_where(api, each, 'k')}: survived clear(all_map_indices=True)"
    for index, each in enumerate(neighbours, start=len(indices)):
        assert await api.get(each, "k") == json.dumps(index), f"{_where(api, each, 'k')}: cleared with {task!r}"


async def _asset_all_map_indices(api: Api, ids: Ids, scope: None) -> None:
    """all_map_indices has no effect on an asset scope: that asset is cleared, others are not."""
    asset, other = ids.asset("name", "a"), ids.asset("name", "a2")
    await api.set(asset, "k", '"1"')
    await api.set(other, "k", '"2"')
    await api.clear(asset, all_map_indices=True)
    assert await api.get(asset, "k") is None, _where(api, asset, "k")
    assert await api.get(other, "k") == '"2"', _where(api, other, "k")


async def _injective(api: Api, ids: Ids, scope: None) -> None:
    """Scopes and keys built to collide under naive joins, encodings, truncation or collations stay distinct."""
    for (scope_a, key_a), (scope_b, key_b) in _battery(ids):
        await api.set(scope_a, key_a, '"A"')
        await api.set(scope_b, key_b, '"B"')
        got = (await api.get(scope_a, key_a), await api.get(scope_b, key_b))
        assert got == ('"A"', '"B"'), f"{_where(api, scope_a, key_a)} collides with {_where(api, scope_b, key_b)}"
        await api.delete(scope_a, key_a)
        assert await api.get(scope_b, key_b) == '"B"', f"deleting {key_a!r} in {scope_a!r} removed {key_b!r}"
        await api.set(scope_a, key_a, '"A"')
        if scope_a != scope_b:
            await api.clear(scope_a)
            assert await api.get(scope_b, key_b) == '"B"', f"clearing {scope_a!r} removed {key_b!r} of {scope_b!r}"
            if api.can("listing"):
                assert await api.keys(scope_b) == [key_b], _where(api, scope_b, "-")
        await api.clear(scope_a)
        await api.clear(scope_b)


async def _references(api: Api, ids: Ids, scope: StoreScope) -> None:
    """store_value's reference reads its value, only for its own (scope, key); discard_value deletes it.

    With ``versioned_references`` every write is a new version: an older reference still reads its
    own value, and discarding it leaves the newer one. Otherwise references are a pure function of
    (scope, key) and read the latest value.
    """
    where = _where(api, scope, "k/ref")
    first = await api.store_value(scope, "k/ref", '"one"')
    second = await api.store_value(scope, "k/ref", '"two"')
    assert isinstance(first, str), f"{where}: store_value(allow_inline=False) gave {first!r}"
    assert isinstance(second, str), f"{where}: store_value(allow_inline=False) gave {second!r}"
    assert await api.load_value(second, scope=scope, key="k/ref") == '"two"', where
    if api.backend.versioned_references:
        assert first != second, f"{where}: a versioned backend gave one reference to two writes: {first!r}"
        assert await api.load_value(first) == '"one"', f"{where}: a later write changed an earlier version"
        await api.discard_value(first)
        with pytest.raises(ReferenceNotFoundError):
            await api.load_value(first)
        assert await api.load_value(second) == '"two"', f"{where}: discarding an old version removed the new one"
    else:
        assert first == second, f"{where}: references differ between writes: {first!r} {second!r}"
        assert api.backend.reference_for(scope, "k/ref") == first, where
    with pytest.raises(InvalidReferenceError):
        await api.load_value(second, scope=ids.sibling(scope), key="k/ref")
    with pytest.raises(InvalidReferenceError):
        await api.load_value(second, scope=scope, key="k/other")
    await api.discard_value(second)
    with pytest.raises(ReferenceNotFoundError):
        await api.load_value(second)
    await api.discard_value(second)  # already gone: not an error


async def _references_injective(api: Api, ids: Ids, scope: None) -> None:
    """References of distinct (scope, key) differ, and each resolves to its own value, never another scope's."""
    entries = _flat(ids)
    refs = [await api.store_value(s, k, json.dumps(i)) for i, (s, k) in enumerate(entries)]
    assert len(set(refs)) == len(entries), "two distinct (scope, key) pairs share a reference"
    for index, ref in enumerate(refs):
        assert await api.load_value(ref) == json.dumps(index), f"[{api.label}] {ref!r} -> {entries[index]}"


async def _tampered_references(api: Api, ids: Ids, scope: None) -> None:
    """Malformed, foreign or path-traversing references raise InvalidReferenceError."""
    ref = await api.store_value(ids.task(), "k", '"v"')
    assert isinstance(ref, str)
    scheme, _, rest = ref.partition("://")
    bad = [
        "",
        "not a reference",
        "http://example.com/x",
        f"{scheme}x://{rest}" if rest else f"{ref}x://",
        f"{ref}/../../../../etc/passwd",
        f"{ref}/..",
        ref.rsplit("/", 1)[0] + "/..",
        ref.rsplit("/", 1)[0] + "/%ZZ",
        None,
    ]
    for stored in bad:
        with pytest.raises(InvalidReferenceError):
            await api.load_value(stored)


# -- edge inputs: one rule everywhere, refused before anything is written ---------------------------


async def _nothing_written(api: Api, scope: StoreScope, what: str) -> None:
    if api.can("listing"):
        assert await api.keys(scope) == [], f"{_where(api, scope, '-')}: {what} wrote something"


async def _unstorable_keys_refused(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Keys holding NUL or a lone surrogate are refused by set, get and delete with one message; nothing is written."""
    for key in UNSTORABLE:
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.set(scope, key, '"v"')
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.get(scope, key)
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.delete(scope, key)
    assert await api.get(scope, "a") is None, _where(api, scope, "a")
    await _nothing_written(api, scope, "a refused key")


async def _unstorable_ids_refused(api: Api, ids: Ids, scope: None) -> None:
    """Scope ids and asset names/uris holding NUL or a lone surrogate are refused by every method, naming the field."""
    for text in UNSTORABLE:
        scopes: list[tuple[str, Any]] = [
            ("dag_id", AirflowLikeTaskScope(ids.token + text, "r", "t")),
            ("run_id", AirflowLikeTaskScope(ids.token, text, "t")),
            ("task_id", AirflowLikeTaskScope(ids.token, "r", text)),
            ("name", AirflowLikeAssetScope(name=ids.token + text, uri=f"s3://{ids.token}")),
            ("uri", AirflowLikeAssetScope(uri=f"s3://{ids.token}/{text}")),
        ]
        for field, bad in scopes:
            match = rf"Scope\.{field} {_UNSTORABLE_MESSAGE}"
            with pytest.raises(ValueError, match=match):
                await api.set(bad, "k", '"v"')
            with pytest.raises(ValueError, match=match):
                await api.get(bad, "k")
            with pytest.raises(ValueError, match=match):
                await api.delete(bad, "k")
            with pytest.raises(ValueError, match=match):
                await api.clear(bad)
    for clean in (ids.task(), AssetScope(name=ids.token), AssetScope(uri=f"s3://{ids.token}")):
        await _nothing_written(api, clean, "a refused scope")


async def _odd_ids(api: Api, ids: Ids, scope: None) -> None:
    """Every other character (controls, noncharacters, U+10FFFF, BOM, bidi, combining) is stored exactly in ids."""
    odd = "/\x01\x1f\x7f\u0085\u2028\ufeff\u202e\uffff\U0010ffff e\u0301%..:{}"
    scopes: list[StoreScope] = [
        TaskScope(ids.token + odd, odd, odd, 0),
        TaskScope(ids.token + odd, odd, odd + "x", 0),
        AssetScope(name=ids.token + odd),
        AssetScope(uri=ids.token + odd),
    ]
    for index, each in enumerate(scopes):
        await api.set(each, odd, json.dumps(index))
    for index, each in enumerate(scopes):
        assert await api.get(each, odd) == json.dumps(index), _where(api, each, odd)
        if api.can("listing"):
            assert await api.keys(each) == [odd], _where(api, each, "-")
        await api.clear(each)
        assert await api.get(each, odd) is None, _where(api, each, odd)


async def _map_index_range(api: Api, ids: Ids, scope: None) -> None:
    """map_index is -1..2**31-1 (Airflow's 32-bit column): the ends are stored apart, beyond them is refused."""
    ends = [ids.task("t", -1), ids.task("t", 0), ids.task("t", MAX_MAP_INDEX)]
    for index, each in enumerate(ends):
        await api.set(each, "k", json.dumps(index))
    for index, each in enumerate(ends):
        assert await api.get(each, "k") == json.dumps(index), _where(api, each, "k")
    for bad in (MAX_MAP_INDEX + 1, 2**63, -2):
        like = AirflowLikeTaskScope(ids.token + "d", "r", "t", bad)
        with pytest.raises(ValueError, match=rf"map_index must be -1 \(unmapped\) or 0\.\.{MAX_MAP_INDEX}"):
            await api.set(like, "k", '"v"')
        with pytest.raises(ValueError, match="map_index must be"):
            await api.get(like, "k")
    await api.clear(ends[0], all_map_indices=True)
    for each in ends:
        assert await api.get(each, "k") is None, _where(api, each, "k")


async def _asset_id_range(api: Api, ids: Ids, scope: None) -> None:
    """asset_id is 0..2**31-1 (Airflow's 32-bit column): the top one is stored, beyond or negative is refused."""
    top = AssetScope(asset_id=MAX_ASSET_ID)  # shared by concurrent runs: a key of this test's own, no clear
    key = f"k{ids.token}"
    await api.set(top, key, '"top"')
    assert await api.get(top, key) == '"top"', _where(api, top, key)
    await api.delete(top, key)
    assert await api.get(top, key) is None, _where(api, top, key)
    for bad in (-1, MAX_ASSET_ID + 1, 2**63):
        with pytest.raises(ValueError, match=rf"asset_id must be 0\.\.{MAX_ASSET_ID}"):
            await api.set(AirflowLikeAssetScope(asset_id=bad), key, '"v"')


def _nested(depth: int) -> str:
    return "[" * depth + '{"a":"[[[[\\"]"}' + "]" * depth


async def _nesting_limit(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Value text nested up to MAX_DEPTH levels round-trips; deeper raises ValueError naming the limit, unwritten."""
    deepest = _nested(MAX_DEPTH - 1)  # the dict is the last level; brackets inside its string do not count
    await api.set(scope, "deep", deepest)
    assert await api.get(scope, "deep") == deepest, _where(api, scope, "deep")
    assert json.loads(deepest) is not None, "the deepest value the suite writes must decode"
    for depth in (MAX_DEPTH, 990, 10_000):
        with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
            await api.set(scope, "too-deep", _nested(depth))
        with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
            await api.set(scope, "deep", _nested(depth))
    assert await api.get(scope, "too-deep") is None, _where(api, scope, "too-deep")
    assert await api.get(scope, "deep") == deepest, f"{_where(api, scope, 'deep')}: a refused write replaced it"


async def _unstorable_value_text_refused(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Value text with a raw NUL (never valid JSON) or a lone surrogate is refused; escaped forms round-trip."""
    for text in ('"a\x00b"', '"\ud800"'):
        with pytest.raises(ValueError, match=f"value text {_UNSTORABLE_MESSAGE}"):
            await api.set(scope, "k", text)
    assert await api.get(scope, "k") is None, _where(api, scope, "k")
    escaped = json.dumps(["a\x00b", "\ud800"])
    await api.set(scope, "k", escaped)
    assert await api.get(scope, "k") == escaped, _where(api, scope, "k")


async def _expiry_range(api: Api, ids: Ids, scope: StoreScope) -> None:
    """expires_at from EARLIEST_EXPIRY (1970) to LATEST_EXPIRY (9999) is stored; outside is refused and unwritten."""
    far = LATEST_EXPIRY
    await api.set(scope, "far", '"f"', expires_at=far)
    assert await api.get(scope, "far") == '"f"', _where(api, scope, "far")
    entry = await api.raw_get(to_scope(scope), "far")
    assert entry is not None, _where(api, scope, "far")
    assert entry.expires_at is not None, _where(api, scope, "far")
    assert abs(entry.expires_at - far) < timedelta(seconds=1), f"{_where(api, scope, 'far')}: {entry.expires_at}"
    await api.set(scope, "epoch", '"e"', expires_at=EARLIEST_EXPIRY)
    assert await api.get(scope, "epoch") is None, _where(api, scope, "epoch")
    for bad in (
        EARLIEST_EXPIRY - timedelta(microseconds=1),
        datetime.min.replace(tzinfo=timezone.utc),
        LATEST_EXPIRY + timedelta(microseconds=1),
        datetime.max.replace(tzinfo=timezone.utc),
    ):
        with pytest.raises(ValueError, match="expires_at must be between 1970-01-01"):
            await api.set(scope, "outside", '"x"', expires_at=bad)
    assert await api.raw_get(to_scope(scope), "outside") is None, _where(api, scope, "outside")


# -- asset identity: name, else uri, else id --------------------------------------------------------


async def _asset_identity(api: Api, ids: Ids, scope: None) -> None:
    """An asset is its name, else its uri, else its id: other fields never redirect; names sharing a uri stay apart."""
    name, uri, other_uri = f"{ids.token}orders", f"s3://{ids.token}/orders", f"s3://{ids.token}/other"
    full = AssetScope(asset_id=ids.asset_id, name=name, uri=uri)
    await api.set(full, "k", '"named"')
    await api.set(AssetScope(name=name + "_v2", uri=uri), "k", '"named v2"')
    await api.set(AssetScope(uri=uri, asset_id=ids.asset_id), "k", '"uri only"')
    await api.set(AssetScope(asset_id=ids.asset_id), "k", '"id only"')
    expected: list[tuple[Any, str]] = [
        (AssetScope(name=name), '"named"'),
        (AssetScope(name=name, uri=other_uri), '"named"'),
        (AirflowLikeAssetScope(asset_id=ids.asset_id + 1, name=name, uri=uri), '"named"'),
        (AssetScope(name=name + "_v2"), '"named v2"'),
        (AssetScope(uri=uri), '"uri only"'),
        (AssetScope(uri=uri, asset_id=ids.asset_id + 1), '"uri only"'),
        (AssetScope(asset_id=ids.asset_id), '"id only"'),
    ]
    for each, value in expected:
        assert await api.get(each, "k") == value, f"{_where(api, each, 'k')}: the asset-identity rule says {value}"
    assert await api.get(AssetScope(uri=other_uri), "k") is None, "a uri-only scope found state of a named asset"
    if api.can("listing"):
        assert await api.keys(AssetScope(uri=uri)) == ["k"], _where(api, AssetScope(uri=uri), "-")
    if api.can("references"):
        assert api.backend.reference_for(full, "k") == api.backend.reference_for(AssetScope(name=name), "k")
        assert api.backend.reference_for(AssetScope(uri=uri), "k") != api.backend.reference_for(full, "k")
    await api.clear(AssetScope(uri=uri, asset_id=ids.asset_id))
    assert await api.get(AssetScope(uri=uri), "k") is None, "clear of the uri-only asset left its state"
    for each, value in [expected[0], expected[3], expected[6]]:
        assert await api.get(each, "k") == value, f"{_where(api, each, 'k')}: cleared with the uri-only asset"
    await api.delete(AssetScope(name=name, uri=other_uri), "k")
    assert await api.get(AssetScope(name=name), "k") is None, "delete through name + another uri missed the name"
    assert await api.get(AssetScope(name=name + "_v2"), "k") == '"named v2"', "a name sharing the uri lost its state"
    for each in (AssetScope(name=name + "_v2"), AssetScope(asset_id=ids.asset_id)):
        await api.clear(each)


class BackendSuite:
    """Conformance tests for a ``BaseStoreBackend``: subclass it, override ``backend``, opt out with reasons."""

    unsupported: ClassVar[dict[str, str]] = {}
    """Capabilities this backend does not support, each with the reason (see ``CAPABILITIES``)."""

    @pytest.fixture
    def backend(self) -> BaseStoreBackend:
        """Override: return or yield a fresh backend instance (function-scoped)."""
        raise NotImplementedError(f"{type(self).__name__} must override the `backend` fixture")

    @pytest.fixture
    def suite_ids(self) -> Ids:
        """Fresh unique scopes for one test."""
        return Ids()

    @pytest.fixture(autouse=True)
    def _statestore_capabilities(self, request: pytest.FixtureRequest) -> None:
        unknown = set(self.unsupported) - CAPABILITIES
        if unknown:
            pytest.fail(
                f"{type(self).__name__}.unsupported names unknown capabilities {sorted(unknown)}; "
                f"use {sorted(CAPABILITIES)}",
                pytrace=False,
            )
        for capability in getattr(request.function, "_statestore_needs", ()):
            if capability in self.unsupported:
                pytest.skip(f"{type(self).__name__} does not support {capability}: {self.unsupported[capability]}")

    test_missing_key_is_none, test_missing_key_is_none_async = _twins(scoped=True)(_missing_key_is_none)
    test_set_then_get, test_set_then_get_async = _twins(scoped=True)(_set_then_get)
    test_overwrite, test_overwrite_async = _twins(scoped=True)(_overwrite)
    test_large_value, test_large_value_async = _twins(scoped=True)(_large_value)
    test_delete, test_delete_async = _twins(scoped=True)(_delete)
    test_clear, test_clear_async = _twins(scoped=True)(_clear)
    test_keys, test_keys_async = _twins("listing", scoped=True)(_keys)
    test_odd_keys, test_odd_keys_async = _twins(scoped=True)(_odd_keys)
    test_bad_keys_rejected, test_bad_keys_rejected_async = _twins(scoped=True)(_bad_keys_rejected)
    test_bad_values_rejected, test_bad_values_rejected_async = _twins(scoped=True)(_bad_values_rejected)
    test_expiry, test_expiry_async = _twins(scoped=True)(_expiry)
    test_expiry_replaced, test_expiry_replaced_async = _twins(scoped=True)(_expiry_replaced_on_overwrite)
    test_expiry_timezones, test_expiry_timezones_async = _twins(scoped=True)(_expiry_timezones)
    test_airflow_like_scopes, test_airflow_like_scopes_async = _twins(scoped=True)(_airflow_like_scopes)
    test_map_index_isolation, test_map_index_isolation_async = _twins()(_map_index_isolation)
    test_asset_all_map_indices, test_asset_all_map_indices_async = _twins()(_asset_all_map_indices)
    test_injective, test_injective_async = _twins()(_injective)
    test_unstorable_keys_refused, test_unstorable_keys_refused_async = _twins(scoped=True)(_unstorable_keys_refused)
    test_unstorable_ids_refused, test_unstorable_ids_refused_async = _twins()(_unstorable_ids_refused)
    test_odd_ids, test_odd_ids_async = _twins()(_odd_ids)
    test_map_index_range, test_map_index_range_async = _twins()(_map_index_range)
    test_asset_id_range, test_asset_id_range_async = _twins()(_asset_id_range)
    test_nesting_limit, test_nesting_limit_async = _twins(scoped=True)(_nesting_limit)
    test_unstorable_value_text_refused, test_unstorable_value_text_refused_async = _twins(scoped=True)(
        _unstorable_value_text_refused
    )
    test_expiry_range, test_expiry_range_async = _twins(scoped=True)(_expiry_range)
    test_asset_identity, test_asset_identity_async = _twins()(_asset_identity)
    test_references, test_references_async = _twins("references", scoped=True)(_references)
    test_references_injective, test_references_injective_async = _twins("references")(_references_injective)
    test_tampered_references, test_tampered_references_async = _twins("references")(_tampered_references)

    @_needs("cleanup")
    @pytest.mark.parametrize("scope_kind", SCOPE_KINDS)
    def test_cleanup_reclaims_expired(self, backend: BaseStoreBackend, suite_ids: Ids, scope_kind: str) -> None:
        """cleanup() removes expired entries from storage and keeps live and never-expiring ones."""
        scope = suite_ids.scope(scope_kind)
        backend.set(scope, "expired", '"x"', expires_at=_past())
        backend.set(scope, "live", '"l"', expires_at=_future())
        backend.set(scope, "never", '"n"')
        result = backend.cleanup()
        assert isinstance(result, CleanupResult), f"cleanup() returned {result!r}, not a CleanupResult"
        assert cast(Any, backend)._get(scope, "expired", None) is None, (
            f"{scope!r} 'expired' still stored after cleanup()"
        )
        assert backend.get(scope, "live") == '"l"', f"cleanup() removed a live entry of {scope!r}"
        assert backend.get(scope, "never") == '"n"', f"cleanup() removed a never-expiring entry of {scope!r}"
        if "listing" not in self.unsupported:
            assert cast(Any, backend).keys(scope) == ["live", "never"], f"keys of {scope!r} after cleanup()"

    def test_cleanup_on_empty_store(self, backend: BaseStoreBackend) -> None:
        """cleanup() with nothing to reclaim succeeds and reports a CleanupResult."""
        result = backend.cleanup()
        assert isinstance(result, CleanupResult), f"cleanup() returned {result!r}, not a CleanupResult"
        assert result.removed >= 0

    @_needs("async")
    @pytest.mark.asyncio
    async def test_concurrent_async(self, backend: BaseStoreBackend, suite_ids: Ids) -> None:
        """Many concurrent aset/aget/adelete calls in one event loop all take effect."""
        scopes = [suite_ids.task("t", mi) for mi in range(5)] + [suite_ids.asset("name", f"a{i}") for i in range(5)]
        pairs = [(s, f"k{i}") for s in scopes for i in range(4)]
        await asyncio.gather(*(backend.aset(s, k, json.dumps(f"{s}{k}")) for s, k in pairs))
        got = await asyncio.gather(*(backend.aget(s, k) for s, k in pairs))
        assert got == [json.dumps(f"{s}{k}") for s, k in pairs], "concurrent aset/aget lost or mixed values"
        await asyncio.gather(*(backend.adelete(s, k) for s, k in pairs))
        assert await asyncio.gather(*(backend.aget(s, k) for s, k in pairs)) == [None] * len(pairs)

    @_needs("references")
    def test_airflow_reference_hooks(self, backend: BaseStoreBackend, suite_ids: Ids) -> None:
        """Airflow's four hook names round-trip values; a reference is deterministic unless versioned."""
        task = AirflowLikeTaskScope(suite_ids.token + "d", "r", "t", 2)
        asset = AirflowLikeAssetScope(name=suite_ids.token + "asset")
        value = {"job": "j-1", "progress": [1, 2.5, None], "ok": True, "ü": "🎉"}
        task_ref = backend.serialize_task_state_store_to_ref(value=value, key="ckpt", scope=task)  # type: ignore[arg-type]
        again = backend.serialize_task_state_store_to_ref(value=value, key="ckpt", scope=to_scope(task))  # type: ignore[arg-type]
        assert isinstance(task_ref, str), f"task hook returned {task_ref!r}"
        assert isinstance(again, str), f"task hook returned {again!r}"
        assert (task_ref != again) is backend.versioned_references, f"task references: {task_ref!r} vs {again!r}"
        assert backend.deserialize_task_state_store_from_ref(again) == value
        asset_ref = backend.serialize_asset_state_store_to_ref(value=[1, "x"], key="ckpt", scope=asset)  # type: ignore[arg-type]
        assert isinstance(asset_ref, str), f"asset hook returned {asset_ref!r}"
        assert asset_ref != task_ref, "a task and an asset reference collide"
        assert backend.deserialize_asset_state_store_from_ref(asset_ref) == [1, "x"]
        assert backend.deserialize_task_state_store_from_ref(task_ref) == value, (
            "the asset write changed the task value"
        )

    @_needs("references")
    def test_airflow_hooks_reject_tampered(self, backend: BaseStoreBackend, suite_ids: Ids) -> None:
        """Airflow's deserialize hooks refuse references this backend did not produce."""
        ref = backend.serialize_task_state_store_to_ref(value=1, key="k", scope=suite_ids.task())
        assert isinstance(ref, str)
        for hook in (backend.deserialize_task_state_store_from_ref, backend.deserialize_asset_state_store_from_ref):
            with pytest.raises(InvalidReferenceError):
                hook(f"{ref}/../../x")
            with pytest.raises(InvalidReferenceError):
                hook("file:///etc/passwd")
