"""The conformance suite fails deliberately broken backends, at the tests that cover each bug.

Each case runs the suite in a separate pytest session (``pytester``) with pytest-asyncio in its
default strict mode, as a third party without ``asyncio_mode=auto`` would.
"""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

HEADER = """
import pytest
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.base import CleanupResult, StoredEntry, utcnow
from statestore.core.config import Config
from statestore.core.naming import scope_path, validate_key
from statestore.core.primitive import PrimitiveStoreBackend
from statestore.core.scopes import AssetScope, TaskScope, to_scope
from statestore.core.testing import *
"""

EIGHT_METHODS = """
import json


class BackendOfEightMethods:
    # Airflow's eight methods over a dict, nothing else: no keys(), cleanup() or reference hooks.
    def __init__(self, *, config=None):
        self.data = {}

    def _name(self, scope, key):
        return scope_path(to_scope(scope)), validate_key(key)

    def get(self, scope, key, *, session=None):
        value, expires_at = self.data.get(self._name(scope, key), (None, None))
        return None if expires_at is not None and expires_at <= utcnow() else value

    def set(self, scope, key, value, *, expires_at=None, session=None):
        self.data[self._name(scope, key)] = (value, expires_at)

    def delete(self, scope, key, *, session=None):
        self.data.pop(self._name(scope, key), None)

    def clear(self, scope, *, all_map_indices=False, session=None):
        path = scope_path(to_scope(scope), all_map_indices=all_map_indices)
        for name in [n for n in self.data if n[0][: len(path)] == path]:
            del self.data[name]

    async def aget(self, scope, key, *, session=None):
        return self.get(scope, key)

    async def aset(self, scope, key, value, *, expires_at=None, session=None):
        self.set(scope, key, value, expires_at=expires_at)

    async def adelete(self, scope, key, *, session=None):
        self.delete(scope, key)

    async def aclear(self, scope, *, all_map_indices=False, session=None):
        self.clear(scope, all_map_indices=all_map_indices)
"""

BACKENDS = {
    "ignores_expiry": """
class Broken(MemoryStoreBackend):
    # Drops the expiry when writing, and its public get skips the base class's expiry check.
    def _set(self, scope, key, value, expires_at, session):
        super()._set(scope, key, value, None, session)

    def get(self, scope, key, *, session=None):
        entry = self._get(to_scope(scope), validate_key(key), session)
        return None if entry is None else entry.value
""",
    "naive_naming": """
class Broken(PrimitiveStoreBackend):
    # Names entries by joining ids with '/', so ('a/b', 'c') and ('a', 'b/c') collide.
    def __init__(self, *, config=None):
        super().__init__(config=config)
        self.data = {}

    def _name(self, scope):
        if isinstance(scope, TaskScope):
            return f"{scope.dag_id}/{scope.run_id}/{scope.task_id}/{scope.map_index}"
        return str(scope.name or scope.uri or scope.asset_id)

    def _get(self, scope, key, session):
        return self.data.get(f"{self._name(scope)}/{key}")

    def _set(self, scope, key, value, expires_at, session):
        self.data[f"{self._name(scope)}/{key}"] = StoredEntry(value, expires_at)

    def _delete(self, scope, key, session):
        self.data.pop(f"{self._name(scope)}/{key}", None)

    def _clear(self, scope, all_map_indices, session):
        prefix = self._name(scope) + "/"
        for name in [n for n in self.data if n.startswith(prefix)]:
            del self.data[name]

    def _keys(self, scope, session):
        prefix = self._name(scope) + "/"
        return [n[len(prefix):] for n in self.data if n.startswith(prefix)]
""",
    "clear_ignores_map_index": """
class Broken(MemoryStoreBackend):
    # Clears every map index of a task, even when asked for one.
    def _clear(self, scope, all_map_indices, session):
        super()._clear(scope, True, session)
""",
    "uri_first_identity": """
class Broken(MemoryStoreBackend):
    # Identifies an asset by its uri when it has one, so two names sharing a uri share state.
    def _identity(self, scope):
        return AssetScope(uri=scope.uri) if isinstance(scope, AssetScope) and scope.uri else scope

    def _get(self, scope, key, session):
        return super()._get(self._identity(scope), key, session)

    def _set(self, scope, key, value, expires_at, session):
        super()._set(self._identity(scope), key, value, expires_at, session)

    def _delete(self, scope, key, session):
        super()._delete(self._identity(scope), key, session)

    def _clear(self, scope, all_map_indices, session):
        super()._clear(self._identity(scope), all_map_indices, session)

    def _keys(self, scope, session):
        return super()._keys(self._identity(scope), session)
""",
    "skips_input_rules": """
class Broken(MemoryStoreBackend):
    # Its public set checks only the type of its arguments, not the input rules.
    def set(self, scope, key, value, *, expires_at=None, session=None):
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("str")
        if not key or len(key) > 512:
            raise ValueError("non-empty, at most 512")
        self._set(to_scope(scope), key, value, expires_at, session)
""",
    "cleanup_reclaims_nothing": """
class Broken(MemoryStoreBackend):
    # Relies on get() hiding expired entries and never reclaims them.
    def _cleanup(self, now):
        return CleanupResult()
""",
    "cleanup_reports_nothing": """
class Broken(MemoryStoreBackend):
    # Airflow's cleanup() signature: reclaims, returns None.
    def cleanup(self):
        super().cleanup()
""",
    "eight_methods_only": """
class Broken(BackendOfEightMethods):
    \"\"\"No keys(), cleanup() or reference hooks.\"\"\"
""",
    "default_hooks": """
class Broken(BackendOfEightMethods):
    # Airflow's default reference hooks: the value's JSON is its own "reference".
    def serialize_task_state_store_to_ref(self, *, value, key, scope):
        return json.dumps(value)

    serialize_asset_state_store_to_ref = serialize_task_state_store_to_ref

    def deserialize_task_state_store_from_ref(self, stored):
        return json.loads(stored)

    deserialize_asset_state_store_from_ref = deserialize_task_state_store_from_ref
""",
}
DECLARED = """
    unsupported_capabilities = {
        "listing": "a dict cannot say",
        "cleanup": "nothing to report",
        "references": "keeps values inline",
    }
"""

