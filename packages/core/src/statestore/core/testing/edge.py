"""``EdgeInputSuite``: the *Input rules* (core README), one rule everywhere, refused before anything is written.

A backend on ``PrimitiveStoreBackend`` gets them for free; one implementing Airflow's eight
methods itself calls the same public checks (``scopes.to_scope``, ``naming.validate_key``,
``values.check_value``, ``values.check_expires_at``) or leaves this mixin out.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import pytest

from statestore.core.scopes import MAX_ASSET_ID, MAX_MAP_INDEX, AssetScope, StoreScope, TaskScope
from statestore.core.testing.harness import (
    UNSTORABLE,
    AirflowLikeAssetScope,
    AirflowLikeTaskScope,
    Api,
    Ids,
    SuiteBase,
    twins,
    where,
)
from statestore.core.values import EARLIEST_EXPIRY, LATEST_EXPIRY, MAX_DEPTH

__all__ = ["EdgeInputSuite"]

_UNSTORABLE_MESSAGE: Final = "contains (a NUL character|a lone surrogate)"


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
    assert await api.get(scope, "k" * 512) is None, where(api, scope, "k" * 512)
    if api.can("listing"):
        assert await api.keys(scope) == [], where(api, scope, "-")


async def _bad_values_rejected(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A value that is not JSON text (str) raises TypeError and writes nothing."""
    for value in (5, b'"bytes"', {"a": 1}, None):
        with pytest.raises(TypeError, match="str"):
            await api.set(scope, "k", value)
    assert await api.get(scope, "k") is None, where(api, scope, "k")
    await api.set(scope, "k", '"kept"')
    with pytest.raises(TypeError):
        await api.set(scope, "k", 7)
    assert await api.get(scope, "k") == '"kept"', where(api, scope, "k")


async def _nothing_written(api: Api, scope: StoreScope, what: str) -> None:
    if api.can("listing"):
        assert await api.keys(scope) == [], f"{where(api, scope, '-')}: {what} wrote something"


