"""The machinery under the conformance mixins: capabilities, the ``raw_storage`` fixture, the sync/async API.

Most behaviours are written once as an async *scenario* against a small :class:`Api` and run
twice: synchronously (``SyncApi`` calls ``get``/``set``/...; the coroutine never suspends, so it
is driven without an event loop) and asynchronously under pytest-asyncio (``AsyncApi`` awaits
``aget``/``aset``/...). A failing assertion names the scope, key and API flavour involved.

The suite calls only the public contract: Airflow's eight methods, ``cleanup()``, and the optional
methods of the capabilities a backend does not opt out of. What storage holds underneath (an
expired entry ``get`` hides) is read through the optional ``raw_storage`` fixture.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Final, Protocol

import pytest

from statestore.core.scopes import AssetScope, StoreScope, TaskScope, to_scope

__all__ = [
    "CAPABILITIES",
    "ODD_KEYS",
    "UNSTORABLE",
    "AirflowLikeAssetScope",
    "AirflowLikeTaskScope",
    "RawStorage",
    "SuiteBase",
]

CAPABILITIES: Final = frozenset({"listing", "cleanup", "references", "expiry", "async"})
"""Capability names a backend (``unsupported_capabilities``) or a suite subclass (``unsupported``) may opt out of."""
VALUE_API: Final = "value_api"
"""Not a capability: what the tests of statestore's reference API (``store_value``/``load_value``/...) need.

A backend whose references are only Airflow's four hooks skips them, saying so.
"""

_HOOKS: Final = (
    "serialize_task_state_store_to_ref",
    "deserialize_task_state_store_from_ref",
    "serialize_asset_state_store_to_ref",
    "deserialize_asset_state_store_from_ref",
)
_METHODS: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("listing", "sync"): ("keys",),
    ("listing", "async"): ("akeys",),
    ("cleanup", "sync"): ("cleanup",),
    ("async", "async"): ("aget", "aset", "adelete", "aclear"),
    ("references", "sync"): _HOOKS,
    ("references", "async"): _HOOKS,
    (VALUE_API, "sync"): ("store_value", "load_value", "discard_value", "reference_for"),
    (VALUE_API, "async"): ("astore_value", "aload_value", "adiscard_value", "reference_for"),
}
"""The public methods each capability needs, per API flavour."""


class RawStorage(Protocol):
    """What the ``raw_storage`` fixture returns: a look at storage underneath the public API."""

    def entry(self, scope: StoreScope, key: str) -> tuple[str, datetime | None] | None:
        """``(value, expires_at)`` storage holds for ``(scope, key)``, expired or not; None when nothing is held.

        ``scope`` is a statestore ``TaskScope``/``AssetScope`` and ``key`` a valid key. A
        ``PrimitiveStoreBackend`` answers with its ``_get`` primitive (a ``StoredEntry`` is such a tuple).
        """
        ...


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

VALUES: Final = ('"x"', "0", "-1.5e-07", "true", "[]", '{"a":[1,2,{"b":null}],"c":"ü🎉"}', '""', '"line\\nbreak"')
"""JSON texts every backend stores verbatim."""
SCOPE_KINDS: Final = ("task", "mapped_task", "asset_name", "asset_uri", "asset_id", "asset_name_uri")


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


def battery(ids: Ids) -> list[tuple[tuple[StoreScope, str], tuple[StoreScope, str]]]:
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


def flat(ids: Ids) -> list[tuple[StoreScope, str]]:
    """Every distinct ``(scope, key)`` of the battery, once."""
    return list(dict.fromkeys(entry for pair in battery(ids) for entry in pair))


@dataclass(frozen=True)
class Subject:
    """The backend under test as one test sees it: its declared capabilities and its raw storage."""

    backend: Any
    unsupported: Mapping[str, str]
    raw: RawStorage | None
    suite: str

    def fail_undeclared(self, capability: str, problem: str) -> None:
        """Fail the test: the backend falls short of ``capability`` (``problem`` says how) without declaring it."""
        cls = type(self.backend).__name__
        pytest.fail(
            f"{cls} {problem}, and does not declare {capability!r} unsupported: "
            f"implement it, or declare why not with "
            f"`unsupported_capabilities = {{{capability!r}: '<reason>'}}` on {cls} "
            f"(or `unsupported = {{{capability!r}: '<reason>'}}` on {self.suite})",
            pytrace=False,
        )

    def missing(self, capability: str, flavour: str) -> list[str]:
        """The public methods ``capability`` needs in the ``flavour`` API that the backend lacks."""
        return [m for m in _METHODS.get((capability, flavour), ()) if not callable(getattr(self.backend, m, None))]

    def has(self, capability: str, flavour: str) -> bool:
        """Whether the backend has every public method ``capability`` needs in the ``flavour`` API."""
        return not self.missing(capability, flavour)

    def check(self, capability: str, flavour: str) -> None:
        """Fail unless the backend has the public methods ``capability`` needs in the ``flavour`` API."""
        missing = self.missing(capability, flavour)
        if missing:
            needed = ", ".join(m + "()" for m in missing)
            self.fail_undeclared(capability, f"has no {needed}, which the {capability!r} capability needs")


class Api:
    """One flavour (sync or async) of the backend API, as coroutines; ``label`` names it in failures."""

    label: ClassVar[str]

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.backend = subject.backend

    def can(self, capability: str) -> bool:
        """Whether the backend supports ``capability``; fail the test if it lacks the methods without opting out."""
        if capability in self.subject.unsupported:
            return False
        self.subject.check(capability, self.label)
        return True

    def raw(self, scope: Any, key: str) -> tuple[str, datetime | None] | None:
        """What storage holds for ``(scope, key)``, expired or not (only in tests declared to need ``raw_storage``)."""
        assert self.subject.raw is not None, "this test must be declared as needing raw_storage"
        return self.subject.raw.entry(to_scope(scope), key)

    async def held(self, scope: Any, key: str) -> str | None:
        """The value storage holds, expired or not, given ``raw_storage``; else what ``get`` returns."""
        if self.subject.raw is None:
            return await self.get(scope, key)
        entry = self.raw(scope, key)
        return None if entry is None else entry[0]

    @property
    def versioned_references(self) -> bool:
        """The backend's ``versioned_references`` (False when it does not say)."""
        return bool(getattr(self.backend, "versioned_references", False))

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
        return self.backend.get(scope, key)  # type: ignore[no-any-return]

    async def set(self, scope: Any, key: str, value: Any, expires_at: datetime | None = None) -> None:
        self.backend.set(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: Any, key: str) -> None:
        self.backend.delete(scope, key)

    async def clear(self, scope: Any, all_map_indices: bool = False) -> None:
        self.backend.clear(scope, all_map_indices=all_map_indices)

    async def keys(self, scope: Any) -> list[str]:
        return self.backend.keys(scope)  # type: ignore[no-any-return]

    async def store_value(self, scope: Any, key: str, value_json: str) -> str | None:
        return self.backend.store_value(scope, key, value_json, allow_inline=False)  # type: ignore[no-any-return]

    async def load_value(self, reference: Any, **expected: Any) -> str:
        return self.backend.load_value(reference, **expected)  # type: ignore[no-any-return]

    async def discard_value(self, reference: str) -> None:
        self.backend.discard_value(reference)