SUITE = """
class TestBroken({bases}):
    unsupported = {unsupported}

    @pytest.fixture
    def backend(self):
        return Broken(config=Config.from_dict({{}}))

    @pytest.fixture
    def raw_storage(self, backend):  # what storage holds, through the primitive of the broken backends that have one
        if hasattr(backend, "_get"):
            return type("Raw", (), {{"entry": lambda _, scope, key: backend._get(scope, key, None)}})()
"""


def run_suite(
    pytester: pytest.Pytester,
    backend: str,
    unsupported: str = "{}",
    *,
    bases: str = "BackendSuite",
    declared: str = "",
) -> tuple[set[str], int, list[str]]:
    """Run the suite against ``BACKENDS[backend]``: failed test names (without parameters), passed count, output."""
    source = EIGHT_METHODS + BACKENDS[backend] + declared  # class attributes, after the body of the backend class
    pytester.makepyfile(**{f"test_{backend}": HEADER + source + SUITE.format(unsupported=unsupported, bases=bases)})
    result = pytester.runpytest(
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_mode=strict",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        "-rfEs",
    )
    failed = {m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) \S+::TestBroken::(\w+)", result.stdout.str(), re.M)}
    return failed, result.parseoutcomes().get("passed", 0), result.stdout.lines


def test_catches_get_ignoring_expiry(pytester: pytest.Pytester) -> None:
    failed, passed, _ = run_suite(pytester, "ignores_expiry")
    assert failed == {
        "test_expiry",
        "test_expiry_async",
        "test_expiry_replaced",
        "test_expiry_replaced_async",
        "test_expiry_timezones",
        "test_expiry_timezones_async",
        "test_expiry_range",  # a value expiring at the earliest instant allowed reads as None
        "test_expiry_range_async",
        "test_expiry_stored",  # storage holds no expiry
        "test_expiry_stored_async",
        "test_cleanup_reclaims_expired",
    }
    assert passed > 100


def test_catches_colliding_names(pytester: pytest.Pytester) -> None:
    failed, passed, output = run_suite(pytester, "naive_naming")
    assert {"test_injective", "test_injective_async"} <= failed
    assert {"test_references_injective", "test_references_injective_async"} <= failed
    assert any("collides with" in line and "'b/c'" in line for line in output), "the failure names the collision"
    assert "test_set_then_get" not in failed
    assert passed > 100


def test_catches_clear_ignoring_map_index(pytester: pytest.Pytester) -> None:
    failed, passed, output = run_suite(pytester, "clear_ignores_map_index")
    assert failed == {
        "test_map_index_isolation",
        "test_map_index_isolation_async",
        "test_injective",  # the battery's mapped/unmapped pairs notice it too
        "test_injective_async",
    }
    assert any("clear of map index 0 removed it" in line for line in output)
    assert passed > 100


def test_catches_an_asset_identity_other_than_name_uri_id(pytester: pytest.Pytester) -> None:
    failed, passed, output = run_suite(pytester, "uri_first_identity")
    # the reference test notices too: the name + uri scope's reference names the name, storage used the uri
    assert failed == {"test_asset_identity", "test_asset_identity_async", "test_references", "test_references_async"}
    assert any("the asset-identity rule says" in line for line in output)
    assert passed > 100


