"""Engines for the metastore: URL handling, SQLite setup, per-event-loop async engines, fork safety and retries.

**Retries.** Every operation runs through :func:`run` (sync) or :func:`arun` (async), which apply
one rule on every path (task and asset, reads and writes):

* *Transient* faults are: a connection that could not be opened or that died (server restart,
  idle timeout, a killed session, a dead connection inherited from the pool), a MariaDB/MySQL
  deadlock (1213) or lock wait timeout (1205), a PostgreSQL serialization failure (40001) or
  deadlock (40P01). The server rolls back what a deadlock, serialization failure or lock wait
  timeout interrupted, and a transaction whose connection died before its ``COMMIT`` was sent.
* After a transient fault an operation is run again, up to :data:`RETRY_ATTEMPTS` attempts in
  all with exponential backoff and jitter, **only when repeating it is safe**:

  - an operation marked *repeatable* may run again even if its first attempt committed, because
    a repeat is indistinguishable from the same call arriving later, while the call was still
    unacknowledged: reads, deletes, clears, cleanup batches and writes of inline values;
  - any other operation (a write of a row that holds a worker-side reference, which another
    process may read and act on, e.g. discard the object it names, as soon as it commits) runs
    inside one explicit transaction and is repeated only when that transaction certainly did
    not commit: the fault came before ``COMMIT`` was sent, or the server answered ``COMMIT``
    with an error. When the connection dies while ``COMMIT`` is in flight the outcome is
    unknown, and :class:`~statestore.core.errors.CommitUnknownError` is raised instead.

* Whatever still fails raises :class:`~statestore.core.errors.StorageError` (or its subclass
  ``CommitUnknownError``) with the SQLAlchemy error chained (engines hide SQL parameters, so it
  carries no stored value either); the message names the operation, the database (password
  masked) and the driver's error class, code and first line with quoted parts elided.

**Fork safety.** A process forked after using the metastore (Airflow's task runner, Celery's
prefork pool, ``multiprocessing``) must not share the parent's pooled connections: both would
talk on one socket and read each other's replies. :func:`forget_pool` is SQLAlchemy's documented
pattern for a child: ``engine.dispose(close=False)`` replaces the pool without touching the
parent's connections (which the child keeps referenced, so they are never closed from it).
``MetastoreStoreBackend`` calls it for its sync engine and every async engine right after a fork.

A fork copies every lock another thread holds at that instant, and the child, which has only the
forking thread, waits for ever on any of them. So ``os.fork()`` waits (a ``before`` hook; none
starts until the fork is done; :class:`_ForkGate`) while another thread is

* opening a connection: drivers take process-wide locks there, in OpenSSL (PyMySQL builds an
  SSL context for every connection, ``SSL_CTX_new`` takes OpenSSL 3's library locks, even
  when the server has TLS off), in the resolver and in hashing for authentication; a child
  forked while a parent thread was in ``SSL_CTX_new`` hung in its own first connect;
* creating an engine: the first one of a dialect imports its driver (SQLAlchemy imports
  ``aiomysql`` lazily), and a child forked during that import blocks on Python's import lock;
* running an SQLite operation: the library keeps per-process lock state for each database file,
  which a child inherits as it was at the fork. The child also *closes* the parent's idle SQLite
  connections (POSIX locks belong to a process, so this releases nothing of the parent's; a WAL
  database is never checkpointed away from under the parent, whose own connections keep their
  shared lock), so its own connections take real locks of their own. The async twins run SQLite
  operations on the sync engine in a worker thread, as aiosqlite would.

The gate covers the threads of this library only: a fork while *another* library's thread is
inside OpenSSL (an HTTPS client, say) can still hang the child on its first connection.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool, StaticPool

from statestore.core.config import mask_secret
from statestore.core.errors import CommitUnknownError, ConfigurationError, StateStoreError, StorageError

__all__ = [
    "RETRY_ATTEMPTS",
    "AsyncEngines",
    "Operation",
    "arun",
    "describe_error",
    "display_url",
    "driver_urls",
    "forget_pool",
    "make_engine",
    "parse_url",
    "run",
    "transaction",
]

T = TypeVar("T")
_SQLITE_BUSY_TIMEOUT_MS = 60_000
RETRY_ATTEMPTS = 5
"""Attempts in all for an operation that meets transient faults (see the module docstring)."""
_BACKOFF_SECONDS = 0.02
"""Upper bound of the first pause; it doubles per attempt (full jitter), so all pauses add up to < 0.35 s."""
_ROLLED_BACK_MYSQL = {1205, 1213}  # lock wait timeout, deadlock
_ROLLED_BACK_POSTGRES = {"40001", "40P01"}  # serialization failure, deadlock detected
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
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


class _CommitInterrupted(Exception):
    """The connection died while ``COMMIT`` was in flight (the ``DBAPIError`` is chained)."""


@contextmanager
def transaction(connection: sa.Connection) -> Iterator[sa.Connection]:
    """Run the block as one transaction on an autocommit connection; commit at the end, roll back on error.

    The engines run single statements in autocommit mode: each is its own atomic transaction,
    which is all most operations need, in one round trip. An operation of several statements
    runs inside this block instead. On SQLite it begins with ``BEGIN IMMEDIATE``, so concurrent
    writers queue on the busy timeout instead of interleaving or failing to upgrade a read lock.
    A connection that cannot be rolled back is invalidated, so it never returns to the pool
    inside a transaction; one that died during ``COMMIT`` raises ``_CommitInterrupted``.
    """
    connection.exec_driver_sql(_BEGIN.get(connection.dialect.name, "BEGIN"))
    try:
        yield connection
    except BaseException:
        if not connection.invalidated:  # a dead connection's transaction died with it on the server
            try:
                connection.exec_driver_sql("ROLLBACK")
            except sa.exc.SQLAlchemyError:
                connection.invalidate()
        raise
    try:
        connection.exec_driver_sql("COMMIT")
    except sa.exc.DBAPIError as exc:
        if _is_dead_connection(exc):
            raise _CommitInterrupted() from exc
        raise


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One metastore operation: what it does (for messages), the work on a connection, and how to retry it.

    ``repeatable``: running it again after it committed is harmless (see the module docstring);
    an operation that is not runs inside one transaction. ``transactional``: run ``fn`` inside
    :func:`transaction` (several statements that must commit together).
    """

    what: str
    fn: Callable[[sa.Connection], T]
    repeatable: bool = True
    transactional: bool = False

    def on(self, connection: sa.Connection) -> T:
        """Run the work on ``connection``, inside one transaction when needed."""
        if not (self.transactional or not self.repeatable):
            return self.fn(connection)
        with transaction(connection):
            return self.fn(connection)


