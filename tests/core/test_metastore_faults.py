"""The metastore's retry rule and error mapping against real servers (see ``statestore.core.metastore.engines``).

Faults are made for real: a lock held from another session stops an operation in the middle of
its transaction, a deferred trigger that sleeps holds a ``COMMIT`` open, and the operation's
connection is then killed from an admin session. Tests wait for those states, never a fixed time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest
import sqlalchemy as sa

from statestore.core import AssetScope, CommitUnknownError, Config, StorageError, TaskScope
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.metastore.schema import digest

from ..conftest import MYSQL_URL, POSTGRES_URL, kill_connections

REF = '{"__airflow_state_ref__": "x://version-1"}'


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.01)


def _in_thread(fn: Callable[[], object]) -> Future[object]:
    """Run ``fn`` in a thread; the future holds its result or exception."""
    future: Future[object] = Future()

    def target() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=target, daemon=True).start()
    return future


def _blocked_on_lock(url: sa.URL, admin: sa.Connection) -> bool:
    """True when a session of the backend on ``url`` waits for the asset state row the test holds locked.

    PostgreSQL reports the lock wait itself. MariaDB's ``INNODB_TRX`` does too, but it is a
    server-wide cache refreshed only once nobody has read it for 0.1 s: polled every 10 ms it
    can show the same stale rows for ever (it did, on the dependency floors, where the poll
    started before the write blocked). ``PROCESSLIST`` is live: the backend's upsert of the state
    row in flight while the test holds that row's lock can only be waiting for it.
    """
    if url.get_backend_name() == "postgresql":
        sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app AND wait_event_type = 'Lock'"
        return bool(admin.execute(sa.text(sql), {"app": url.query["application_name"]}).scalar())
    sql = (
        "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = :db AND COMMAND = 'Query' "
        "AND INFO LIKE 'INSERT INTO statestore_asset_state %'"
    )
    return bool(admin.execute(sa.text(sql), {"db": url.database}).scalar())


@pytest.fixture
def lock_holder(server_url: sa.URL) -> Iterator[sa.Connection]:
    """An admin session outside the backend's (MariaDB: another default database, so kills spare it)."""
    if server_url.get_backend_name() == "postgresql":
        url = server_url.update_query_dict({"application_name": "statestore-test-admin"})
    else:
        url = sa.make_url(MYSQL_URL)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        yield conn
    engine.dispose()


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("value", ['"inline"', REF], ids=["inline", "reference"])
def test_connection_dying_inside_an_asset_transaction_is_retried(
    server_url: sa.URL, lock_holder: sa.Connection, flavour: str, value: str
) -> None:
    """Blocked mid-transaction on a row lock, its connection killed: the write is retried, never surfaced raw."""
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = AssetScope(name=f"faults-{uuid.uuid4().hex}")
    backend.set(scope, "k", '"old"')
    table = (
        "statestore_asset_state"
        if server_url.get_backend_name() == "postgresql"
        else f"`{server_url.database}`.statestore_asset_state"
    )
    lock_holder.exec_driver_sql("BEGIN")
    lock_holder.execute(sa.text(f"SELECT 1 FROM {table} WHERE key_hash = :h FOR UPDATE"), {"h": digest("k")})
    admin_engine = sa.create_engine(
        MYSQL_URL
        if server_url.get_backend_name() != "postgresql"
        else server_url.update_query_dict({"application_name": "statestore-test-watch"}),
        isolation_level="AUTOCOMMIT",
    )
    write = (
        (lambda: backend.set(scope, "k", value))
        if flavour == "sync"
        else (lambda: asyncio.run(backend.aset(scope, "k", value)))
    )
    done = _in_thread(write)
    try:
        with admin_engine.connect() as watch:
            _wait_for(lambda: _blocked_on_lock(server_url, watch), "the write waits for the row lock")
        assert kill_connections(server_url) >= 1
    finally:
        lock_holder.exec_driver_sql("ROLLBACK")
        admin_engine.dispose()
    assert done.result(timeout=60) is None
    assert backend.get(scope, "k") == value
    backend.dispose()


@pytest.fixture
def slow_first_commit(postgresql_url: sa.URL) -> Iterator[sa.URL]:
    """A deferred trigger that holds the first ``COMMIT`` of a task row containing ``slow-commit`` open for 60 s.

    A sequence (not rolled back with the killed transaction) makes only the first such commit slow.
    Yields the URL of a backend with an application name of its own (to find and kill its session).
    """
    admin = sa.create_engine(postgresql_url, isolation_level="AUTOCOMMIT")
    token = uuid.uuid4().hex[:8]
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SEQUENCE slow_{token}")
        conn.exec_driver_sql(
            f"CREATE FUNCTION slow_{token}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF position('slow-commit' in NEW.value) > 0 AND nextval('slow_{token}') = 1 "
            "THEN PERFORM pg_sleep(60); END IF; RETURN NULL; END $$"
        )
        conn.exec_driver_sql(
            f"CREATE CONSTRAINT TRIGGER slow_{token} AFTER INSERT OR UPDATE ON statestore_task_state "
            f"DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_{token}()"
        )
    try:
        yield postgresql_url.update_query_dict({"application_name": f"statestore-{token}"})
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP TRIGGER slow_{token} ON statestore_task_state")
            conn.exec_driver_sql(f"DROP FUNCTION slow_{token}()")
            conn.exec_driver_sql(f"DROP SEQUENCE slow_{token}")
        admin.dispose()


