"""Engines for the metastore: URL handling, SQLite setup (WAL, real transactions) and per-event-loop async engines."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from statestore.core.config import mask_secret
from statestore.core.errors import ConfigurationError

__all__ = [
    "AsyncEngines",
    "aretry_stale",
    "display_url",
    "driver_urls",
    "make_engine",
    "parse_url",
    "retry_stale",
    "transaction",
]

T = TypeVar("T")
_SQLITE_BUSY_TIMEOUT_MS = 60_000
# backend name -> (sync driver, async driver); a URL naming any known driver is mapped to both.
_DRIVERS = {
    "sqlite": ("pysqlite", "aiosqlite"),
    "postgresql": ("psycopg", "psycopg"),
    "mysql": ("pymysql", "aiomysql"),
    "mariadb": ("pymysql", "aiomysql"),
}
_ASYNC_ONLY = {"aiosqlite", "asyncpg", "aiomysql", "asyncmy", "psycopg_async"}


def display_url(url: sa.URL) -> str:
    """``url`` safe to show: its password and any credential query parameter (``?password=``) masked."""
    return mask_secret("url", url.render_as_string(hide_password=True))


def parse_url(raw: str | sa.URL) -> sa.URL:
    """Parse a SQLAlchemy URL, or raise ``ConfigurationError`` saying what is wrong (password masked)."""
    try:
        url = sa.make_url(raw)
    except Exception as exc:  # noqa: BLE001 - ArgumentError, ValueError: both mean "not a URL"
        raise ConfigurationError(
            "[state_store] sql_alchemy_conn is not a SQLAlchemy URL (expected e.g. sqlite:////path/statestore.db, "
            f"postgresql+psycopg://user@host/db or mysql+pymysql://user@host/db): {type(exc).__name__}"
        ) from None
    if url.get_backend_name() not in _DRIVERS:
        raise ConfigurationError(
            f"the metastore supports SQLite, PostgreSQL and MySQL/MariaDB; got {display_url(url)!r}"
        )
    return url


def driver_urls(url: sa.URL) -> tuple[sa.URL, sa.URL]:
    """The sync and async URLs for ``url``, whichever of the two kinds of driver it names."""
    backend = url.get_backend_name()
    sync_driver, async_driver = _DRIVERS[backend]
    driver = url.get_driver_name()
    if driver in _ASYNC_ONLY:
        sync_url = url.set(drivername=f"{backend}+{sync_driver}")
        return sync_url, url
    sync_url = url if "+" in url.drivername else url.set(drivername=f"{backend}+{sync_driver}")
    if driver == "psycopg":
        return sync_url, sync_url  # psycopg 3 is both; SQLAlchemy picks its async variant itself
    return sync_url, url.set(drivername=f"{backend}+{async_driver}")


def is_memory_sqlite(url: sa.URL) -> bool:
    """True for ``sqlite://`` / ``sqlite:///:memory:``: one database per connection unless shared."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


_BEGIN = {"sqlite": "BEGIN IMMEDIATE", "mysql": "START TRANSACTION", "mariadb": "START TRANSACTION"}


@contextmanager
def transaction(connection: sa.Connection) -> Iterator[sa.Connection]:
    """Run the block as one transaction on an autocommit connection; commit at the end, roll back on error.

    The engines run single statements in autocommit mode: each is its own atomic transaction,
    which is all most operations need, in one round trip. An operation of several statements
    runs inside this block instead. On SQLite it begins with ``BEGIN IMMEDIATE``, so concurrent
    writers queue on the busy timeout instead of interleaving or failing to upgrade a read lock.
    """
    connection.exec_driver_sql(_BEGIN.get(connection.dialect.name, "BEGIN"))
    try:
        yield connection
    except BaseException:
        with suppress(sa.exc.DBAPIError):  # a broken connection is invalidated and never reused
            connection.exec_driver_sql("ROLLBACK")
        raise
    connection.exec_driver_sql("COMMIT")


