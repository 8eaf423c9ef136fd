"""``MetastoreStoreBackend``: task and asset state in SQL tables (SQLite, PostgreSQL, MySQL/MariaDB).

Every operation is one short transaction on a sync engine, or on an asyncio engine for the
``a*`` twins (psycopg / aiomysql, bridged with ``run_sync``; on SQLite the sync engine in a worker
thread, as aiosqlite would do, so a fork never lands in the middle of an operation). A
``set`` is one upsert statement (``ON CONFLICT`` / ``ON DUPLICATE KEY UPDATE``), so concurrent
writers of one key never see a unique-constraint error and the last writer wins. The
``session`` argument Airflow passes is ignored: the metastore has its own engine and may live
in another database than Airflow's.

Assets: the ``statestore_asset`` table gives each asset one row holding only its identity
(:func:`statestore.core.naming.asset_identity`: the name when the scope has one, else the URI,
else the id), so ``AssetScope(name=n, uri=u)`` addresses the row of ``n``, ``AssetScope(uri=u)``
the row of the uri-only asset ``u``, and two names sharing a URI never share a row. An asset
marked inactive with :meth:`MetastoreStoreBackend.deactivate_asset` keeps its state until
``cleanup()`` sweeps it; a later write reactivates it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from statestore.core.base import CleanupResult, StoredEntry, utcnow
from statestore.core.config import Config
from statestore.core.errors import ConfigurationError, StorageError, ValueTooLargeError
from statestore.core.metastore import migrate
from statestore.core.metastore.engines import (
    AsyncEngines,
    Operation,
    arun,
    describe_error,
    display_url,
    driver_urls,
    forget_pool,
    fork_gate,
    make_engine,
    parse_url,
    run,
    transaction,
)
from statestore.core.metastore.schema import REF_PREFIX, asset, asset_state, digest, row_hash, task_hash, task_state
from statestore.core.naming import asset_identity, identity_scope
from statestore.core.primitive import PrimitiveStoreBackend
from statestore.core.scopes import AssetScope, StoreScope, TaskScope, to_scope

__all__ = ["MetastoreStoreBackend"]

T = TypeVar("T")
ProgressCallback = Callable[[str, int], None]
"""Called after each cleanup batch with the kind (``expired_task`` ...) and how many rows it removed."""

_REFERENCE_BATCH = 1000
"""Batch size of the reference pass of ``cleanup`` when ``state_cleanup_batch_size`` is 0 (one statement)."""
_ASSET_SWEEP_BATCH = 1000
"""Rows per transaction of the inactive-asset sweep when ``state_cleanup_batch_size`` is 0 (it is always batched)."""
_MYSQL_ESCAPED = "\0\n\r\x1a'\"\\"
"""Characters the MySQL drivers escape with a backslash when they inline a string into a statement."""
_MYSQL_STATEMENT_BYTES = 2048
"""Allowance for an upsert's SQL text, hashes and timestamps beside its string parameters."""


def _upsert(dialect: sa.Dialect, table: sa.Table, updated: Sequence[str]) -> sa.Insert:
    """One ``INSERT ... ON CONFLICT (pk) DO UPDATE`` / ``ON DUPLICATE KEY UPDATE`` statement for ``table``."""
    if dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in updated})
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    pg_or_lite = insert(table)
    return pg_or_lite.on_conflict_do_update(
        index_elements=list(table.primary_key.columns), set_={c: pg_or_lite.excluded[c] for c in updated}
    )


def _insert_ignore(dialect: sa.Dialect, table: sa.Table) -> sa.Insert:
    """An insert that does nothing when a unique column already holds the value (concurrent creators)."""
    if dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update(id=table.c.id)
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing()


def _asset_match() -> sa.ColumnElement[bool]:
    """The asset rows an ``AssetScope`` may mean (bound parameters ``name``, ``name_hash``, ``uri``...)."""
    return sa.or_(
        sa.and_(asset.c.name_hash == sa.bindparam("name_hash"), asset.c.name == sa.bindparam("name")),
        sa.and_(asset.c.uri_hash == sa.bindparam("uri_hash"), asset.c.uri == sa.bindparam("uri")),
        asset.c.asset_id == sa.bindparam("asset_id"),
    )


