"""The metastore survives a server that dropped its pooled connections (no pre-ping: the retry rule).

The server side of every connection the backend holds is killed between two operations; the
next operation, task or asset, sync and async, must succeed on a fresh connection and see the data.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from statestore.core import AssetScope, Config, TaskScope
from statestore.core.metastore import MetastoreStoreBackend

from ..conftest import kill_connections


def test_sync_operation_after_server_killed_the_connection(server_url: sa.URL) -> None:
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = TaskScope("reconnect", uuid.uuid4().hex, "t")
    backend.set(scope, "k", '"before"')
    assert kill_connections(server_url) >= 1, "the test must have killed the backend's pooled connection"
    assert backend.get(scope, "k") == '"before"'
    backend.set(scope, "k", '"after"')
    assert backend.get(scope, "k") == '"after"'


async def test_async_operation_after_server_killed_the_connection(server_url: sa.URL) -> None:
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = TaskScope("reconnect", uuid.uuid4().hex, "t")
    await backend.aset(scope, "k", '"before"')
    assert kill_connections(server_url) >= 1, "the test must have killed the backend's pooled connection"
    assert await backend.aget(scope, "k") == '"before"'
    await backend.adelete(scope, "k")
    assert await backend.aget(scope, "k") is None


def test_asset_writes_after_server_killed_the_connection(server_url: sa.URL) -> None:
    """An asset write is a transaction of several statements: the dead connection is retried, never surfaced."""
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = AssetScope(name=f"reconnect-{uuid.uuid4().hex}")
    backend.set(scope, "k", '"before"')
    assert kill_connections(server_url) >= 1
    backend.set(scope, "k", '"after"')
    assert backend.get(scope, "k") == '"after"'
    backend.set(scope, "ref", '{"__airflow_state_ref__": "x://1"}')  # not repeatable: a certain rollback is retried
    assert kill_connections(server_url) >= 1
    backend.set(scope, "ref", '{"__airflow_state_ref__": "x://2"}')
    assert backend.get(scope, "ref") == '{"__airflow_state_ref__": "x://2"}'


async def test_async_asset_writes_after_server_killed_the_connection(server_url: sa.URL) -> None:
    backend = MetastoreStoreBackend(server_url, config=Config.from_dict({}))
    scope = AssetScope(name=f"reconnect-{uuid.uuid4().hex}")
    await backend.aset(scope, "k", '"before"')
    assert kill_connections(server_url) >= 1
    await backend.aset(scope, "k", '"after"')
    assert await backend.aget(scope, "k") == '"after"'
