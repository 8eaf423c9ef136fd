"""The metastore survives a server that dropped its pooled connections (no pre-ping: one retry).

The server side of every connection the backend holds is killed between two operations; the
next operation, sync and async, must succeed on a fresh connection and see the data.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from statestore.core import Config, TaskScope
from statestore.core.metastore import MetastoreStoreBackend

from ..conftest import MYSQL_URL, POSTGRES_URL


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
            conn.exec_driver_sql(f"KILL {int(connection_id)}")
            killed += 1
    admin.dispose()
    return killed


@pytest.fixture(params=["postgresql", "mysql"])
def server_url(request: pytest.FixtureRequest) -> sa.URL:
    url: sa.URL = request.getfixturevalue(f"{request.param}_url")
    if request.param == "postgresql":
        url = url.update_query_dict({"application_name": f"statestore-{uuid.uuid4().hex[:12]}"})
    return url


def _kill(url: sa.URL) -> int:
    return _kill_postgres(url) if url.get_backend_name() == "postgresql" else _kill_mysql(url)


def test_sync_operation_after_server_killed_the_connection(server_url: sa.URL) -> None:
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = TaskScope("reconnect", uuid.uuid4().hex, "t")
    backend.set(scope, "k", '"before"')
    assert _kill(server_url) >= 1, "the test must have killed the backend's pooled connection"
    assert backend.get(scope, "k") == '"before"'
    backend.set(scope, "k", '"after"')
    assert backend.get(scope, "k") == '"after"'


async def test_async_operation_after_server_killed_the_connection(server_url: sa.URL) -> None:
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = TaskScope("reconnect", uuid.uuid4().hex, "t")
    await backend.aset(scope, "k", '"before"')
    assert _kill(server_url) >= 1, "the test must have killed the backend's pooled connection"
    assert await backend.aget(scope, "k") == '"before"'
    await backend.adelete(scope, "k")
    assert await backend.aget(scope, "k") is None
