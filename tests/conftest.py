"""Database fixtures for every test folder: one private PostgreSQL schema and MariaDB database per session.

Other test runs use the same servers at the same time, so each session creates its own schema
(PostgreSQL) or database (MariaDB) with a random name, migrates it once and drops it at the end.
A server that does not answer fails the requesting test with how to start it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("STATESTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
_HOW_TO_START = {
    "postgresql": "start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "(or `bash .ci/run`), or point STATESTORE_TEST_POSTGRES_URL at a server",
    "mysql": "start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd` "
    "(or `bash .ci/run`), or point STATESTORE_TEST_MYSQL_URL at a server",
}


def _admin_engine(url: str, kind: str) -> sa.Engine:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        engine.connect().close()
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"{kind} is not reachable at {sa.make_url(url).render_as_string(hide_password=True)}: "
            f"{str(exc.orig).splitlines()[0]}; {_HOW_TO_START[kind]}",
            pytrace=False,
        )
    return engine


def _migrated(url: sa.URL) -> sa.URL:
    from statestore.core import Config
    from statestore.core.metastore import MetastoreStoreBackend

    MetastoreStoreBackend(url, config=Config.from_dict({})).migrate()
    return url


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[sa.URL]:
    """A migrated metastore in a private schema of the test PostgreSQL database."""
    engine = _admin_engine(POSTGRES_URL, "postgresql")
    schema = f"statestore_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield _migrated(sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"}))
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[sa.URL]:
    """A migrated metastore in a private database on the test MariaDB/MySQL server."""
    engine = _admin_engine(MYSQL_URL, "mysql")
    database = f"statestore_test_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    try:
        yield _migrated(sa.make_url(MYSQL_URL).set(database=database))
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE `{database}`")
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> sa.URL:
    """A migrated metastore in an SQLite file private to this session."""
    return _migrated(sa.make_url(f"sqlite:///{tmp_path_factory.mktemp('metastore') / 'statestore.db'}"))


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def metastore_url(request: pytest.FixtureRequest) -> sa.URL:
    """Each supported database in turn."""
    url: sa.URL = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> sa.URL:
    """An SQLite file that does not exist yet, in an existing directory (for first-use creation and migrations)."""
    (tmp_path / "home").mkdir(exist_ok=True)
    return sa.make_url(f"sqlite:///{tmp_path / 'home' / 'statestore.db'}")


def _kill_postgres(url: sa.URL) -> int:
    app = url.query["application_name"]
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.execute(
            sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :app"),
            {"app": app},
        ).scalar_one()
    admin.dispose()
    return int(killed)


def _kill_mysql(url: sa.URL) -> int:
    admin = sa.create_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ids = conn.execute(
            sa.text("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :db AND ID <> CONNECTION_ID()"),
            {"db": url.database},
        ).scalars()
        killed = 0
        for connection_id in list(ids):
            try:
                conn.exec_driver_sql(f"KILL {int(connection_id)}")
            except sa.exc.OperationalError as exc:
                if exc.orig.args[0] != 1094:  # "Unknown thread id": it ended meanwhile
                    raise
                continue
            killed += 1
    admin.dispose()
    return killed


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request: pytest.FixtureRequest) -> sa.URL:
    """PostgreSQL (with an application name of its own, to find its sessions) and MariaDB in turn."""
    url: sa.URL = request.getfixturevalue(f"{request.param}_url")
    if request.param == "postgresql":
        url = url.update_query_dict({"application_name": f"statestore-{uuid.uuid4().hex[:12]}"})
    return url


def kill_connections(url: sa.URL) -> int:
    """Terminate, from an admin session, every server connection a backend on ``url`` holds; return how many."""
    return _kill_postgres(url) if url.get_backend_name() == "postgresql" else _kill_mysql(url)
