"""The statestore conformance suite: pytest tests every ``BaseStoreBackend`` must pass.

Subclass :class:`BackendSuite` in a test module and override its ``backend`` fixture (in the style
of fsspec's abstract tests or SQLAlchemy's dialect suite)::

    import pytest
    from statestore.core.testing import BackendSuite

    class TestMyBackend(BackendSuite):
        unsupported = {"listing": "this store cannot enumerate keys"}   # capability -> reason

        @pytest.fixture
        def backend(self):
            yield MyBackend(bucket="test")   # function-scoped; clean up afterwards if you like

Every test writes under ids unique to that test (a random token in each dag id, asset name and
uri, and a random asset id), so a fixture may share one server, bucket or database between tests
and even between concurrent test runs. The fixture must be synchronous; a backend with an async
client should create it lazily inside the running loop.

Capabilities a backend may opt out of, each with a stated reason (the reason shows up in the skip):

* ``listing`` — ``keys()``/``akeys()`` (the ``_keys`` primitive);
* ``cleanup`` — ``cleanup()`` reclaiming expired entries from storage;
* ``references`` — the worker-side reference hooks (``store_value``/``load_value`` and Airflow's
  ``serialize_*_state_store_to_ref``/``deserialize_*_state_store_from_ref``);
* ``async`` — the ``a*`` twins (only opt out if the async methods are deliberately unsupported).

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
    "statestore.core.testing.suite", "statestore.core.testing.lifecycle", "statestore.core.testing.forking"
)

from statestore.core.testing.forking import ForkSuite  # noqa: E402 - after the assert-rewrite registration
from statestore.core.testing.lifecycle import LifecycleSuite  # noqa: E402
from statestore.core.testing.suite import (  # noqa: E402
    CAPABILITIES,
    ODD_KEYS,
    UNSTORABLE,
    AirflowLikeAssetScope,
    AirflowLikeTaskScope,
    BackendSuite,
)

__all__ = [
    "CAPABILITIES",
    "ODD_KEYS",
    "UNSTORABLE",
    "AirflowLikeAssetScope",
    "AirflowLikeTaskScope",
    "BackendSuite",
    "ForkSuite",
    "LifecycleSuite",
]
