"""``ReferenceSuite``: worker-side references (capability ``references``).

Airflow's four hooks (``serialize_*_state_store_to_ref``/``deserialize_*_state_store_from_ref``)
are tested on every backend that does not opt out; statestore's reference API (``store_value``,
``load_value``, ``discard_value``, ``reference_for``) where the backend has it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from statestore.core import InvalidReferenceError, ReferenceNotFoundError
from statestore.core.scopes import StoreScope, to_scope
from statestore.core.testing.harness import (
    VALUE_API,
    AirflowLikeAssetScope,
    AirflowLikeTaskScope,
    Api,
    Ids,
    Subject,
    SuiteBase,
    SyncApi,
    flat,
    needs,
    twins,
    where,
)

__all__ = ["ReferenceSuite"]


async def _references(api: Api, ids: Ids, scope: StoreScope) -> None:
    """store_value's reference reads its value, only for its own (scope, key); discard_value deletes it.

    With ``versioned_references`` every write is a new version: an older reference still reads its
    own value, and discarding it leaves the newer one. Otherwise references are a pure function of
    (scope, key) and read the latest value.
    """
    here = where(api, scope, "k/ref")
    first = await api.store_value(scope, "k/ref", '"one"')
    second = await api.store_value(scope, "k/ref", '"two"')
    assert isinstance(first, str), f"{here}: store_value(allow_inline=False) gave {first!r}"
    assert isinstance(second, str), f"{here}: store_value(allow_inline=False) gave {second!r}"
    assert await api.load_value(second, scope=scope, key="k/ref") == '"two"', here
    if api.versioned_references:
        assert first != second, f"{here}: a versioned backend gave one reference to two writes: {first!r}"
        assert await api.load_value(first) == '"one"', f"{here}: a later write changed an earlier version"
        await api.discard_value(first)
        with pytest.raises(ReferenceNotFoundError):
            await api.load_value(first)
        assert await api.load_value(second) == '"two"', f"{here}: discarding an old version removed the new one"
    else:
        assert first == second, f"{here}: references differ between writes: {first!r} {second!r}"
        assert api.backend.reference_for(scope, "k/ref") == first, here
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
    entries = flat(ids)
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


class ReferenceSuite(SuiteBase):
    """References round-trip, only for their own scope and key; foreign or tampered ones are refused."""

    test_references, test_references_async = twins("references", VALUE_API, scoped=True)(_references)
    test_references_injective, test_references_injective_async = twins("references", VALUE_API)(_references_injective)
    test_tampered_references, test_tampered_references_async = twins("references", VALUE_API)(_tampered_references)

    @needs("references")
    def test_airflow_reference_hooks(self, suite_subject: Subject, suite_ids: Ids) -> None:
        """Airflow's four hook names round-trip values; a reference is deterministic unless versioned."""
        backend = suite_subject.backend
        versioned = SyncApi(suite_subject).versioned_references
        task = AirflowLikeTaskScope(suite_ids.token + "d", "r", "t", 2)
        asset = AirflowLikeAssetScope(name=suite_ids.token + "asset")
        value = {"job": "j-1", "progress": [1, 2.5, None], "ok": True, "ü": "🎉"}
        task_ref = backend.serialize_task_state_store_to_ref(value=value, key="ckpt", scope=task)
        if task_ref == json.dumps(value):
            suite_subject.fail_undeclared(
                "references",
                "returns the value itself from serialize_task_state_store_to_ref() (Airflow's default hook: "
                "values stay inline), so it offers no references",
            )
        again = backend.serialize_task_state_store_to_ref(value=value, key="ckpt", scope=to_scope(task))
        assert isinstance(task_ref, str), f"task hook returned {task_ref!r}"
        assert isinstance(again, str), f"task hook returned {again!r}"
        assert (task_ref != again) is versioned, f"task references: {task_ref!r} vs {again!r}"
        assert backend.deserialize_task_state_store_from_ref(again) == value
        asset_ref = backend.serialize_asset_state_store_to_ref(value=[1, "x"], key="ckpt", scope=asset)
        assert isinstance(asset_ref, str), f"asset hook returned {asset_ref!r}"
        assert asset_ref != task_ref, "a task and an asset reference collide"
        assert backend.deserialize_asset_state_store_from_ref(asset_ref) == [1, "x"]
        assert backend.deserialize_task_state_store_from_ref(task_ref) == value, (
            "the asset write changed the task value"
        )

    @needs("references")
    def test_airflow_hooks_reject_tampered(self, backend: Any, suite_ids: Ids) -> None:
        """Airflow's deserialize hooks refuse references this backend did not produce."""
        ref = backend.serialize_task_state_store_to_ref(value=1, key="k", scope=suite_ids.task())
        assert isinstance(ref, str)
        for hook in (backend.deserialize_task_state_store_from_ref, backend.deserialize_asset_state_store_from_ref):
            with pytest.raises(InvalidReferenceError):
                hook(f"{ref}/../../x")
            with pytest.raises(InvalidReferenceError):
                hook("file:///etc/passwd")