class AsyncApi(Api):
    """The ``a*`` twins, awaited in pytest-asyncio's event loop."""

    label = "async"

    async def get(self, scope: Any, key: str) -> str | None:
        return await self.backend.aget(scope, key)  # type: ignore[no-any-return]

    async def set(self, scope: Any, key: str, value: Any, expires_at: datetime | None = None) -> None:
        await self.backend.aset(scope, key, value, expires_at=expires_at)

    async def delete(self, scope: Any, key: str) -> None:
        await self.backend.adelete(scope, key)

    async def clear(self, scope: Any, all_map_indices: bool = False) -> None:
        await self.backend.aclear(scope, all_map_indices=all_map_indices)

    async def keys(self, scope: Any) -> list[str]:
        return await self.backend.akeys(scope)  # type: ignore[no-any-return]

    async def store_value(self, scope: Any, key: str, value_json: str) -> str | None:
        return await self.backend.astore_value(scope, key, value_json, allow_inline=False)  # type: ignore[no-any-return]

    async def load_value(self, reference: Any, **expected: Any) -> str:
        return await self.backend.aload_value(reference, **expected)  # type: ignore[no-any-return]

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


@dataclass(frozen=True)
class Needs:
    """What a test needs: capabilities (skipped when opted out), the API flavour, and raw storage."""

    capabilities: tuple[str, ...] = ()
    flavour: str = "sync"
    raw: bool = False


def _needing(test: Test, needs: Needs, doc: str | None) -> Test:
    test.__doc__ = doc
    test._statestore_needs = needs  # type: ignore[attr-defined]
    return test


def _scoped_pair(scenario: Scenario) -> tuple[Test, Test]:
    """A sync and an async test running ``scenario`` once per kind of scope."""

    def sync_test(self: SuiteBase, suite_subject: Subject, suite_ids: Ids, scope_kind: str) -> None:
        _run_sync(scenario(SyncApi(suite_subject), suite_ids, suite_ids.scope(scope_kind)))  # type: ignore[arg-type]

    async def async_test(self: SuiteBase, suite_subject: Subject, suite_ids: Ids, scope_kind: str) -> None:
        await scenario(AsyncApi(suite_subject), suite_ids, suite_ids.scope(scope_kind))

    mark = pytest.mark.parametrize("scope_kind", SCOPE_KINDS)
    return mark(sync_test), mark(async_test)


