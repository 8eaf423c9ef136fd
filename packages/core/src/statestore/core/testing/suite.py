"""The conformance mixins and :class:`BackendSuite`; see :mod:`statestore.core.testing` for how to use them.

Each mixin covers one part of the contract and can be adopted alone (fsspec's abstract tests
style): :class:`BasicSuite` (Airflow's sync get/set/delete/clear), :class:`AsyncSuite` (their
async twins), :class:`ExpirySuite`, :class:`ListingSuite`, :class:`CleanupSuite`,
:class:`AssetIdentitySuite`, :class:`~statestore.core.testing.edge.EdgeInputSuite` and
:class:`~statestore.core.testing.references.ReferenceSuite`. :class:`BackendSuite` is all of them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta, timezone
from typing import Any, Final

import pytest

from statestore.core import CleanupResult
from statestore.core.scopes import AssetScope, StoreScope, TaskScope, to_scope
from statestore.core.testing.edge import EdgeInputSuite
from statestore.core.testing.harness import (
    ODD_KEYS,
    SCOPE_KINDS,
    VALUE_API,
    VALUES,
    AirflowLikeAssetScope,
    AirflowLikeTaskScope,
    Api,
    Ids,
    RawStorage,
    Subject,
    SuiteBase,
    SyncApi,
    battery,
    future,
    needs,
    past,
    twins,
    where,
)
from statestore.core.testing.references import ReferenceSuite

__all__ = [
    "AssetIdentitySuite",
    "AsyncSuite",
    "BackendSuite",
    "BasicSuite",
    "CleanupSuite",
    "ExpirySuite",
    "ListingSuite",
]


# -- Airflow's get/set/delete/clear ------------------------------------------------------------------


async def _missing_key_is_none(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A key never written reads as None."""
    assert await api.get(scope, "never-written") is None, where(api, scope, "never-written")