def _asset_row() -> sa.ScalarSelect[Any]:
    """The one asset row an ``AssetScope`` resolves to (only its identity is bound, and each is unique)."""
    return sa.select(asset.c.id).where(_asset_match()).scalar_subquery()


def _not_expired() -> sa.ColumnElement[bool]:
    return sa.or_(task_state.c.expires_at.is_(None), task_state.c.expires_at > sa.bindparam("now"))


def _task_exact(all_map_indices: bool) -> sa.ColumnElement[bool]:
    clauses = [
        task_state.c.task_hash == sa.bindparam("task_hash"),
        task_state.c.dag_id == sa.bindparam("dag_id"),
        task_state.c.run_id == sa.bindparam("run_id"),
        task_state.c.task_id == sa.bindparam("task_id"),
    ]
    if not all_map_indices:
        clauses.append(task_state.c.map_index == sa.bindparam("map_index"))
    return sa.and_(*clauses)


class _Statements:
    """Every statement the backend runs, built once per dialect so each call only binds parameters."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        # The id is the SHA-256 of the injective (scope, key) path; comparing the key keeps it honest.
        row = sa.and_(task_state.c.id == sa.bindparam("id"), task_state.c.key == sa.bindparam("key"))
        self.task_get = sa.select(task_state.c.value, task_state.c.expires_at).where(row)
        self.task_set = _upsert(dialect, task_state, ("value", "updated_at", "expires_at"))
        self.task_delete = sa.delete(task_state).where(row)
        self.task_clear = sa.delete(task_state).where(_task_exact(False))
        self.task_clear_all = sa.delete(task_state).where(_task_exact(True))
        self.task_keys = sa.select(task_state.c.key).where(_task_exact(False), _not_expired())

        asset_key = sa.and_(
            asset_state.c.asset_row_id == _asset_row(),
            asset_state.c.key_hash == sa.bindparam("key_hash"),
            asset_state.c.key == sa.bindparam("key"),
        )
        self.asset_get = sa.select(asset_state.c.value, asset_state.c.expires_at).where(asset_key)
        self.asset_set = _upsert(dialect, asset_state, ("value", "updated_at", "expires_at"))
        self.asset_delete = sa.delete(asset_state).where(asset_key)
        self.asset_clear = sa.delete(asset_state).where(asset_state.c.asset_row_id == _asset_row())
        self.asset_keys = sa.select(asset_state.c.key).where(
            asset_state.c.asset_row_id == _asset_row(),
            sa.or_(asset_state.c.expires_at.is_(None), asset_state.c.expires_at > sa.bindparam("now")),
        )
        self.asset_find = sa.select(asset.c.id, asset.c.active).where(_asset_match())
        self.asset_create = _insert_ignore(dialect, asset)


@dataclass(frozen=True)
class _Sweep:
    """One kind of row ``cleanup`` removes: its table, primary key and condition."""

    kind: str
    table: sa.Table
    where: sa.ColumnElement[bool]


def _batch_delete(sweep: _Sweep, size: int, dialect: str) -> sa.Delete:
    """A ``DELETE`` of at most ``size`` rows that ``sweep`` matches; the database picks them, nothing is loaded.

    MySQL has ``DELETE ... LIMIT``. Elsewhere a ``LIMIT`` subquery names the rows by their physical
    id (PostgreSQL's ``ctid``: a TID scan; SQLite's ``rowid``), not by the long text primary key,
    which would cost an index descent per row. The outer condition is checked again, so a row a
    concurrent writer renewed between the subquery and the delete stays.
    """
    table = sweep.table
    if dialect in ("mysql", "mariadb"):
        return sa.delete(table).where(sweep.where).with_dialect_options(mysql_limit=size)
    row: sa.ColumnClause[Any] = sa.literal_column("ctid" if dialect == "postgresql" else "rowid")
    batch = sa.select(row).select_from(table).where(sweep.where).limit(size)
    if dialect == "postgresql":
        return sa.delete(table).where(row == sa.any_(sa.func.array(batch.scalar_subquery())), sweep.where)
    return sa.delete(table).where(row.in_(batch), sweep.where)


def _rowcount(stmt: sa.Executable, params: dict[str, Any] | None = None) -> Callable[[sa.Connection], int]:
    """An operation running ``stmt`` and returning how many rows it touched."""

    def run(conn: sa.Connection) -> int:
        return conn.execute(stmt, params).rowcount  # type: ignore[attr-defined]

    return run


def _deleting(delete: sa.Delete, params: dict[str, Any]) -> Callable[[sa.Connection], list[str]]:
    """An operation running ``delete`` and returning the values of exactly the rows it deleted.

    ``DELETE ... RETURNING`` on PostgreSQL and SQLite; MySQL has none, so there the rows are read
    with ``FOR UPDATE`` and deleted in one transaction.
    """
    table = delete.table
    assert isinstance(table, sa.Table)

    def run(conn: sa.Connection) -> list[str]:
        if conn.dialect.name in ("mysql", "mariadb"):
            with transaction(conn):
                locked = sa.select(table.c.value).where(delete.whereclause).with_for_update()  # type: ignore[arg-type]
                values = list(conn.execute(locked, params).scalars())
                if values:
                    conn.execute(delete, params)
            return values
        return list(conn.execute(delete.returning(table.c.value), params).scalars())

    return run


def _asset_values(conn: sa.Connection, wanted: dict[int, tuple[StoreScope, str]]) -> dict[int, str]:
    """The values of asset rows ``{index: (identity scope, key)}`` in one query (by key hash and identity)."""
    scopes = [scope for scope, _ in wanted.values() if isinstance(scope, AssetScope)]
    identity = sa.or_(
        asset.c.name_hash.in_(sorted({digest(s.name) for s in scopes if s.name})),
        asset.c.uri_hash.in_(sorted({digest(s.uri) for s in scopes if s.uri and not s.name})),
        asset.c.asset_id.in_(sorted({s.asset_id for s in scopes if s.asset_id is not None and not (s.name or s.uri)})),
    )
    stmt = (
        sa.select(asset.c.name, asset.c.uri, asset.c.asset_id, asset_state.c.key, asset_state.c.value)
        .select_from(asset_state.join(asset, asset_state.c.asset_row_id == asset.c.id))
        .where(asset_state.c.key_hash.in_(sorted({digest(key) for _, key in wanted.values()})), identity)
    )
    rows = {}
    for row in conn.execute(stmt):
        for field in ("name", "uri", "asset_id"):
            if getattr(row, field) is not None:
                rows[(field, getattr(row, field), row.key)] = row.value
    found = {}
    for index, (scope, key) in wanted.items():
        assert isinstance(scope, AssetScope)
        field = "name" if scope.name else "uri" if scope.uri else "asset_id"
        value = rows.get((field, getattr(scope, field), key))
        if value is not None:
            found[index] = value
    return found


def _scalar_int(stmt: sa.Executable, conn: sa.Connection) -> int:
    return int(conn.execute(stmt).scalar_one())


def _max_packet(conn: sa.Connection) -> int:
    """The MariaDB/MySQL server's ``max_allowed_packet`` for this session, in bytes."""
    return int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())