def _kill_during_commit(url: sa.URL, write: Callable[[], object]) -> Future[object]:
    """Start ``write``, wait until its session sleeps inside COMMIT, kill it; the future holds the outcome."""
    watch = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    done = _in_thread(write)
    sleeping = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app AND wait_event = 'PgSleep'"
    with watch.connect() as conn:
        _wait_for(
            lambda: bool(conn.execute(sa.text(sleeping), {"app": url.query["application_name"]}).scalar()),
            "COMMIT sleeps",
        )
    watch.dispose()
    assert kill_connections(url) >= 1
    return done


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_reference_write_cut_off_during_commit_is_not_repeated(slow_first_commit: sa.URL, flavour: str) -> None:
    """A row holding a reference whose COMMIT lost its connection: CommitUnknownError, never a blind repeat."""
    backend = MetastoreStoreBackend(slow_first_commit, config=Config.from_dict({}))
    scope = TaskScope("faults", uuid.uuid4().hex, "t")
    value = '{"__airflow_state_ref__": "x://slow-commit"}'
    write = (
        (lambda: backend.set(scope, "k", value))
        if flavour == "sync"
        else (lambda: asyncio.run(backend.aset(scope, "k", value)))
    )
    done = _kill_during_commit(slow_first_commit, write)
    with pytest.raises(CommitUnknownError, match="may or may not have been applied") as info:
        done.result(timeout=60)
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
    backend.dispose()


def test_inline_write_cut_off_during_commit_is_repeated(slow_first_commit: sa.URL) -> None:
    """An inline value is safe to write again: the write is retried and acknowledged."""
    backend = MetastoreStoreBackend(slow_first_commit, config=Config.from_dict({}))
    scope = TaskScope("faults", uuid.uuid4().hex, "t")
    done = _kill_during_commit(slow_first_commit, lambda: backend.set(scope, "k", '"slow-commit"'))
    assert done.result(timeout=60) is None
    assert backend.get(scope, "k") == '"slow-commit"'
    backend.dispose()


SECRET = "s3cr3t-value"
_MYSQL_REFUSE = (
    "CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW BEGIN DECLARE msg VARCHAR(200); "
    "IF LOCATE('{secret}', NEW.value) > 0 THEN SET msg = CONCAT('refused value ''', LEFT(NEW.value, 100), ''''); "
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = msg; END IF; END"
)
_POSTGRES_REFUSE = (
    "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF position('{secret}' in NEW.value) > 0 THEN RAISE EXCEPTION USING MESSAGE = "
    "'refused value ' || quote_literal(NEW.value); END IF; RETURN NEW; END $$"
)


@pytest.fixture
def refusing_triggers(server_url: sa.URL) -> Iterator[sa.URL]:
    """Triggers that refuse a row whose value holds ``SECRET``, quoting the value in their error (as drivers do)."""
    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"refuse_{uuid.uuid4().hex[:8]}"
    tables = ("statestore_task_state", "statestore_asset_state")
    postgres = server_url.get_backend_name() == "postgresql"
    with engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql(_POSTGRES_REFUSE.format(name=name, secret=SECRET))
        for n, table in enumerate(tables):
            if postgres:
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            else:
                conn.exec_driver_sql(_MYSQL_REFUSE.format(name=f"{name}_{n}", table=table, secret=SECRET))
    try:
        yield server_url
    finally:
        with engine.connect() as conn:
            for n, table in enumerate(tables):
                conn.exec_driver_sql(f"DROP TRIGGER {name} ON {table}" if postgres else f"DROP TRIGGER {name}_{n}")
            if postgres:
                conn.exec_driver_sql(f"DROP FUNCTION {name}()")
        engine.dispose()


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize(
    "scope", [TaskScope("faults", "r", "t"), AssetScope(name="faults-asset")], ids=["task", "asset"]
)
def test_database_errors_are_storage_errors_without_the_value(
    refusing_triggers: sa.URL, flavour: str, scope: TaskScope | AssetScope
) -> None:
    """A write the database refuses with an error quoting the value: StorageError, cause chained, value unseen."""
    backend = MetastoreStoreBackend(refusing_triggers, config=Config.from_dict({}))
    key, value = f"k-{uuid.uuid4().hex}", f'"{SECRET}"'
    write = (
        (lambda: backend.set(scope, key, value))
        if flavour == "sync"
        else (lambda: asyncio.run(backend.aset(scope, key, value)))
    )
    with pytest.raises(StorageError, match=r"could not write (task|asset) key 'k-") as info:
        write()
    assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
    assert SECRET not in str(info.value)
    assert "refused value" in str(info.value)  # the driver's message, its quoted part elided
    assert backend.get(scope, key) is None
    backend.dispose()
