"""Metastore hardening: the asset sweep against reactivating writers, MariaDB's packet limit, SQLite durability."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from statestore.core import AssetScope, Config, ConfigurationError, StateStore, TaskScope, ValueTooLargeError
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.metastore.schema import asset_state, task_state


@pytest.fixture
def backend(metastore_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
    b = MetastoreStoreBackend(metastore_url, config=Config.from_dict({"state_store": {"state_cleanup_batch_size": 7}}))
    yield b
    b.dispose()


@pytest.mark.parametrize("batch_size", [0, 7])
def test_sweep_never_deletes_a_write_that_reactivates_the_asset(metastore_url: sa.URL, batch_size: int) -> None:
    """Each round: an inactive asset with state; ``cleanup()`` and a reactivating ``set`` start together.

    The write overwrites a key the sweep is deleting (and adds one). Every acknowledged
    reactivating write must survive, however the two interleave.
    """
    config = Config.from_dict({"state_store": {"state_cleanup_batch_size": batch_size}})
    backend = MetastoreStoreBackend(metastore_url, config=config)
    rounds, lost = 60, []
    for i in range(rounds):
        scope = AssetScope(name=f"sweep-race-{uuid.uuid4().hex}")
        for k in range(20):
            backend.set(scope, f"k{k}", '"old"')
        assert backend.deactivate_asset(scope)
        start = threading.Barrier(2)
        errors: list[BaseException] = []

        def sweep(start: threading.Barrier = start, errors: list[BaseException] = errors) -> None:
            start.wait()
            try:
                backend.cleanup()
            except BaseException as exc:
                errors.append(exc)

        sweeper = threading.Thread(target=sweep)
        sweeper.start()
        start.wait()
        backend.set(scope, f"k{i % 20}", f'"{i}"')  # acknowledged when it returns
        backend.set(scope, "new", f'"{i}"')
        sweeper.join(timeout=60)
        assert errors == []
        if backend.get(scope, f"k{i % 20}") != f'"{i}"' or backend.get(scope, "new") != f'"{i}"':
            lost.append(i)
    backend.dispose()
    assert lost == [], f"{len(lost)} of {rounds} rounds lost an acknowledged reactivating write"


def test_sweep_removes_inactive_state_in_bounded_batches(backend: MetastoreStoreBackend) -> None:
    scopes = [AssetScope(name=f"sweep-batches-{uuid.uuid4().hex}") for _ in range(3)]
    for scope in scopes:
        for k in range(10):
            backend.set(scope, f"k{k}", '"v"')
        backend.deactivate_asset(scope)
    backend.set(scopes[0], "k0", '"again"')  # reactivated: keeps its state
    batches: list[int] = []
    result = backend.cleanup(progress=lambda kind, n: batches.append(n) if kind == "orphaned_asset" else None)
    assert result.by_kind["orphaned_asset"] >= 20
    assert max(batches) <= 7
    assert backend.get(scopes[0], "k5") == '"v"'
    assert [backend.get(s, "k5") for s in scopes[1:]] == [None, None]


@pytest.fixture
def mysql_backend(mysql_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
    b = MetastoreStoreBackend(mysql_url, config=Config.from_dict({}))
    yield b
    b.dispose()


@pytest.mark.parametrize(
    "scope", [TaskScope("packet", "r", "t"), AssetScope(name="packet-asset")], ids=["task", "asset"]
)
def test_value_over_max_allowed_packet_is_refused_before_sending(
    mysql_backend: MetastoreStoreBackend, scope: TaskScope | AssetScope
) -> None:
    """With no inline limit, a value over the server's max_allowed_packet fails fast with the size-limit error."""
    store = StateStore(mysql_backend, config=Config.from_dict({"state_store": {"max_value_storage_bytes": "0"}}))
    with mysql_backend.engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    accessor = store.task_store(scope) if isinstance(scope, TaskScope) else store.asset_store(scope)
    started = time.monotonic()
    with pytest.raises(ValueTooLargeError, match=r"above the database server's max_allowed_packet") as info:
        accessor.set("big", "x" * (limit + 1))
    assert time.monotonic() - started < 5, "the value must be refused before it is sent"
    assert "xxxx" not in str(info.value)
    assert accessor.get("big") is None
    quotes = "'" * (limit // 2 + 1)  # each quote is escaped: 2 bytes on the wire
    with pytest.raises(ValueTooLargeError):
        accessor.set("quotes", quotes)
    accessor.set("fits", "y" * (limit // 4))  # well under the limit: written and read back
    assert accessor.get("fits") == "y" * (limit // 4)


@pytest.mark.parametrize(("setting", "pragma"), [(None, 2), ("full", 2), ("NORMAL", 1)])
def test_sqlite_synchronous_setting(fresh_sqlite_url: sa.URL, setting: str | None, pragma: int) -> None:
    """``[state_store] sqlite_synchronous``: full by default (an acknowledged write survives a power loss)."""
    values = {} if setting is None else {"state_store": {"sqlite_synchronous": setting}}
    b = MetastoreStoreBackend(fresh_sqlite_url, config=Config.from_dict(values))
    b.set(TaskScope("d", "r", "t"), "k", "1")
    with b.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == pragma
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    b.dispose()


def test_sqlite_synchronous_rejects_other_values() -> None:
    with pytest.raises(ConfigurationError, match=r"sqlite_synchronous must be full or normal, got 'off'"):
        Config.from_dict({"state_store": {"sqlite_synchronous": "off"}})


def test_tables_untouched_by_refused_values(mysql_backend: MetastoreStoreBackend) -> None:
    """Nothing at all reaches the tables when the packet check refuses a value."""
    scope, key = TaskScope("packet-empty", uuid.uuid4().hex, "t"), f"refused-{uuid.uuid4().hex}"
    with mysql_backend.engine.connect() as conn:
        limit = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    for target in (scope, AssetScope(name=f"packet-{uuid.uuid4().hex}")):
        with pytest.raises(ValueTooLargeError):
            mysql_backend.set(target, key, '"' + "z" * limit + '"')
    with mysql_backend.engine.connect() as conn:
        for table in (task_state, asset_state):
            assert conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.key == key)).scalar() == 0
