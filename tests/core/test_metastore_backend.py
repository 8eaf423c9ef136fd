"""Metastore specifics beyond the conformance suite: schema, migrations, identity, cleanup, concurrency."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from statestore.core import AssetScope, Config, ConfigurationError, TaskScope
from statestore.core.base import utcnow
from statestore.core.metastore import MetastoreStoreBackend, migrate
from statestore.core.metastore.schema import asset_state, digest, metadata, task_state


def _token() -> str:
    import uuid

    return uuid.uuid4().hex[:10]


@pytest.fixture
def backend(metastore_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
    b = MetastoreStoreBackend(metastore_url, config=Config.from_dict({}))
    yield b
    b.dispose()


@pytest.fixture
def task() -> TaskScope:
    return TaskScope(f"dag-{_token()}", "run", "task")


def test_first_use_creates_sqlite_file_in_wal_mode(fresh_sqlite_url: sa.URL) -> None:
    b = MetastoreStoreBackend(fresh_sqlite_url, config=Config.from_dict({}))
    b.set(TaskScope("d", "r", "t"), "k", "1")
    assert b.get(TaskScope("d", "r", "t"), "k") == "1"
    with b.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert migrate.current_revision(b.engine) == migrate.head_revision()


def test_default_url_is_a_file_in_statestore_home(tmp_path: object) -> None:
    config = Config.from_dict({}, environ={"STATESTORE_HOME": str(tmp_path)})
    b = MetastoreStoreBackend(config=config)
    assert b.location == f"sqlite:///{tmp_path}/statestore.db"
    b.set(TaskScope("d", "r", "t"), "k", "1")
    assert (tmp_path / "statestore.db").is_file()  # type: ignore[operator]


def test_url_argument_overrides_configuration(fresh_sqlite_url: sa.URL) -> None:
    config = Config.from_dict({"state_store": {"sql_alchemy_conn": "sqlite:////nonexistent/dir/x.db"}})
    assert MetastoreStoreBackend(fresh_sqlite_url, config=config).location == str(fresh_sqlite_url)


def test_unmigrated_server_database_says_to_run_db_migrate(fresh_sqlite_url: sa.URL) -> None:
    b = MetastoreStoreBackend(fresh_sqlite_url, config=Config.from_dict({}), auto_migrate=False)
    with pytest.raises(ConfigurationError, match=r"has no statestore tables.*state-store db migrate"):
        b.get(TaskScope("d", "r", "t"), "k")


def test_bad_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match="not a SQLAlchemy URL") as info:
        MetastoreStoreBackend("not a url :: s3cret", config=Config.from_dict({}))
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigurationError, match="supports SQLite, PostgreSQL and MySQL") as info:
        MetastoreStoreBackend("oracle://scott:tiger@db/x", config=Config.from_dict({}))
    assert "tiger" not in str(info.value)


def test_password_is_masked_in_repr_and_location() -> None:
    b = MetastoreStoreBackend("postgresql+psycopg://u:hunter2@127.0.0.1/db", config=Config.from_dict({}))
    assert "hunter2" not in repr(b)
    assert "hunter2" not in b.location
    assert "***" in b.location


def test_secrets_in_the_url_never_shown(
    postgresql_url: sa.URL, caplog: pytest.LogCaptureFixture, task: TaskScope
) -> None:
    """A password with @ : / % and ?password=: never in repr, location, errors or statestore's DEBUG logs."""
    secrets = ("p@ss:w/rd%x", "QUERYPW")
    url = postgresql_url.set(password=secrets[0]).update_query_dict({"password": secrets[1]})
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="statestore"):
        backend = MetastoreStoreBackend(url, config=Config.from_dict({}))
        backend.set(task, "k", "1")  # trust authentication: the password is sent and ignored
        assert backend.get(task, "k") == "1"
        shown += [repr(backend), backend.location]
        backend.dispose()
        unmigrated = url.update_query_dict({"options": "-csearch_path=statestore_no_such_schema"})
        with pytest.raises(ConfigurationError, match="has no statestore tables") as info:
            MetastoreStoreBackend(unmigrated, config=Config.from_dict({}), auto_migrate=False).get(task, "k")
        shown.append(str(info.value))
        with pytest.raises(Exception) as failure:  # noqa: PT011 - whatever it is, it must not show the password
            MetastoreStoreBackend(url.set(port=1), config=Config.from_dict({})).get(task, "k")
        shown += [str(failure.value), repr(failure.value)]
    shown += [record.getMessage() for record in caplog.records]
    assert "***" in backend.location
    for text in shown:
        for secret in (*secrets, "p%40ss"):
            assert secret not in text, f"{secret!r} shown in {text!r}"