async def _set_then_get(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Values (JSON text) come back verbatim, each under its own key."""
    for index, value in enumerate(VALUES):
        await api.set(scope, f"k{index}", value)
    for index, value in enumerate(VALUES):
        assert await api.get(scope, f"k{index}") == value, where(api, scope, f"k{index}")


async def _overwrite(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A second set replaces the value."""
    await api.set(scope, "k", '"first"')
    await api.set(scope, "k", '"second"')
    assert await api.get(scope, "k") == '"second"', where(api, scope, "k")


async def _large_value(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A value of ~40 KB (multi-byte characters included) round-trips exactly."""
    value = json.dumps({"blob": "ü🎉x" * 5000, "n": list(range(1000))}, ensure_ascii=False)
    await api.set(scope, "big", value)
    assert await api.get(scope, "big") == value, where(api, scope, "big")


async def _delete(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Delete removes one key only; deleting a missing key or a key of an unused scope is a no-op."""
    await api.set(scope, "gone", '"a"')
    await api.set(scope, "kept", '"b"')
    await api.delete(scope, "gone")
    assert await api.get(scope, "gone") is None, where(api, scope, "gone")
    assert await api.get(scope, "kept") == '"b"', where(api, scope, "kept")
    await api.delete(scope, "gone")
    await api.delete(scope, "never-written")
    await api.delete(ids.sibling(scope), "never-written")
    assert await api.get(scope, "kept") == '"b"', where(api, scope, "kept")


async def _clear(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Clear removes every key of the scope and nothing else; clearing an empty scope is a no-op."""
    sibling = ids.sibling(scope)
    await api.set(scope, "a", '"1"')
    await api.set(scope, "b/c", '"2"')
    await api.set(sibling, "a", '"other"')
    await api.clear(scope)
    for key in ("a", "b/c"):
        assert await api.get(scope, key) is None, where(api, scope, key)
    assert await api.get(sibling, "a") == '"other"', where(api, sibling, "a")
    await api.clear(scope)
    await api.clear(scope, all_map_indices=True)
    assert await api.get(sibling, "a") == '"other"', where(api, sibling, "a")


async def _odd_keys(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Keys with '/', '..', '%', unicode, ':', '{}', whitespace and 512 characters are stored exactly."""
    for index, key in enumerate(ODD_KEYS):
        await api.set(scope, key, json.dumps(index))
    for index, key in enumerate(ODD_KEYS):
        assert await api.get(scope, key) == json.dumps(index), where(api, scope, key)
    if api.can("listing"):
        assert await api.keys(scope) == sorted(ODD_KEYS), where(api, scope, "-")
    for key in ODD_KEYS:
        await api.delete(scope, key)
        assert await api.get(scope, key) is None, where(api, scope, key)
    if api.can("listing"):
        assert await api.keys(scope) == [], where(api, scope, "-")


async def _map_index_isolation(api: Api, ids: Ids, scope: None) -> None:
    """Map indices are separate namespaces; clear touches one unless all_map_indices, and never a neighbour."""
    task = ids.task("t")
    indices = [ids.task("t", mi) for mi in (-1, 0, 1, 2)]
    neighbours = [ids.task("t2"), ids.task("t", run="r2"), ids.task("t", dag="d2"), ids.task("tt", 0), ids.asset()]
    for index, each in enumerate([*indices, *neighbours]):
        await api.set(each, "k", json.dumps(index))
    for index, each in enumerate(indices):
        assert await api.get(each, "k") == json.dumps(index), where(api, each, "k")
    await api.clear(ids.task("t", 0))
    assert await api.get(ids.task("t", 0), "k") is None, where(api, ids.task("t", 0), "k")
    for each in (indices[0], *indices[2:]):
        assert await api.get(each, "k") is not None, f"{where(api, each, 'k')}: clear of map index 0 removed it"
    await api.clear(ids.task("t", 1), all_map_indices=True)
    for each in indices:
        assert await api.get(each, "k") is None, f"{where(api, each, 'k')}: survived clear(all_map_indices=True)"
    for index, each in enumerate(neighbours, start=len(indices)):
        assert await api.get(each, "k") == json.dumps(index), f"{where(api, each, 'k')}: cleared with {task!r}"


async def _asset_all_map_indices(api: Api, ids: Ids, scope: None) -> None:
    """all_map_indices has no effect on an asset scope: that asset is cleared, others are not."""
    asset, other = ids.asset("name", "a"), ids.asset("name", "a2")
    await api.set(asset, "k", '"1"')
    await api.set(other, "k", '"2"')
    await api.clear(asset, all_map_indices=True)
    assert await api.get(asset, "k") is None, where(api, asset, "k")
    assert await api.get(other, "k") == '"2"', where(api, other, "k")


async def _injective(api: Api, ids: Ids, scope: None) -> None:
    """Scopes and keys built to collide under naive joins, encodings, truncation or collations stay distinct."""
    for (scope_a, key_a), (scope_b, key_b) in battery(ids):
        await api.set(scope_a, key_a, '"A"')
        await api.set(scope_b, key_b, '"B"')
        got = (await api.get(scope_a, key_a), await api.get(scope_b, key_b))
        assert got == ('"A"', '"B"'), f"{where(api, scope_a, key_a)} collides with {where(api, scope_b, key_b)}"
        await api.delete(scope_a, key_a)
        assert await api.get(scope_b, key_b) == '"B"', f"deleting {key_a!r} in {scope_a!r} removed {key_b!r}"
        await api.set(scope_a, key_a, '"A"')
        if scope_a != scope_b:
            await api.clear(scope_a)
            assert await api.get(scope_b, key_b) == '"B"', f"clearing {scope_a!r} removed {key_b!r} of {scope_b!r}"
            if api.can("listing"):
                assert await api.keys(scope_b) == [key_b], where(api, scope_b, "-")
        await api.clear(scope_a)
        await api.clear(scope_b)


# -- optional capabilities -----------------------------------------------------------------------------


async def _keys(api: Api, ids: Ids, scope: StoreScope) -> None:
    """keys() lists exactly this scope's keys, sorted; an unused scope has none."""
    assert await api.keys(scope) == [], where(api, scope, "-")
    for key in ("b", "a", "x/y", "ü"):
        await api.set(scope, key, '"v"')
    await api.set(ids.sibling(scope), "other", '"v"')
    assert await api.keys(scope) == ["a", "b", "x/y", "ü"], where(api, scope, "-")
    await api.delete(scope, "a")
    assert await api.keys(scope) == ["b", "x/y", "ü"], where(api, scope, "-")


async def _expiry(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A past expires_at is never returned; a future one and None (never) are."""
    await api.set(scope, "past", '"p"', expires_at=past())
    await api.set(scope, "future", '"f"', expires_at=future())
    await api.set(scope, "never", '"n"', expires_at=None)
    assert await api.get(scope, "past") is None, where(api, scope, "past")
    assert await api.get(scope, "future") == '"f"', where(api, scope, "future")
    assert await api.get(scope, "never") == '"n"', where(api, scope, "never")


async def _expiry_stored(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Storage keeps the value and its expiry as written: None for never, the instant (within 2 s) otherwise."""
    expires_at = future()
    await api.set(scope, "never", '"n"', expires_at=None)
    await api.set(scope, "future", '"f"', expires_at=expires_at)
    assert api.raw(scope, "never") == ('"n"', None), f"{where(api, scope, 'never')}: stored as (value, no expiry)"
    entry = api.raw(scope, "future")
    assert entry is not None, f"{where(api, scope, 'future')}: storage lost a live entry"
    assert entry[1] is not None, f"{where(api, scope, 'future')}: the expiry was not stored"
    drift = abs(entry[1] - expires_at)
    assert drift < timedelta(seconds=2), f"{where(api, scope, 'future')}: stored expiry is off by {drift}"


async def _expiry_replaced_on_overwrite(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Overwriting replaces the expiry too: expired → never-expiring revives, live → expired hides."""
    await api.set(scope, "k", '"old"', expires_at=past())
    await api.set(scope, "k", '"new"', expires_at=None)
    assert await api.get(scope, "k") == '"new"', where(api, scope, "k")
    await api.set(scope, "j", '"old"', expires_at=future())
    await api.set(scope, "j", '"new"', expires_at=past())
    assert await api.get(scope, "j") is None, where(api, scope, "j")


async def _expiry_timezones(api: Api, ids: Ids, scope: StoreScope) -> None:
    """An aware expires_at in any timezone is compared as the instant it is."""
    far_east, far_west = timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))
    await api.set(scope, "past-east", '"p"', expires_at=past().astimezone(far_east))
    await api.set(scope, "future-west", '"f"', expires_at=future().astimezone(far_west))
    assert await api.get(scope, "past-east") is None, where(api, scope, "past-east")
    assert await api.get(scope, "future-west") == '"f"', where(api, scope, "future-west")


# -- which scope objects address the same state --------------------------------------------------------


async def _airflow_like_scopes(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Scope objects with the same fields plus extra ones (Airflow's) address the same data as ours."""
    if isinstance(scope, TaskScope):
        like: Any = AirflowLikeTaskScope(scope.dag_id, scope.run_id, scope.task_id, scope.map_index)
    else:
        like = AirflowLikeAssetScope(scope.asset_id, scope.name, scope.uri)
    await api.set(like, "via-like", '"1"')
    await api.set(scope, "via-ours", '"2"')
    assert await api.get(scope, "via-like") == '"1"', where(api, scope, "via-like")
    assert await api.get(like, "via-ours") == '"2"', where(api, like, "via-ours")
    if api.can("listing"):
        assert await api.keys(like) == ["via-like", "via-ours"], where(api, like, "-")
    await api.delete(like, "via-ours")
    assert await api.get(scope, "via-ours") is None, where(api, scope, "via-ours")
    await api.clear(like)
    assert await api.get(scope, "via-like") is None, where(api, scope, "via-like")


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
        assert await api.get(each, "k") == value, f"{where(api, each, 'k')}: the asset-identity rule says {value}"
    assert await api.get(AssetScope(uri=other_uri), "k") is None, "a uri-only scope found state of a named asset"
    if api.can("listing"):
        assert await api.keys(AssetScope(uri=uri)) == ["k"], where(api, AssetScope(uri=uri), "-")
    if api.can("references") and api.subject.has(VALUE_API, api.label):
        assert api.backend.reference_for(full, "k") == api.backend.reference_for(AssetScope(name=name), "k")
        assert api.backend.reference_for(AssetScope(uri=uri), "k") != api.backend.reference_for(full, "k")
    await api.clear(AssetScope(uri=uri, asset_id=ids.asset_id))
    assert await api.get(AssetScope(uri=uri), "k") is None, "clear of the uri-only asset left its state"
    for each, value in [expected[0], expected[3], expected[6]]:
        assert await api.get(each, "k") == value, f"{where(api, each, 'k')}: cleared with the uri-only asset"
    await api.delete(AssetScope(name=name, uri=other_uri), "k")
    assert await api.get(AssetScope(name=name), "k") is None, "delete through name + another uri missed the name"
    assert await api.get(AssetScope(name=name + "_v2"), "k") == '"named v2"', "a name sharing the uri lost its state"
    for each in (AssetScope(name=name + "_v2"), AssetScope(asset_id=ids.asset_id)):
        await api.clear(each)


class BasicSuite(SuiteBase):
    """Airflow's four sync methods on task and asset scopes: round trips, deletes, clears, isolation."""

    # test_missing_key_is_none, test_set_then_get, ...: see _BASIC below

    def test_cleanup_runs(self, backend: Any) -> None:
        """cleanup() runs on any store and returns None (Airflow's default) or a CleanupResult."""
        if not callable(getattr(backend, "cleanup", None)):
            pytest.skip(f"{type(backend).__name__} has no cleanup() (Airflow's base class gives every backend one)")
        result = backend.cleanup()
        assert result is None or isinstance(result, CleanupResult), f"cleanup() returned {result!r}"


class AsyncSuite(SuiteBase):
    """The async twins of :class:`BasicSuite`'s tests, and many concurrent calls in one event loop."""

    # test_missing_key_is_none_async, test_set_then_get_async, ...: see _BASIC below

    @needs("async")
    @pytest.mark.asyncio
    async def test_concurrent_async(self, backend: Any, suite_ids: Ids) -> None:
        """Many concurrent aset/aget/adelete calls in one event loop all take effect."""
        scopes = [suite_ids.task("t", mi) for mi in range(5)] + [suite_ids.asset("name", f"a{i}") for i in range(5)]
        pairs = [(s, f"k{i}") for s in scopes for i in range(4)]
        await asyncio.gather(*(backend.aset(s, k, json.dumps(f"{s}{k}")) for s, k in pairs))
        got = await asyncio.gather(*(backend.aget(s, k) for s, k in pairs))
        assert got == [json.dumps(f"{s}{k}") for s, k in pairs], "concurrent aset/aget lost or mixed values"
        await asyncio.gather(*(backend.adelete(s, k) for s, k in pairs))
        assert await asyncio.gather(*(backend.aget(s, k) for s, k in pairs)) == [None] * len(pairs)


_BASIC: Final = {
    "missing_key_is_none": twins(scoped=True)(_missing_key_is_none),
    "set_then_get": twins(scoped=True)(_set_then_get),
    "overwrite": twins(scoped=True)(_overwrite),
    "large_value": twins(scoped=True)(_large_value),
    "delete": twins(scoped=True)(_delete),
    "clear": twins(scoped=True)(_clear),
    "odd_keys": twins(scoped=True)(_odd_keys),
    "map_index_isolation": twins()(_map_index_isolation),
    "asset_all_map_indices": twins()(_asset_all_map_indices),
    "injective": twins()(_injective),
}
"""Airflow's four methods: the sync test of each scenario goes to BasicSuite, the async one to AsyncSuite."""
for _name, (_sync_test, _async_test) in _BASIC.items():
    setattr(BasicSuite, f"test_{_name}", _sync_test)
    setattr(AsyncSuite, f"test_{_name}_async", _async_test)


class ExpirySuite(SuiteBase):
    """``expires_at`` stored as written (seen through ``raw_storage``); get hides past ones (capability ``expiry``)."""

    test_expiry, test_expiry_async = twins("expiry", scoped=True)(_expiry)
    test_expiry_stored, test_expiry_stored_async = twins(scoped=True, raw=True)(_expiry_stored)
    test_expiry_replaced, test_expiry_replaced_async = twins("expiry", scoped=True)(_expiry_replaced_on_overwrite)
    test_expiry_timezones, test_expiry_timezones_async = twins("expiry", scoped=True)(_expiry_timezones)


class ListingSuite(SuiteBase):
    """``keys``/``akeys`` (capability ``listing``); other mixins' tests also list when the backend can."""

    test_keys, test_keys_async = twins("listing", scoped=True)(_keys)


class CleanupSuite(SuiteBase):
    """``cleanup()`` reporting a ``CleanupResult`` (capability ``cleanup``) and reclaiming expired entries."""

    def _report(self, backend: Any) -> CleanupResult:
        """What cleanup() reports; fail, saying what to declare, when it reports nothing."""
        result = backend.cleanup()
        if result is None:
            cls = type(backend).__name__
            pytest.fail(
                f"{cls}.cleanup() returned None (Airflow's signature allows it, but these tests read what it "
                f"removed): return a CleanupResult, or declare `unsupported_capabilities = {{'cleanup': "
                f"'<reason>'}}` on {cls} (or `unsupported` on {type(self).__name__})",
                pytrace=False,
            )
        assert isinstance(result, CleanupResult), f"cleanup() returned {result!r}, not a CleanupResult"
        return result

    @needs("cleanup", raw=True)
    @pytest.mark.parametrize("scope_kind", SCOPE_KINDS)
    def test_cleanup_reclaims_expired(
        self, suite_subject: Subject, backend: Any, suite_ids: Ids, scope_kind: str, raw_storage: RawStorage
    ) -> None:
        """cleanup() removes expired entries from storage and keeps live and never-expiring ones."""
        scope = suite_ids.scope(scope_kind)
        backend.set(scope, "expired", '"x"', expires_at=past())
        backend.set(scope, "live", '"l"', expires_at=future())
        backend.set(scope, "never", '"n"')
        self._report(backend)
        stored = raw_storage.entry(to_scope(scope), "expired")
        assert stored is None, f"{scope!r} 'expired' still stored after cleanup(): {stored!r}"
        assert backend.get(scope, "live") == '"l"', f"cleanup() removed a live entry of {scope!r}"
        assert backend.get(scope, "never") == '"n"', f"cleanup() removed a never-expiring entry of {scope!r}"
        if SyncApi(suite_subject).can("listing"):
            assert backend.keys(scope) == ["live", "never"], f"keys of {scope!r} after cleanup()"

    @needs("cleanup")
    def test_cleanup_on_empty_store(self, backend: Any) -> None:
        """cleanup() with nothing to reclaim succeeds and reports a CleanupResult."""
        assert self._report(backend).removed >= 0


class AssetIdentitySuite(SuiteBase):
    """Which scope objects address the same state: assets by name, else uri, else id; Airflow's scopes as ours."""

    test_asset_identity, test_asset_identity_async = twins()(_asset_identity)
    test_airflow_like_scopes, test_airflow_like_scopes_async = twins(scoped=True)(_airflow_like_scopes)


class BackendSuite(
    BasicSuite,
    AsyncSuite,
    ExpirySuite,
    ListingSuite,
    CleanupSuite,
    ReferenceSuite,
    EdgeInputSuite,
    AssetIdentitySuite,
):
    """Every conformance test: subclass it, override ``backend`` (and ``raw_storage``), opt out with reasons."""