def _is_dead_connection(exc: BaseException) -> bool:
    """A connection that could not be opened or died under the statement (SQLAlchemy's disconnect check)."""
    return isinstance(exc, sa.exc.DBAPIError) and (exc.connection_invalidated or exc.statement is None)


def _rolled_back_by_server(exc: BaseException) -> bool:
    """A deadlock, serialization failure or lock wait timeout: the server undid the work, a retry may succeed."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in _ROLLED_BACK_POSTGRES:
        return True
    args: tuple[Any, ...] = getattr(orig, "args", ())
    return bool(args) and args[0] in _ROLLED_BACK_MYSQL


def describe_error(exc: BaseException) -> str:
    """The driver's error class, code and first line, quoted parts (which may hold values) elided."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    code: object
    if len(args) == 2 and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        code, text = args[0], str(args[1])
    else:
        code, text = getattr(orig, "sqlstate", None), str(orig)
    line = _QUOTED.sub("'...'", text.strip().splitlines()[0] if text.strip() else "")[:200]
    return f"{type(orig).__name__}{f' [{code}]' if code else ''}{f': {line}' if line else ''}"


class _Attempts:
    """The retry rule of the module docstring for one call of an operation."""

    def __init__(self, operation: Operation[Any], location: str) -> None:
        self.operation = operation
        self.location = location
        self.count = 0

    def pause_after(self, exc: Exception) -> float:
        """Seconds to wait before the next attempt after ``exc``, or raise the error to report."""
        self.count += 1
        if isinstance(exc, StateStoreError):
            raise exc
        if isinstance(exc, _CommitInterrupted):
            cause = exc.__cause__ or exc
            if not self.operation.repeatable:
                raise CommitUnknownError(
                    f"the metastore {self.location} lost the connection while committing "
                    f"({self.operation.what}); the write may or may not have been applied: {describe_error(cause)}"
                ) from cause
            exc = cause  # type: ignore[assignment]
        elif not isinstance(exc, (sa.exc.SQLAlchemyError, UnicodeError)):  # a driver encoding text raises UnicodeError
            raise exc
        transient = _is_dead_connection(exc) or _rolled_back_by_server(exc)
        if not transient or self.count >= RETRY_ATTEMPTS:
            tried = f" after {self.count} attempts" if self.count > 1 else ""
            raise StorageError(
                f"the metastore {self.location} could not {self.operation.what}{tried}: {describe_error(exc)}"
            ) from exc
        return random.uniform(0, _BACKOFF_SECONDS * 2 ** (self.count - 1))