def test_migrations_match_the_table_definitions(metastore_url: sa.URL) -> None:
    """The Alembic head creates exactly the tables, columns and indexes of schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = sa.create_engine(metastore_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(ctx, metadata) if "alembic_version" not in str(d)]
    engine.dispose()
    assert diff == []


def test_migrate_is_idempotent(fresh_sqlite_url: sa.URL) -> None:
    b = MetastoreStoreBackend(fresh_sqlite_url, config=Config.from_dict({}), auto_migrate=False)
    assert b.migrate() == (None, migrate.head_revision())
    assert b.migrate() == (migrate.head_revision(), migrate.head_revision())


def test_keys_are_case_sensitive_and_exact(backend: MetastoreStoreBackend, task: TaskScope) -> None:
    for key, value in [("Key", "1"), ("key", "2"), ("KEY", "3"), ("clé", "4"), ("cle", "5"), ("key ", "6")]:
        backend.set(task, key, value)
    assert [backend.get(task, k) for k in ("Key", "key", "KEY", "clé", "cle", "key ")] == list("123456")
    asset = AssetScope(name=f"Orders-{_token()}")
    backend.set(asset, "k", "1")
    assert backend.get(AssetScope(name=asset.name.lower()), "k") is None  # type: ignore[union-attr]


def test_long_keys_and_ids_and_large_values(backend: MetastoreStoreBackend, task: TaskScope) -> None:
    long_task = TaskScope("d" * 250 + _token(), "r" * 250, "t" * 250, 7)
    key = "é" * 512  # 1024 bytes in UTF-8
    big = '"' + "x" * 5_000_000 + '"'  # beyond MySQL TEXT and MEDIUMTEXT-ish sizes
    backend.set(long_task, key, big)
    assert backend.get(long_task, key) == big
    assert backend.keys(long_task) == [key]
    backend.set(long_task, key[:-1] + "f", "1")
    assert backend.get(long_task, key) == big
    with pytest.raises(ValueError, match="limited to 512 characters"):
        backend.set(task, "k" * 513, "1")
    assert backend.keys(task) == []


def test_asset_rows_hold_only_their_identity(backend: MetastoreStoreBackend) -> None:
    """Name, else uri, else id: each identity has its own row, and two names sharing a URI stay apart."""
    token = _token()
    name, uri, asset_id = f"orders-{token}", f"s3://bucket/{token}", int(token[:7], 16)
    backend.set(AssetScope(name=name, uri=uri, asset_id=asset_id), "full", "1")
    backend.set(AssetScope(name=name + "_v2", uri=uri), "full", "2")
    backend.set(AssetScope(uri=uri, asset_id=asset_id), "by_uri", "3")
    backend.set(AssetScope(asset_id=asset_id), "by_id", "4")
    assert backend.keys(AssetScope(name=name)) == ["full"]
    assert backend.get(AssetScope(name=name), "full") == "1"
    assert backend.get(AssetScope(name=name + "_v2"), "full") == "2"
    assert backend.keys(AssetScope(uri=uri)) == ["by_uri"]
    assert backend.keys(AssetScope(asset_id=asset_id)) == ["by_id"]
    backend.clear(AssetScope(uri=uri))
    assert backend.keys(AssetScope(name=name)) == ["full"]
    assert backend.deactivate_asset(AssetScope(asset_id=asset_id)) is True
    assert backend.cleanup().by_kind["orphaned_asset"] >= 1
    assert backend.get(AssetScope(name=name, asset_id=asset_id), "full") == "1"
    with backend.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, uri, asset_id FROM statestore_asset WHERE name LIKE :n OR uri = :u OR asset_id = :i"),
            {"n": f"orders-{token}%", "u": uri, "i": asset_id},
        ).all()
    assert sorted(rows, key=str) == sorted(
        [(name, None, None), (name + "_v2", None, None), (None, uri, None), (None, None, asset_id)], key=str
    )


def test_migration_0002_keeps_only_the_identity_of_existing_rows(fresh_sqlite_url: sa.URL) -> None:
    """Rows that revision 0001 completed with several identities keep only the first of name, uri, id."""
    engine = sa.create_engine(fresh_sqlite_url)
    migrate.upgrade(engine, "0001")
    insert = sa.text(
        "INSERT INTO statestore_asset (name, name_hash, uri, uri_hash, asset_id, active, updated_at) "
        "VALUES (:name, :name_hash, :uri, :uri_hash, :asset_id, 1, '2026-01-01 00:00:00')"
    )
    with engine.begin() as conn:
        for name, uri, asset_id in [("n", "s3://a", 1), (None, "s3://b", 2), (None, None, 3)]:
            conn.execute(
                insert,
                {
                    "name": name,
                    "name_hash": None if name is None else digest(name),
                    "uri": uri,
                    "uri_hash": None if uri is None else digest(uri),
                    "asset_id": asset_id,
                },
            )
    assert migrate.upgrade(engine) == ("0001", migrate.head_revision())
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name, uri, uri_hash, asset_id FROM statestore_asset ORDER BY id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [
        ("n", None, None, None),
        (None, "s3://b", digest("s3://b"), None),
        (None, None, None, 3),
    ]
    backend = MetastoreStoreBackend(fresh_sqlite_url, config=Config.from_dict({}))
    backend.set(AssetScope(uri="s3://a"), "k", "1")  # the uri the named row gave up is free again
    assert backend.get(AssetScope(name="n", uri="s3://a"), "k") is None
    backend.dispose()


def test_deactivated_asset_is_swept_by_cleanup_and_reactivated_by_a_write(backend: MetastoreStoreBackend) -> None:
    gone, kept = AssetScope(name=f"gone-{_token()}"), AssetScope(name=f"kept-{_token()}")
    for i in range(5):
        backend.set(gone, f"k{i}", str(i))
    backend.set(kept, "k", "1")
    assert backend.deactivate_asset(gone) is True
    assert backend.deactivate_asset(AssetScope(name=f"unknown-{_token()}")) is False
    assert backend.get(gone, "k0") == "0"  # readable until the sweep
    result = backend.cleanup(batch_size=2)
    assert result.by_kind["orphaned_asset"] >= 5
    assert backend.keys(gone) == []
    assert backend.get(kept, "k") == "1"
    backend.set(gone, "again", "1")
    backend.cleanup()
    assert backend.get(gone, "again") == "1"


@pytest.mark.parametrize("batch_size", [0, 1, 3, 1000])
def test_cleanup_batches_remove_only_expired_rows(
    backend: MetastoreStoreBackend, task: TaskScope, batch_size: int
) -> None:
    past, future = utcnow() - timedelta(seconds=1), utcnow() + timedelta(days=1)
    for i in range(7):
        backend.set(TaskScope(task.dag_id, "run", "task", i), "old", "1", expires_at=past)
    backend.set(task, "fresh", "1", expires_at=future)
    backend.set(task, "forever", "1")
    batches: list[tuple[str, int]] = []
    assert backend.cleanup(dry_run=True).by_kind["expired_task"] >= 7
    result = backend.cleanup(batch_size=batch_size, progress=lambda kind, n: batches.append((kind, n)))
    assert result.by_kind["expired_task"] >= 7
    assert all(n <= batch_size for _, n in batches) if batch_size else len(batches) >= 1
    assert backend.keys(task) == ["forever", "fresh"]
    with backend.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).where(task_state.c.dag_id == task.dag_id)).scalar()
    assert left == 2


def test_cleanup_uses_configured_batch_size(metastore_url: sa.URL, task: TaskScope) -> None:
    b = MetastoreStoreBackend(metastore_url, config=Config.from_dict({"state_store": {"state_cleanup_batch_size": 2}}))
    for i in range(5):
        b.set(task, f"k{i}", "1", expires_at=utcnow() - timedelta(seconds=1))
    sizes: list[int] = []
    b.cleanup(progress=lambda kind, n: sizes.append(n))
    assert sizes
    assert max(sizes) == 2
    b.dispose()


def test_cleanup_hands_reference_rows_to_the_callback(backend: MetastoreStoreBackend, task: TaskScope) -> None:
    past = utcnow() - timedelta(seconds=1)
    markers = [f'{{"__airflow_state_ref__":"local:///{task.dag_id}/{i}"}}' for i in range(5)]
    for i, marker in enumerate(markers):
        backend.set(task, f"ref{i}", marker, expires_at=past)
    backend.set(task, "plain", '"__airflow_state_ref__ lookalike"', expires_at=past)
    seen: list[str] = []
    result = backend.cleanup(batch_size=2, on_references=seen.extend)
    assert set(markers) <= set(seen)
    assert '"__airflow_state_ref__ lookalike"' not in seen
    assert result.by_kind["expired_task"] >= 6
    assert backend.keys(task) == []


def test_session_argument_is_accepted_and_ignored(backend: MetastoreStoreBackend, task: TaskScope) -> None:
    backend.set(task, "k", "1", session=object())
    assert backend.get(task, "k", session=object()) == "1"


def _hammer(url: str, worker: int, rounds: int, errors: list[str] | None = None) -> None:
    """Write one task key and one asset key ``rounds`` times (run in threads here and in processes)."""
    b = MetastoreStoreBackend(url, config=Config.from_dict({}))
    scope = TaskScope("concurrency", "run", "task")
    try:
        for i in range(rounds):
            b.set(scope, "shared", f'"w{worker}-{i}"')
            b.set(AssetScope(name="concurrency-asset"), "shared", f'"w{worker}-{i}"')
    except Exception as exc:
        if errors is None:
            raise
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        b.dispose()


_PROCESS = f"""
import sys
from statestore.core import AssetScope, Config, TaskScope
from statestore.core.metastore import MetastoreStoreBackend
{inspect.getsource(_hammer)}
_hammer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
"""


@pytest.mark.parametrize("db", ["fresh_sqlite", "postgresql", "mysql"])
def test_eight_threads_and_eight_processes_write_one_key(request: pytest.FixtureRequest, db: str) -> None:
    """No unique-constraint or lock error, one row, a written value; on SQLite also the concurrent first use."""
    url = request.getfixturevalue(f"{db}_url").render_as_string(hide_password=False)
    rounds = 5
    errors: list[str] = []
    procs = [
        subprocess.Popen([sys.executable, "-c", _PROCESS, url, str(100 + p), str(rounds)], stderr=subprocess.PIPE)
        for p in range(8)
    ]
    threads = [threading.Thread(target=_hammer, args=(url, t, rounds, errors)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    failures = [proc.communicate(timeout=120)[1].decode() for proc in procs if proc.wait(timeout=120) != 0]
    assert errors == []
    assert failures == []
    b = MetastoreStoreBackend(url, config=Config.from_dict({}))
    written = {f'"w{w}-{i}"' for w in [*range(8), *range(100, 108)] for i in range(rounds)}
    assert b.get(TaskScope("concurrency", "run", "task"), "shared") in written
    assert b.get(AssetScope(name="concurrency-asset"), "shared") in written
    with b.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(asset_state.c.key == "shared")).scalar() == 1
    b.dispose()
