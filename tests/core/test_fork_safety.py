"""Fork safety of core's backends: memory, local and the metastore on SQLite, PostgreSQL and MariaDB.

And the metastore's fork gate: a fork waits while another thread opens a database connection.

The plugins run the same :class:`~statestore.core.testing.ForkSuite` in their own test folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from statestore.core import Config
from statestore.core.backends.local import LocalStoreBackend
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.metastore import MetastoreStoreBackend
from statestore.core.metastore.engines import AsyncEngines, driver_urls, make_engine
from statestore.core.testing import ForkSuite


class TestMemoryForks(ForkSuite):
    shares_storage_across_processes = False  # each process has its own copy of the data

    @pytest.fixture
    def backend(self) -> MemoryStoreBackend:
        return MemoryStoreBackend(config=Config.from_dict({}))


class TestLocalForks(ForkSuite):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> LocalStoreBackend:
        return LocalStoreBackend(tmp_path, config=Config.from_dict({}))


class TestMetastoreForks(ForkSuite):
    @pytest.fixture
    def backend(self, metastore_url: sa.URL) -> Iterator[MetastoreStoreBackend]:
        backend = MetastoreStoreBackend(metastore_url, config=Config.from_dict({}))
        yield backend
        backend.dispose()


_fork_pending: threading.Event | None = None


def _announce_fork() -> None:
    if _fork_pending is not None:
        _fork_pending.set()


# Registered after the metastore's own hook (imported above), so it runs first: it announces the fork
# before the metastore's hook waits for the connection in flight.
os.register_at_fork(before=_announce_fork)


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_fork_waits_for_a_connection_being_opened_in_another_thread(flavour: str) -> None:
    """No fork lands inside a driver's connect (OpenSSL and resolver locks): the child sees it finished.

    A server that accepts and answers nothing holds the connect open; it hangs up only once the
    fork is announced. A child forked while the connect was still in flight would see no hang-up.
    """
    global _fork_pending
    server = socket.create_server(("127.0.0.1", 0))
    url = sa.make_url(f"mysql+pymysql://statestore@127.0.0.1:{server.getsockname()[1]}/none")
    accepted, pending, hung_up = threading.Event(), threading.Event(), threading.Event()

    def serve() -> None:
        conn, _ = server.accept()
        accepted.set()
        pending.wait(timeout=30)
        hung_up.set()
        conn.close()

    def connect() -> None:
        with contextlib.suppress(sa.exc.OperationalError):
            if flavour == "sync":
                make_engine(url).connect()
            else:
                asyncio.run(_connect_async(url))

    threads = [threading.Thread(target=serve), threading.Thread(target=connect)]
    for thread in threads:
        thread.start()
    try:
        assert accepted.wait(timeout=30), "the driver never connected"
        _fork_pending = pending
        pid = os.fork()
        if pid == 0:
            os._exit(0 if hung_up.is_set() else 1)
        _fork_pending = None
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the fork landed while the connect was in flight"
    finally:
        pending.set()
        for thread in threads:
            thread.join(timeout=30)
        server.close()


async def _connect_async(url: sa.URL) -> None:
    engines = AsyncEngines(driver_urls(url)[1])
    engine = await engines.get()
    try:
        async with engine.connect():
            pass
    finally:
        await engines.dispose()