def _setup_sqlite(engine: sa.Engine, *, wal: bool) -> None:
    """The driver never begins transactions on its own (see :func:`transaction`); WAL for files."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


_AUTOCOMMIT: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "skip_autocommit_rollback": True}
"""Engine options: no implicit BEGIN/COMMIT around a statement and no ROLLBACK when a connection goes back to the pool.

There is no ``pool_pre_ping`` (a round trip per checkout): :func:`retry_stale` runs an operation
once more when its pooled connection turned out to be dead.
"""


def _engine_options(url: sa.URL) -> dict[str, Any]:
    if is_memory_sqlite(url):
        return {**_AUTOCOMMIT, "poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    return _AUTOCOMMIT


def make_engine(url: sa.URL, *, create_directory: bool = False) -> sa.Engine:
    """A sync engine for ``url``; for an SQLite file, switch on WAL and check that its directory exists.

    A missing directory is created only with ``create_directory`` (statestore's own home): anywhere
    else it is more likely a typo than a wish for a new directory tree.
    """
    if url.get_backend_name() == "sqlite" and not is_memory_sqlite(url):
        directory = Path(str(url.database)).expanduser().parent
        if create_directory:
            directory.mkdir(parents=True, exist_ok=True)
        elif not directory.is_dir():
            raise ConfigurationError(
                f"the directory of the SQLite database {url.database} does not exist: create it "
                f"(mkdir -p {directory}) or correct the URL ([state_store] sql_alchemy_conn, or --url)"
            )
    engine = sa.create_engine(url, **_engine_options(url))
    if url.get_backend_name() == "sqlite":
        _setup_sqlite(engine, wal=not is_memory_sqlite(url))
    return engine


def retry_stale(engine: sa.Engine, operation: Callable[[sa.Connection], T]) -> T:
    """Run ``operation`` on a pooled connection, and once more on a fresh one if that connection was dead.

    A connection the server closed while it sat in the pool (restart, idle timeout) fails on its
    first statement and is invalidated with the rest of the pool. Metastore operations are safe to
    repeat: upserts, deletes and reads, or a transaction that the broken connection rolled back.
    """
    try:
        with engine.connect() as connection:
            return operation(connection)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    with engine.connect() as connection:
        return operation(connection)


async def aretry_stale(engine: AsyncEngine, operation: Callable[[sa.Connection], T]) -> T:
    """Async twin of :func:`retry_stale` (``operation`` runs on the async connection's sync facade)."""
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(operation)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    async with engine.connect() as connection:
        return await connection.run_sync(operation)


async def _dispose_at_loop_shutdown(engine: AsyncEngine) -> AsyncIterator[None]:
    """An async generator the loop finalises on shutdown (``asyncio.run``), disposing the engine in time."""
    try:
        yield
    finally:
        await engine.dispose()


class AsyncEngines:
    """One async engine per running event loop; pooled connections never cross loops.

    A pool's connections belong to the loop that opened them. Each engine registers an async
    generator with its loop, whose ``finally`` disposes the engine when the loop shuts down
    (``asyncio.run`` and pytest-asyncio do this), so connections close on their own loop.
    SQLite connections are cheap and not pooled.
    """

    def __init__(self, url: sa.URL) -> None:
        self.url = url
        self._engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AsyncEngine, Any]] = (
            weakref.WeakKeyDictionary()
        )

    async def get(self) -> AsyncEngine:
        """The engine for the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        found = self._engines.get(loop)
        if found is not None:
            return found[0]
        is_sqlite = self.url.get_backend_name() == "sqlite"
        engine = create_async_engine(self.url, **_AUTOCOMMIT, **({"poolclass": NullPool} if is_sqlite else {}))
        if is_sqlite:
            _setup_sqlite(engine.sync_engine, wal=True)
        finalizer = _dispose_at_loop_shutdown(engine)
        await finalizer.__anext__()
        self._engines[loop] = (engine, finalizer)
        return engine

    async def dispose(self) -> None:
        """Close the running loop's engine now (e.g. before closing a loop that skips asyncgen shutdown)."""
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()