def test_catches_a_set_that_skips_the_input_rules(pytester: pytest.Pytester) -> None:
    failed, passed, _ = run_suite(pytester, "skips_input_rules")
    edge_tests = {
        "test_unstorable_keys_refused",
        "test_nesting_limit",
        "test_unstorable_value_text_refused",
        "test_expiry_range",
        "test_naive_expiry_refused",
    }
    assert edge_tests | {f"{name}_async" for name in edge_tests} >= failed
    assert edge_tests <= failed
    assert passed > 100


def test_catches_cleanup_that_reclaims_nothing(pytester: pytest.Pytester) -> None:
    failed, _, output = run_suite(pytester, "cleanup_reclaims_nothing")
    assert failed == {"test_cleanup_reclaims_expired"}
    assert any("'expired' still stored after cleanup()" in line for line in output)


def test_opt_out_skips_with_reason(pytester: pytest.Pytester) -> None:
    failed, _, output = run_suite(pytester, "cleanup_reclaims_nothing", '{"cleanup": "storage expires keys itself"}')
    assert failed == set()
    assert any("does not support cleanup: storage expires keys itself" in line for line in output)


def test_unknown_capability_is_an_error(pytester: pytest.Pytester) -> None:
    failed, passed, output = run_suite(pytester, "cleanup_reclaims_nothing", '{"listng": "typo"}')
    assert passed == 0
    assert "test_overwrite" in failed
    assert any("unknown capabilities ['listng']" in line for line in output)


def test_opt_out_on_the_backend_class(pytester: pytest.Pytester) -> None:
    declared = '    unsupported_capabilities = {"cleanup": "storage expires keys itself"}\n'
    failed, _, output = run_suite(pytester, "cleanup_reclaims_nothing", declared=declared)
    assert failed == set()
    assert any("does not support cleanup: storage expires keys itself" in line for line in output)


def test_cleanup_returning_none_fails_only_the_reporting_tests(pytester: pytest.Pytester) -> None:
    failed, passed, output = run_suite(pytester, "cleanup_reports_nothing")
    assert failed == {"test_cleanup_reclaims_expired", "test_cleanup_on_empty_store"}
    assert any("Broken.cleanup() returned None" in line and "'cleanup'" in line for line in output)
    assert passed > 100


def test_a_capability_without_its_methods_must_be_declared(pytester: pytest.Pytester) -> None:
    bases = "BasicSuite, ListingSuite, CleanupSuite, ReferenceSuite, ExpirySuite"
    failed, passed, output = run_suite(pytester, "eight_methods_only", bases=bases)
    references = {"test_references", "test_references_injective", "test_tampered_references"}
    assert failed == {
        "test_keys",
        "test_keys_async",
        "test_odd_keys",  # lists when the backend can: it must say it cannot
        "test_injective",
        "test_cleanup_reclaims_expired",
        "test_cleanup_on_empty_store",
        "test_airflow_reference_hooks",
        "test_airflow_hooks_reject_tampered",
        *references,
        *{f"{name}_async" for name in references},
    }
    assert any(
        "Broken has no keys(), which the 'listing' capability needs, and does not declare 'listing' unsupported" in line
        and "`unsupported_capabilities = {'listing': '<reason>'}` on Broken" in line
        for line in output
    )
    assert any("Broken has no akeys()" in line for line in output)
    assert any("Broken has no cleanup()" in line for line in output)
    assert any("Broken has no serialize_task_state_store_to_ref()" in line for line in output)
    assert passed > 50


def test_a_backend_of_airflow_s_eight_methods_passes_once_it_declares(pytester: pytest.Pytester) -> None:
    bases = "BasicSuite, AsyncSuite, ListingSuite, CleanupSuite, ReferenceSuite, ExpirySuite, AssetIdentitySuite"
    failed, passed, output = run_suite(pytester, "eight_methods_only", bases=bases, declared=DECLARED)
    assert failed == set()
    assert any("does not support listing: a dict cannot say" in line for line in output)
    assert passed > 100


def test_airflow_s_default_hooks_must_be_declared(pytester: pytest.Pytester) -> None:
    failed, _, output = run_suite(pytester, "default_hooks", bases="ReferenceSuite")
    assert failed == {"test_airflow_reference_hooks", "test_airflow_hooks_reject_tampered"}
    assert any(
        "Broken returns the value itself from serialize_task_state_store_to_ref()" in line
        and "and does not declare 'references' unsupported" in line
        for line in output
    )
    assert any("offers references through Airflow's four hooks only" in line for line in output)