class _ForkGate:
    """Counts critical sections in flight per thread; ``os.fork()`` waits until no other thread is in one.

    A section is something a fork must not land in the middle of, because the child would inherit
    a lock the section holds in a thread the child does not have (see the module docstring).
    New sections wait while a fork is pending; a thread already inside one (a nested section, or
    another coroutine of its event loop) goes on, so the fork never waits on a thread it blocks.
    Sections of the forking thread itself are not waited for. A thread stuck for longer than
    ``_FORK_WAIT_SECONDS`` (a busy database) does not block the fork for ever: it goes ahead, as
    it would without the gate.
    """

    _FORK_WAIT_SECONDS = 30.0

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._active: dict[int, int] = {}  # thread id -> sections it is inside
        self._forking = False

    @contextmanager
    def section(self) -> Iterator[None]:
        """Hold the gate for the block."""
        me = threading.get_ident()
        with self._changed:
            if me not in self._active:
                self._changed.wait_for(lambda: not self._forking)
            self._active[me] = self._active.get(me, 0) + 1
        try:
            yield
        finally:
            with self._changed:
                self._active[me] -= 1
                if not self._active[me]:
                    del self._active[me]
                self._changed.notify_all()

    def before_fork(self) -> None:
        """Stop new sections and wait for those in flight in other threads."""
        me = threading.get_ident()
        with self._changed:
            self._forking = True
            self._changed.wait_for(lambda: self._active.keys() <= {me}, timeout=self._FORK_WAIT_SECONDS)

    def after_fork_in_parent(self) -> None:
        """Let sections start again."""
        with self._changed:
            self._forking = False
            self._changed.notify_all()

    def after_fork_in_child(self) -> None:
        """The child has only the forking thread, and the parent's lock state must not be trusted."""
        me = threading.get_ident()
        self._changed = threading.Condition()
        self._active = {me: self._active[me]} if me in self._active else {}
        self._forking = False


_FORK_GATE = _ForkGate()
os.register_at_fork(
    before=_FORK_GATE.before_fork,
    after_in_parent=_FORK_GATE.after_fork_in_parent,
    after_in_child=_FORK_GATE.after_fork_in_child,
)


def fork_gate(engine: sa.Engine) -> AbstractContextManager[None]:
    """What an operation on ``engine`` holds so that no fork lands in its middle (SQLite only)."""
    return _FORK_GATE.section() if engine.dialect.name == "sqlite" else nullcontext()