def _kind(scope: StoreScope) -> str:
    return "task" if isinstance(scope, TaskScope) else "asset"


def _operation(op: Operation[T] | Callable[[sa.Connection], T]) -> Operation[T]:
    """``op`` itself, or a bare function as a repeatable operation (a query, a delete)."""
    return op if isinstance(op, Operation) else Operation("query the database", op)


def _task_params(scope: TaskScope) -> dict[str, Any]:
    return {
        "task_hash": task_hash(scope),
        "dag_id": scope.dag_id,
        "run_id": scope.run_id,
        "task_id": scope.task_id,
        "map_index": scope.map_index,
    }


def _asset_params(scope: AssetScope) -> dict[str, Any]:
    """The columns of an asset's row: its identity (name, else uri, else id) set, the others NULL."""
    kind, identity = asset_identity(scope)
    return {
        "name": identity if kind == "name" else None,
        "name_hash": digest(identity) if kind == "name" else None,
        "uri": identity if kind == "uri" else None,
        "uri_hash": digest(identity) if kind == "uri" else None,
        "asset_id": scope.asset_id if kind == "id" else None,
    }


def _asset_key_params(scope: AssetScope, key: str) -> dict[str, Any]:
    return {**_asset_params(scope), "key_hash": digest(key), "key": key}