async def _unstorable_keys_refused(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Keys holding NUL or a lone surrogate are refused by set, get and delete with one message; nothing is written."""
    for key in UNSTORABLE:
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.set(scope, key, '"v"')
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.get(scope, key)
        with pytest.raises(ValueError, match=f"store key {_UNSTORABLE_MESSAGE}"):
            await api.delete(scope, key)
    assert await api.get(scope, "a") is None, where(api, scope, "a")
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
        assert await api.get(each, odd) == json.dumps(index), where(api, each, odd)
        if api.can("listing"):
            assert await api.keys(each) == [odd], where(api, each, "-")
        await api.clear(each)
        assert await api.get(each, odd) is None, where(api, each, odd)


async def _map_index_range(api: Api, ids: Ids, scope: None) -> None:
    """map_index is -1..2**31-1 (Airflow's 32-bit column): the ends are stored apart, beyond them is refused."""
    ends = [ids.task("t", -1), ids.task("t", 0), ids.task("t", MAX_MAP_INDEX)]
    for index, each in enumerate(ends):
        await api.set(each, "k", json.dumps(index))
    for index, each in enumerate(ends):
        assert await api.get(each, "k") == json.dumps(index), where(api, each, "k")
    for bad in (MAX_MAP_INDEX + 1, 2**63, -2):
        like = AirflowLikeTaskScope(ids.token + "d", "r", "t", bad)
        with pytest.raises(ValueError, match=rf"map_index must be -1 \(unmapped\) or 0\.\.{MAX_MAP_INDEX}"):
            await api.set(like, "k", '"v"')
        with pytest.raises(ValueError, match="map_index must be"):
            await api.get(like, "k")
    await api.clear(ends[0], all_map_indices=True)
    for each in ends:
        assert await api.get(each, "k") is None, where(api, each, "k")


async def _asset_id_range(api: Api, ids: Ids, scope: None) -> None:
    """asset_id is 0..2**31-1 (Airflow's 32-bit column): the top one is stored, beyond or negative is refused."""
    top = AssetScope(asset_id=MAX_ASSET_ID)  # shared by concurrent runs: a key of this test's own, no clear
    key = f"k{ids.token}"
    await api.set(top, key, '"top"')
    assert await api.get(top, key) == '"top"', where(api, top, key)
    await api.delete(top, key)
    assert await api.get(top, key) is None, where(api, top, key)
    for bad in (-1, MAX_ASSET_ID + 1, 2**63):
        with pytest.raises(ValueError, match=rf"asset_id must be 0\.\.{MAX_ASSET_ID}"):
            await api.set(AirflowLikeAssetScope(asset_id=bad), key, '"v"')


def _nested(depth: int) -> str:
    return "[" * depth + '{"a":"[[[[\\"]"}' + "]" * depth


async def _nesting_limit(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Value text nested up to MAX_DEPTH levels round-trips; deeper raises ValueError naming the limit, unwritten."""
    deepest = _nested(MAX_DEPTH - 1)  # the dict is the last level; brackets inside its string do not count
    await api.set(scope, "deep", deepest)
    assert await api.get(scope, "deep") == deepest, where(api, scope, "deep")
    assert json.loads(deepest) is not None, "the deepest value the suite writes must decode"
    for depth in (MAX_DEPTH, 990, 10_000):
        with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
            await api.set(scope, "too-deep", _nested(depth))
        with pytest.raises(ValueError, match=f"nested more than {MAX_DEPTH} levels deep"):
            await api.set(scope, "deep", _nested(depth))
    assert await api.get(scope, "too-deep") is None, where(api, scope, "too-deep")
    assert await api.get(scope, "deep") == deepest, f"{where(api, scope, 'deep')}: a refused write replaced it"


async def _unstorable_value_text_refused(api: Api, ids: Ids, scope: StoreScope) -> None:
    """Value text with a raw NUL (never valid JSON) or a lone surrogate is refused; escaped forms round-trip."""
    for text in ('"a\x00b"', '"\ud800"'):
        with pytest.raises(ValueError, match=f"value text {_UNSTORABLE_MESSAGE}"):
            await api.set(scope, "k", text)
    assert await api.get(scope, "k") is None, where(api, scope, "k")
    escaped = json.dumps(["a\x00b", "\ud800"])
    await api.set(scope, "k", escaped)
    assert await api.get(scope, "k") == escaped, where(api, scope, "k")


async def _expiry_range(api: Api, ids: Ids, scope: StoreScope) -> None:
    """expires_at from EARLIEST_EXPIRY (1970) to LATEST_EXPIRY (9999) is stored; outside is refused and unwritten."""
    far = LATEST_EXPIRY
    await api.set(scope, "far", '"f"', expires_at=far)
    assert await api.get(scope, "far") == '"f"', where(api, scope, "far")
    if api.subject.raw is not None:
        entry = api.raw(scope, "far")
        stored = None if entry is None else entry[1]
        assert stored is not None, f"{where(api, scope, 'far')}: storage holds {entry!r}"
        assert abs(stored - far) < timedelta(seconds=1), f"{where(api, scope, 'far')}: {stored}"
    await api.set(scope, "epoch", '"e"', expires_at=EARLIEST_EXPIRY)
    if api.can("expiry"):
        assert await api.get(scope, "epoch") is None, where(api, scope, "epoch")
    for bad in (
        EARLIEST_EXPIRY - timedelta(microseconds=1),
        datetime.min.replace(tzinfo=timezone.utc),
        LATEST_EXPIRY + timedelta(microseconds=1),
        datetime.max.replace(tzinfo=timezone.utc),
    ):
        with pytest.raises(ValueError, match="expires_at must be between 1970-01-01"):
            await api.set(scope, "outside", '"x"', expires_at=bad)
    assert await api.held(scope, "outside") is None, where(api, scope, "outside")


async def _naive_expiry_refused(api: Api, ids: Ids, scope: StoreScope) -> None:
    """A naive expires_at (no time zone: which instant is it?) is refused, and nothing is written."""
    with pytest.raises(ValueError, match="timezone"):
        await api.set(scope, "naive", '"n"', expires_at=datetime.now() + timedelta(days=1))
    assert await api.held(scope, "naive") is None, where(api, scope, "naive")


class EdgeInputSuite(SuiteBase):
    """Bad keys, values, ids, ranges and nesting refused with one message everywhere; odd ids stored exactly."""

    test_bad_keys_rejected, test_bad_keys_rejected_async = twins(scoped=True)(_bad_keys_rejected)
    test_bad_values_rejected, test_bad_values_rejected_async = twins(scoped=True)(_bad_values_rejected)
    test_unstorable_keys_refused, test_unstorable_keys_refused_async = twins(scoped=True)(_unstorable_keys_refused)
    test_unstorable_ids_refused, test_unstorable_ids_refused_async = twins()(_unstorable_ids_refused)
    test_odd_ids, test_odd_ids_async = twins()(_odd_ids)
    test_map_index_range, test_map_index_range_async = twins()(_map_index_range)
    test_asset_id_range, test_asset_id_range_async = twins()(_asset_id_range)
    test_nesting_limit, test_nesting_limit_async = twins(scoped=True)(_nesting_limit)
    test_unstorable_value_text_refused, test_unstorable_value_text_refused_async = twins(scoped=True)(
        _unstorable_value_text_refused
    )
    test_expiry_range, test_expiry_range_async = twins(scoped=True)(_expiry_range)
    test_naive_expiry_refused, test_naive_expiry_refused_async = twins(scoped=True)(_naive_expiry_refused)