def _gate_connects(engine: sa.Engine) -> None:
    """Open ``engine``'s DBAPI connections inside the fork gate (see the module docstring)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: sa.Dialect, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        with _FORK_GATE.section():
            return dialect.connect(*cargs, **cparams)


def run(engine: sa.Engine, operation: Operation[T], location: str) -> T:
    """Run ``operation`` on a pooled connection, retrying transient faults where that is safe."""
    attempts = _Attempts(operation, location)
    while True:
        try:
            with fork_gate(engine), engine.connect() as connection:
                return operation.on(connection)
        except Exception as exc:  # noqa: BLE001 - classified (and re-raised or mapped) by pause_after
            time.sleep(attempts.pause_after(exc))


async def arun(engine: AsyncEngine, operation: Operation[T], location: str) -> T:
    """Async twin of :func:`run` (the work runs on the async connection's sync facade)."""
    attempts = _Attempts(operation, location)
    while True:
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(operation.on)
        except Exception as exc:  # noqa: BLE001 - classified (and re-raised or mapped) by pause_after
            await asyncio.sleep(attempts.pause_after(exc))


def _setup_sqlite(engine: sa.Engine, *, wal: bool, synchronous: str) -> None:
    """The driver never begins transactions on its own (see :func:`transaction`); WAL for files."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if wal:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cursor.close()


_AUTOCOMMIT: dict[str, Any] = {
    "isolation_level": "AUTOCOMMIT",
    "skip_autocommit_rollback": True,
    "hide_parameters": True,
}
"""Engine options: no implicit BEGIN/COMMIT around a statement, no ROLLBACK when a connection goes back
to the pool, and no SQL parameters (stored values) in error messages.

There is no ``pool_pre_ping`` (a round trip per checkout): :func:`run` runs an operation again
when its pooled connection turned out to be dead, where that is safe.
"""


def _engine_options(url: sa.URL) -> dict[str, Any]:
    if is_memory_sqlite(url):
        return {**_AUTOCOMMIT, "poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    return _AUTOCOMMIT


def make_engine(url: sa.URL, *, create_directory: bool = False, synchronous: str = "full") -> sa.Engine:
    """A sync engine for ``url``; for an SQLite file, WAL and ``synchronous``, and check that its directory exists.

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
    with _FORK_GATE.section():  # the first engine of a dialect imports its driver
        engine = sa.create_engine(url, **_engine_options(url))
    _gate_connects(engine)
    if url.get_backend_name() == "sqlite":
        _setup_sqlite(engine, wal=not is_memory_sqlite(url), synchronous=synchronous)
    return engine


_INHERITED_POOLS: list[Pool] = []
"""In a forked child: the parent's pools, kept referenced so that no connection of theirs is closed from here."""


def forget_pool(engine: sa.Engine) -> None:
    """In a forked child: give ``engine`` a new pool and leave the parent's connections alone.

    SQLite's idle connections are closed instead (see the module docstring); an in-memory SQLite
    database lives in its one connection, so the child keeps its copy.
    """
    if is_memory_sqlite(engine.url):
        return
    if engine.dialect.name == "sqlite":
        engine.dispose()
        return
    _INHERITED_POOLS.append(engine.pool)
    engine.dispose(close=False)


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
    PostgreSQL and MySQL/MariaDB only (SQLite's async twins use the sync engine in a thread).
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
        with _FORK_GATE.section():  # the first engine of a dialect imports its driver
            engine = create_async_engine(self.url, **_AUTOCOMMIT)
        _gate_connects(engine.sync_engine)
        finalizer = _dispose_at_loop_shutdown(engine)
        await finalizer.__anext__()
        self._engines[loop] = (engine, finalizer)
        return engine

    def forget_pools(self) -> None:
        """In a forked child: every loop's engine gets a new pool (see :func:`forget_pool`)."""
        for engine, _finalizer in list(self._engines.values()):
            forget_pool(engine.sync_engine)

    async def dispose(self) -> None:
        """Close the running loop's engine now (e.g. before closing a loop that skips asyncgen shutdown)."""
        found = self._engines.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[1].aclose()
