"""The statestore conformance suite: pytest tests of the public backend contract.

The suite calls only what any backend has or declares: Airflow 3.3.2's eight methods (``get``,
``set``, ``delete``, ``clear`` and ``aget``/``aset``/``adelete``/``aclear``), ``cleanup()``, and the
public methods of the optional capabilities below. It accepts any object with those methods: a
subclass of ``statestore.core.BaseStoreBackend`` or ``PrimitiveStoreBackend``, or of Airflow's own
``BaseStoreBackend``.

Subclass :class:`BackendSuite` (every test) in a test module and override its ``backend`` fixture,
in the style of fsspec's abstract tests or SQLAlchemy's dialect suite::

    import pytest
    from statestore.core.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        unsupported = {"listing": "this store cannot enumerate keys"}   # capability -> reason

        @pytest.fixture
        def backend(self):
            yield MyBackend(bucket="test")   # function-scoped; clean up afterwards if you like

Or adopt the mixins one at a time (each is a complete, independent set of tests)::

    class TestMyBackend(BasicSuite, AsyncSuite, ExpirySuite): ...

* :class:`BasicSuite` — Airflow's sync ``get``/``set``/``delete``/``clear`` on task scopes (mapped and
  not) and asset scopes: round trips, overwrites, deletes and clears of missing data, map-index
  isolation and ``all_map_indices``, hostile keys, scopes and keys built to collide; ``cleanup()``
  returning None (Airflow's default) or a ``CleanupResult``.
* :class:`AsyncSuite` — the async twins of those tests, and concurrent calls in one event loop.
* :class:`ExpirySuite` — ``get`` hides values whose ``expires_at`` passed (capability ``expiry``),
  time zones, naive datetimes refused; with ``raw_storage``, the expiry is stored as written.
* :class:`ListingSuite` — ``keys``/``akeys`` list a scope's keys, sorted (capability ``listing``).
* :class:`CleanupSuite` — ``cleanup()`` reports a ``CleanupResult`` (capability ``cleanup``) and,
  with ``raw_storage``, removes expired entries from storage while keeping live ones.
* :class:`ReferenceSuite` — worker-side references (capability ``references``): Airflow's four
  hooks, and statestore's ``store_value``/``load_value``/``discard_value``/``reference_for`` when the
  backend has them (a backend with only the hooks skips those tests, saying so).
* :class:`EdgeInputSuite` — the core README's *Input rules* (NUL and lone surrogates, key length,
  ``map_index``/``asset_id``/nesting/``expires_at`` ranges) refused before anything is written.
* :class:`AssetIdentitySuite` — an asset is its name, else its uri, else its id; Airflow's scope
  objects (with extra fields) address the same state as statestore's.

Capabilities (``CAPABILITIES``): ``listing``, ``cleanup`` (reporting), ``references``, ``expiry``,
``async``. Every test that needs one runs unless it is declared unsupported, with a reason that
shows up in the skip — on the test class (``unsupported = {capability: reason}``) or on the backend
class (``unsupported_capabilities: ClassVar[Mapping[str, str]]``; the test class's entries win).
A backend lacking a capability's methods (``keys`` for ``listing``, Airflow's hooks for
``references``, ...) without declaring it fails, telling its author to implement or declare it; so
does a ``cleanup()`` returning None in the reporting tests.

What storage holds underneath ``get`` (an expired entry not yet reclaimed, the stored expiry) is
read through the optional ``raw_storage`` fixture: override it to return a :class:`RawStorage`
(``entry(scope, key) -> (value, expires_at) | None``); tests that need it skip, saying so, when it
is not overridden.

Every test writes under ids unique to that test (a random token in each dag id, asset name and
uri, and a random asset id), so a fixture may share one server, bucket or database between tests
and even between concurrent test runs. The fixture must be synchronous; a backend with an async
client should create it lazily inside the running loop.

:class:`LifecycleSuite` does the same for a worker-side backend under ``StateStore`` (races,
crashes, reconciliation): override its ``store`` fixture with a ``StateStore`` over a real
server store whose worker backend is yours.

:class:`ForkSuite` (same ``backend`` fixture) checks that an instance used before ``os.fork()``
keeps working in parent and child, with no value crossing between them (POSIX only).

Async tests carry ``@pytest.mark.asyncio`` explicitly, so the suite runs with pytest-asyncio in
its default strict mode (``pip install 'statestore-core[test]'`` brings it). pytest is imported
only here, never by the rest of ``statestore.core``.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(
    "statestore.core.testing.harness",
    "statestore.core.testing.suite",
    "statestore.core.testing.edge",
    "statestore.core.testing.references",
    "statestore.core.testing.lifecycle",
    "statestore.core.testing.forking",
)

from statestore.core.testing.edge import EdgeInputSuite  # noqa: E402 - after the assert-rewrite registration
from statestore.core.testing.forking import ForkSuite  # noqa: E402
from statestore.core.testing.harness import (  # noqa: E402
    CAPABILITIES,
    ODD_KEYS,
    UNSTORABLE,
    AirflowLikeAssetScope,
    AirflowLikeTaskScope,
    RawStorage,
)
from statestore.core.testing.lifecycle import LifecycleSuite  # noqa: E402
from statestore.core.testing.references import ReferenceSuite  # noqa: E402
from statestore.core.testing.suite import (  # noqa: E402
    AssetIdentitySuite,
    AsyncSuite,
    BackendSuite,
    BasicSuite,
    CleanupSuite,
    ExpirySuite,
    ListingSuite,
)

__all__ = [
    "CAPABILITIES",
    "ODD_KEYS",
    "UNSTORABLE",
    "AirflowLikeAssetScope",
    "AirflowLikeTaskScope",
    "AssetIdentitySuite",
    "AsyncSuite",
    "BackendSuite",
    "BasicSuite",
    "CleanupSuite",
    "EdgeInputSuite",
    "ExpirySuite",
    "ForkSuite",
    "LifecycleSuite",
    "ListingSuite",
    "RawStorage",
    "ReferenceSuite",
]