class MetastoreStoreBackend(PrimitiveStoreBackend):
    """Task and asset state in SQL tables through SQLAlchemy; see the module docstring.

    ``url`` overrides ``[state_store] sql_alchemy_conn`` (default: ``statestore.db`` in
    ``STATESTORE_HOME``). ``auto_migrate`` (default: on for SQLite) creates or upgrades the schema
    on first use; on a server database run ``state-store db migrate`` instead.
    """

    name = "metastore"
    reference_scheme = "metastore"

    def __init__(
        self, url: str | sa.URL | None = None, *, config: Config | None = None, auto_migrate: bool | None = None
    ) -> None:
        super().__init__(config=config)
        self.url = parse_url(url if url is not None else self.config.sql_alchemy_conn)
        self.sync_url, self.async_url = driver_urls(self.url)
        self.auto_migrate = self.url.get_backend_name() == "sqlite" if auto_migrate is None else auto_migrate
        self.sqlite_synchronous = self.config.sqlite_synchronous
        self._lock = threading.Lock()
        self._engine: sa.Engine | None = None
        self._statements: _Statements | None = None
        self._max_packet: int | None = None
        self._async_engines = AsyncEngines(self.async_url)

    def _after_fork_in_child(self) -> None:
        """The child opens connections of its own; the parent's stay untouched (see ``engines``)."""
        self._lock = threading.Lock()
        if self._engine is not None:
            forget_pool(self._engine)
        self._async_engines.forget_pools()

    @property
    def location(self) -> str:
        """The database URL with its password and credential query parameters masked."""
        return display_url(self.url)

    # -- engines and schema ---------------------------------------------------------------------------

    @property
    def _in_home(self) -> bool:
        """True for an SQLite file directly in ``STATESTORE_HOME`` (the default), whose directory may be created."""
        database = self.url.database if self.url.get_backend_name() == "sqlite" else None
        return bool(database) and Path(str(database)).expanduser().parent == self.config.home.expanduser()

    @property
    def engine(self) -> sa.Engine:
        """The sync engine; on first use it checks (or, with ``auto_migrate``, installs) the schema."""
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    engine = make_engine(
                        self.sync_url, create_directory=self._in_home, synchronous=self.sqlite_synchronous
                    )
                    try:
                        with fork_gate(engine):
                            self._check_schema(engine)
                        if engine.dialect.name in ("mysql", "mariadb"):
                            packet = Operation("read max_allowed_packet", _max_packet)
                            self._max_packet = run(engine, packet, self.location)
                    except sa.exc.SQLAlchemyError as exc:
                        raise StorageError(f"cannot open the metastore {self.location}: {describe_error(exc)}") from exc
                    self._statements = _Statements(engine.dialect)
                    self._engine = engine
        return self._engine

    def _check_schema(self, engine: sa.Engine) -> None:
        if self.auto_migrate:
            migrate.upgrade(engine)
            return
        current, head = migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            state = "has no statestore tables" if current is None else f"is at schema revision {current}"
            raise ConfigurationError(
                f"the metastore database {self.location} {state}; this statestore needs revision {head}. "
                "Run `state-store db migrate` (it applies the versioned migrations)."
            )

    def migrate(self) -> tuple[str | None, str]:
        """Apply pending schema migrations; return the revisions before and after."""
        engine = make_engine(self.sync_url, create_directory=self._in_home, synchronous=self.sqlite_synchronous)
        try:
            return migrate.upgrade(engine)
        finally:
            engine.dispose()

    def dispose(self) -> None:
        """Close the sync engine's pooled connections (the backend reconnects on next use)."""
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None

    async def adispose(self) -> None:
        """Close the running event loop's async engine now."""
        await self._async_engines.dispose()

    @property
    def _stmts(self) -> _Statements:
        if self._statements is None:
            self.engine  # noqa: B018 - builds the statements on first use
            assert self._statements is not None
        return self._statements

    def _run(self, op: Operation[T] | Callable[[sa.Connection], T]) -> T:
        """Run an operation (a bare function: a repeatable query) with the retry rule of ``engines``."""
        return run(self._engine or self.engine, _operation(op), self.location)

    async def _arun(self, op: Operation[T] | Callable[[sa.Connection], T]) -> T:
        if self._engine is None:
            await asyncio.to_thread(lambda: self.engine)
        if self.url.get_backend_name() == "sqlite":  # see ``engines``: fork safety (and aiosqlite is a thread too)
            return await asyncio.to_thread(self._run, op)
        return await arun(await self._async_engines.get(), _operation(op), self.location)

    def _check_packet(self, key: str, params: dict[str, Any]) -> None:
        """Refuse a write whose statement MariaDB/MySQL would reject (``max_allowed_packet``) before sending it.

        The server closes the connection on such a packet, after the client has sent all of it.
        The drivers inline parameters into the statement, escaping a few characters.
        """
        limit = self._max_packet
        texts = [v for v in params.values() if isinstance(v, str)]
        if limit is None or sum(len(t) for t in texts) * 4 + _MYSQL_STATEMENT_BYTES <= limit:
            return
        size = _MYSQL_STATEMENT_BYTES + sum(len(t.encode()) + sum(t.count(c) for c in _MYSQL_ESCAPED) for t in texts)
        if size > limit:
            raise ValueTooLargeError(
                f"value for key {key!r} makes a {size}-byte statement, above the database server's "
                f"max_allowed_packet of {limit} bytes ({self.location}); nothing was sent. Raise max_allowed_packet "
                "on the server, or configure a worker-side backend ([workers] state_backend) for large values."
            )

    # -- operations on a connection (shared by the sync and async paths) ----------------------------------

    def _op_get(self, scope: StoreScope, key: str) -> Operation[StoredEntry | None]:
        s = self._stmts
        if isinstance(scope, TaskScope):
            stmt, params = s.task_get, {"id": row_hash(scope, key), "key": key}
        else:
            stmt, params = s.asset_get, _asset_key_params(scope, key)

        def get(conn: sa.Connection) -> StoredEntry | None:
            row = conn.execute(stmt, params).first()
            return None if row is None else StoredEntry(row[0], row[1])

        return Operation(f"read {_kind(scope)} key {key!r}", get)

    def _op_set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None) -> Operation[None]:
        """The write; one holding a worker-side reference is not repeatable (see ``engines``)."""
        s, now = self._stmts, utcnow()
        what, repeatable = f"write {_kind(scope)} key {key!r}", not value.startswith(REF_PREFIX)
        if isinstance(scope, TaskScope):
            params = {
                **_task_params(scope),
                "id": row_hash(scope, key),
                "key": key,
                "value": value,
                "updated_at": now,
                "expires_at": expires_at,
            }

            self._check_packet(key, params)

            def run_task(conn: sa.Connection) -> None:
                conn.execute(s.task_set, params)

            return Operation(what, run_task, repeatable=repeatable)

        state = {"key_hash": digest(key), "key": key, "value": value, "updated_at": now, "expires_at": expires_at}
        self._check_packet(key, state)

        def run_asset(conn: sa.Connection) -> None:
            row_id = self._asset_for_write(conn, scope, now)
            conn.execute(s.asset_set, {**state, "asset_row_id": row_id})

        return Operation(what, run_asset, repeatable=repeatable, transactional=True)

    def _asset_for_write(self, conn: sa.Connection, scope: AssetScope, now: datetime) -> int:
        """The row of ``scope``'s asset (by its identity alone): created if missing, reactivated if inactive."""
        s, params = self._stmts, _asset_params(scope)
        row = conn.execute(s.asset_find, params).first()
        if row is None:
            conn.execute(s.asset_create, {**params, "active": True, "updated_at": now})
            # A locking read sees a row a concurrent creator committed (MySQL's snapshot would not).
            row = conn.execute(s.asset_find.with_for_update(), params).one()
        if not row.active:
            conn.execute(sa.update(asset).where(asset.c.id == row.id).values(active=True, updated_at=now))
        return int(row.id)

    def _delete_stmt(self, scope: StoreScope, key: str) -> tuple[sa.Delete, dict[str, Any]]:
        s = self._stmts
        if isinstance(scope, TaskScope):
            return s.task_delete, {"id": row_hash(scope, key), "key": key}
        return s.asset_delete, _asset_key_params(scope, key)

    def _clear_stmt(self, scope: StoreScope, all_map_indices: bool) -> tuple[sa.Delete, dict[str, Any]]:
        s = self._stmts
        if isinstance(scope, TaskScope):
            return (s.task_clear_all if all_map_indices else s.task_clear), _task_params(scope)
        return s.asset_clear, _asset_params(scope)

    def _op_delete(self, scope: StoreScope, key: str) -> Operation[int]:
        return Operation(f"delete {_kind(scope)} key {key!r}", _rowcount(*self._delete_stmt(scope, key)))

    def _op_clear(self, scope: StoreScope, all_map_indices: bool) -> Operation[int]:
        return Operation(f"clear {_kind(scope)} {scope!r}", _rowcount(*self._clear_stmt(scope, all_map_indices)))

    def _op_get_many(self, items: Sequence[tuple[StoreScope, str]]) -> Callable[[sa.Connection], list[str | None]]:
        """One query per table for ``items``: task rows by id, asset rows by key hash and asset identity."""
        tasks = {i: (row_hash(s, key), key) for i, (s, key) in enumerate(items) if isinstance(s, TaskScope)}
        assets = {i: (identity_scope(s), key) for i, (s, key) in enumerate(items) if isinstance(s, AssetScope)}

        def run(conn: sa.Connection) -> list[str | None]:
            found: list[str | None] = [None] * len(items)
            if tasks:
                stmt = sa.select(task_state.c.id, task_state.c.key, task_state.c.value).where(
                    task_state.c.id.in_(sorted({row_id for row_id, _ in tasks.values()}))
                )
                rows = {(r.id, r.key): r.value for r in conn.execute(stmt)}
                for index, ident in tasks.items():
                    found[index] = rows.get(ident)
            if assets:
                for index, value in _asset_values(conn, assets).items():
                    found[index] = value
            return found

        return run

    def _op_keys(self, scope: StoreScope) -> Operation[list[str]]:
        s = self._stmts
        if isinstance(scope, TaskScope):
            stmt, params = s.task_keys, {**_task_params(scope), "now": utcnow()}
        else:
            stmt, params = s.asset_keys, {**_asset_params(scope), "now": utcnow()}
        return Operation(f"list keys of {_kind(scope)} {scope!r}", lambda c: list(c.execute(stmt, params).scalars()))

    # -- primitives ------------------------------------------------------------------------------------

    def _get(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        return self._run(self._op_get(scope, key))

    def _set(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        self._run(self._op_set(scope, key, value, expires_at))

    def _delete(self, scope: StoreScope, key: str, session: Any) -> None:
        self._run(self._op_delete(scope, key))

    def _clear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        self._run(self._op_clear(scope, all_map_indices))

    def _keys(self, scope: StoreScope, session: Any) -> list[str]:
        return self._run(self._op_keys(scope))

    def _op_pop(self, scope: StoreScope, key: str) -> Operation[list[str]]:
        """Delete one row, returning its value.

        Repeatable: a repeat after a commit whose reply was lost deletes only what was written
        meanwhile (an overlapping write) and loses only the first reply, whose referenced object
        reconciliation then reclaims.
        """
        return Operation(f"delete {_kind(scope)} key {key!r}", _deleting(*self._delete_stmt(scope, key)))

    def _op_pop_scope(self, scope: StoreScope, all_map_indices: bool) -> Operation[list[str]]:
        return Operation(f"clear {_kind(scope)} {scope!r}", _deleting(*self._clear_stmt(scope, all_map_indices)))

    def _pop(self, scope: StoreScope, key: str, session: Any) -> str | None:
        values = self._run(self._op_pop(scope, key))
        return values[0] if values else None

    def _pop_scope(self, scope: StoreScope, all_map_indices: bool, session: Any) -> list[str]:
        return self._run(self._op_pop_scope(scope, all_map_indices))

    def _get_many(self, items: Sequence[tuple[StoreScope, str]], session: Any) -> list[str | None]:
        return self._run(Operation(f"read {len(items)} keys", self._op_get_many(items)))

    async def _aget(self, scope: StoreScope, key: str, session: Any) -> StoredEntry | None:
        return await self._arun(self._op_get(scope, key))

    async def _aset(self, scope: StoreScope, key: str, value: str, expires_at: datetime | None, session: Any) -> None:
        await self._arun(self._op_set(scope, key, value, expires_at))

    async def _adelete(self, scope: StoreScope, key: str, session: Any) -> None:
        await self._arun(self._op_delete(scope, key))

    async def _aclear(self, scope: StoreScope, all_map_indices: bool, session: Any) -> None:
        await self._arun(self._op_clear(scope, all_map_indices))

    async def _akeys(self, scope: StoreScope, session: Any) -> list[str]:
        return await self._arun(self._op_keys(scope))

    async def _apop(self, scope: StoreScope, key: str, session: Any) -> str | None:
        values = await self._arun(self._op_pop(scope, key))
        return values[0] if values else None

    async def _apop_scope(self, scope: StoreScope, all_map_indices: bool, session: Any) -> list[str]:
        return await self._arun(self._op_pop_scope(scope, all_map_indices))

    # -- asset lifecycle ----------------------------------------------------------------------------------

    def deactivate_asset(self, scope: Any) -> bool:
        """Mark an asset inactive (by ``AssetScope`` or anything with ``name``/``uri``); False if unknown.

        Its state stays readable until ``cleanup()``'s orphan sweep removes it; writing to the
        asset again reactivates it.
        """
        asset_scope = to_scope(scope)
        if not isinstance(asset_scope, AssetScope):
            raise TypeError(f"deactivate_asset takes an asset, got a task scope {asset_scope!r}")
        params = _asset_params(asset_scope)
        row_id = self._run(lambda c: c.execute(sa.select(_asset_row()), params).scalar())
        if row_id is None:
            return False
        stmt = sa.update(asset).where(asset.c.id == row_id).values(active=False, updated_at=utcnow())
        return bool(self._run(Operation(f"deactivate asset {asset_scope!r}", _rowcount(stmt))))

    # -- cleanup -------------------------------------------------------------------------------------------

    def _sweeps(self, now: datetime) -> list[_Sweep]:
        return [
            _Sweep("expired_task", task_state, task_state.c.expires_at <= now),
            _Sweep("expired_asset", asset_state, asset_state.c.expires_at <= now),
        ]

    def cleanup(
        self,
        *,
        dry_run: bool = False,
        batch_size: int | None = None,
        on_references: Callable[[list[str]], None] | None = None,
        progress: ProgressCallback | None = None,
    ) -> CleanupResult:
        """Delete expired rows and the state of inactive assets, in batches; report what was removed.

        ``batch_size`` (default ``[state_store] state_cleanup_batch_size``; 0 = one statement per
        kind) bounds each transaction; ids are never loaded into memory. With ``on_references``,
        rows holding a worker-side reference are deleted first, batch by batch, and their values
        (the reference markers) are handed to the callback after each commit. ``dry_run`` only
        counts what would go.
        """
        size = self.config.cleanup_batch_size if batch_size is None else batch_size
        if size < 0:
            raise ValueError(f"batch_size must be >= 0 (0 = one statement), got {size}")
        result = CleanupResult()
        for sweep in self._sweeps(utcnow()):
            if dry_run:
                count = sa.select(sa.func.count()).select_from(sweep.table).where(sweep.where)
                result.add(sweep.kind, self._run(partial(_scalar_int, count)))
                continue
            if on_references is not None:
                refs = _Sweep(
                    sweep.kind,
                    sweep.table,
                    sa.and_(sweep.where, sweep.table.c.value.startswith(REF_PREFIX, autoescape=True)),
                )
                self._sweep_returning(refs, size or _REFERENCE_BATCH, on_references, result, progress)
            self._sweep(sweep, size, result, progress)
        if dry_run:
            inactive = sa.select(asset.c.id).where(asset.c.active.is_(False))
            count = sa.select(sa.func.count()).where(asset_state.c.asset_row_id.in_(inactive))
            result.add("orphaned_asset", self._run(partial(_scalar_int, count)))
        else:
            self._sweep_inactive_assets(size or _ASSET_SWEEP_BATCH, on_references, result, progress)
        return result

    def _sweep_inactive_assets(
        self,
        size: int,
        on_references: Callable[[list[str]], None] | None,
        result: CleanupResult,
        progress: ProgressCallback | None,
    ) -> None:
        """Delete the state of inactive assets, ``size`` rows per transaction, never what a reactivating write adds.

        Each batch first locks the inactive assets it sweeps (``FOR UPDATE``; on SQLite ``BEGIN
        IMMEDIATE`` locks the database). A write that reactivates an asset updates its asset row
        before writing state, so it either commits first (the batch then no longer sees the asset
        as inactive; PostgreSQL re-checks a locked row that changed) or waits for the batch to
        commit and writes after it. Reference markers of the deleted rows go to ``on_references``.
        """
        with_state = sa.exists().where(asset_state.c.asset_row_id == asset.c.id)
        inactive = sa.select(asset.c.id).where(asset.c.active.is_(False), with_state)
        locked = inactive.order_by(asset.c.id).limit(size).with_for_update()
        is_ref = asset_state.c.value.startswith(REF_PREFIX, autoescape=True)
        rows = sa.select(asset_state.c.asset_row_id, asset_state.c.key_hash, sa.case((is_ref, asset_state.c.value)))
        pk = sa.tuple_(asset_state.c.asset_row_id, asset_state.c.key_hash)

        def sweep_batch(conn: sa.Connection) -> list[str | None]:
            ids = list(conn.execute(locked).scalars())
            found = conn.execute(rows.where(asset_state.c.asset_row_id.in_(ids)).limit(size)).all() if ids else []
            if found:
                conn.execute(sa.delete(asset_state).where(pk.in_([(r[0], r[1]) for r in found])))
            return [r[2] for r in found]

        operation = Operation("sweep the state of inactive assets", sweep_batch, transactional=True)
        while values := self._run(operation):
            result.add("orphaned_asset", len(values))
            references = [v for v in values if v is not None]
            if on_references is not None and references:
                on_references(references)
            if progress is not None:
                progress("orphaned_asset", len(values))

    def _sweep(self, sweep: _Sweep, size: int, result: CleanupResult, progress: ProgressCallback | None) -> None:
        """Delete what ``sweep`` matches: in one statement (``size`` 0) or in bounded batches."""
        dialect = self._stmts.dialect.name
        stmt = sa.delete(sweep.table).where(sweep.where) if size == 0 else _batch_delete(sweep, size, dialect)
        while True:
            removed = self._run(_rowcount(stmt))
            result.add(sweep.kind, removed)
            if progress is not None and removed:
                progress(sweep.kind, removed)
            if size == 0 or removed < size:
                return

    def _sweep_returning(
        self,
        sweep: _Sweep,
        size: int,
        on_values: Callable[[list[str]], None],
        result: CleanupResult,
        progress: ProgressCallback | None,
    ) -> None:
        """Delete matching rows batch by batch and hand each committed batch's values to ``on_values``."""
        table = sweep.table
        cols = list(table.primary_key.columns)
        pk = sa.tuple_(*cols) if len(cols) > 1 else table.c.id
        batch = sa.select(*cols, table.c.value).where(sweep.where).limit(size)

        def delete_batch(conn: sa.Connection) -> list[str]:
            if conn.dialect.name in ("mysql", "mariadb"):  # no DELETE ... RETURNING with a LIMIT subquery
                with transaction(conn):
                    rows = conn.execute(batch.with_for_update()).all()
                    if rows:
                        ids = [tuple(r[: len(cols)]) if len(cols) > 1 else r[0] for r in rows]
                        conn.execute(sa.delete(table).where(pk.in_(ids), sweep.where))
                return [r.value for r in rows]
            return list(conn.execute(_batch_delete(sweep, size, conn.dialect.name).returning(table.c.value)).scalars())

        while True:
            values = self._run(delete_batch)
            if values:
                result.add(sweep.kind, len(values))
                on_values(values)
                if progress is not None:
                    progress(sweep.kind, len(values))
            if len(values) < size:
                return