def _plain_pair(scenario: Scenario) -> tuple[Test, Test]:
    """A sync and an async test running ``scenario`` once (it makes its own scopes)."""

    def sync_test(self: SuiteBase, suite_subject: Subject, suite_ids: Ids) -> None:
        _run_sync(scenario(SyncApi(suite_subject), suite_ids, None))  # type: ignore[arg-type]

    async def async_test(self: SuiteBase, suite_subject: Subject, suite_ids: Ids) -> None:
        await scenario(AsyncApi(suite_subject), suite_ids, None)

    return sync_test, async_test


def twins(*needs: str, scoped: bool = False, raw: bool = False) -> Callable[[Scenario], tuple[Test, Test]]:
    """Turn a scenario into a sync test and an async test (``scoped``: once per kind of scope).

    ``needs``: capabilities the tests skip without (the async one also needs ``async``); ``raw``:
    they read storage through the ``raw_storage`` fixture and skip when it is not overridden.
    """

    def build(scenario: Scenario) -> tuple[Test, Test]:
        sync_test, async_test = (_scoped_pair if scoped else _plain_pair)(scenario)
        return (
            _needing(sync_test, Needs(needs, "sync", raw), scenario.__doc__),
            _needing(pytest.mark.asyncio(async_test), Needs((*needs, "async"), "async", raw), scenario.__doc__),
        )

    return build


def needs(*capabilities: str, raw: bool = False) -> Callable[[Test], Test]:
    """Mark a plain test as needing ``capabilities`` (and ``raw_storage``); skipped with the stated reason otherwise."""
    flavour = "async" if "async" in capabilities else "sync"
    return lambda test: _needing(test, Needs(capabilities, flavour, raw), test.__doc__)


def past() -> datetime:
    """An hour ago (aware UTC)."""
    return datetime.now(timezone.utc) - timedelta(hours=1)


def future() -> datetime:
    """An hour from now (aware UTC)."""
    return datetime.now(timezone.utc) + timedelta(hours=1)


def where(api: Api, scope: Any, key: str) -> str:
    """How a failure names the API flavour, scope and key involved."""
    return f"[{api.label}] scope={scope!r} key={key!r}"


def _declared(owner: str, declared: Any) -> dict[str, str]:
    """A capability declaration as a dict; fail the test on a malformed one or an unknown capability."""
    if not isinstance(declared, Mapping) or not all(isinstance(v, str) and v for v in declared.values()):
        pytest.fail(f"{owner} must be a mapping of capability name to a non-empty reason, got {declared!r}")
    unknown = set(declared) - CAPABILITIES
    if unknown:
        pytest.fail(f"{owner} names unknown capabilities {sorted(unknown)}; use {sorted(CAPABILITIES)}", pytrace=False)
    return dict(declared)


class SuiteBase:
    """Fixtures every conformance mixin shares; subclass a mixin (or ``BackendSuite``) and override ``backend``."""

    unsupported: ClassVar[Mapping[str, str]] = {}
    """Capabilities this backend does not support, each with the reason (see ``CAPABILITIES``).

    Merged over the backend class's own ``unsupported_capabilities`` (the test class wins).
    """

    @pytest.fixture
    def backend(self) -> Any:
        """Override: return or yield a fresh backend instance (function-scoped)."""
        raise NotImplementedError(f"{type(self).__name__} must override the `backend` fixture")

    @pytest.fixture
    def raw_storage(self, backend: Any) -> RawStorage | None:
        """Override (optional): a :class:`RawStorage` over the backend's storage, for the tests that look underneath."""
        return None

    @pytest.fixture
    def suite_ids(self) -> Ids:
        """Fresh unique scopes for one test."""
        return Ids()

    @pytest.fixture(autouse=True)
    def suite_subject(self, request: pytest.FixtureRequest, backend: Any, raw_storage: RawStorage | None) -> Subject:
        """The backend with its declared capabilities; skips or fails the test by what it needs."""
        suite = type(self).__name__
        cls = type(backend).__name__
        unsupported = {
            **_declared(f"{cls}.unsupported_capabilities", getattr(backend, "unsupported_capabilities", {})),
            **_declared(f"{suite}.unsupported", self.unsupported),
        }
        subject = Subject(backend, unsupported, raw_storage, suite)
        wanted: Needs = getattr(request.function, "_statestore_needs", Needs())
        for capability in wanted.capabilities:
            if capability in unsupported:
                pytest.skip(f"{cls} does not support {capability}: {unsupported[capability]}")
            if capability == VALUE_API and not subject.has(VALUE_API, wanted.flavour):
                pytest.skip(
                    f"{cls} offers references through Airflow's four hooks only, without statestore's "
                    "store_value/load_value/discard_value/reference_for that this test drives"
                )
            subject.check(capability, wanted.flavour)
        if wanted.raw and raw_storage is None:
            pytest.skip(
                f"{suite} does not override the `raw_storage` fixture, so this test cannot see what storage "
                "holds underneath get() (see statestore.core.testing.RawStorage)"
            )
        return subject
