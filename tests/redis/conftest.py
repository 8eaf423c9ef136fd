"""Fixtures for the Redis backend tests: a real Redis server and backends isolated by a random key prefix.

The server is ``STATESTORE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). If it is
unreachable and ``redis-server`` is on PATH, a private server is started on a free loopback port
for the session; otherwise the tests fail saying how to start one. Other test runs may share the
server, so every backend writes under its own prefix and only that prefix is deleted afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from statestore.core import Config
from statestore.core.errors import StorageError
from statestore.redis import RedisStoreBackend
from statestore.redis.testing import LocalCluster, LocalSentinel, LocalServer, wait_for

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, retry=None)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def need_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("this test starts its own redis-server; install Redis >= 7.0 so that redis-server is on PATH")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("STATESTORE_TEST_REDIS_URL", DEFAULT_URL)
    if reachable(url):
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.fail(
            f"no Redis server at {url} and no redis-server on PATH. Start one (e.g. `redis-server --port 6379` "
            "or `docker run -p 6379:6379 redis:7`) or point STATESTORE_TEST_REDIS_URL at a server."
        )
    server = LocalServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., LocalServer]]:
    """Start private redis-server processes (extra arguments allowed); all are stopped afterwards."""
    need_redis_server()
    servers: list[LocalServer] = []

    def start(*args: str) -> LocalServer:
        servers.append(LocalServer(tmp_path / f"server{len(servers)}", *args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    """A plain redis-py client on the test server, for looking behind the backend's back."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Delete the keys under one test's prefix (never FLUSHDB: the server is shared)."""
    keys = list(client.scan_iter(match=prefix.replace("[", "\\[") + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])


@pytest.fixture
def make_backend(redis_url: str, admin: redis.Redis) -> Iterator[Callable[..., RedisStoreBackend]]:
    """Build backends on the test server, each under a fresh random prefix and client name, cleaned up afterwards."""
    made: list[RedisStoreBackend] = []

    def make(**kwargs: Any) -> RedisStoreBackend:
        token = secrets.token_hex(6)
        kwargs.setdefault("url", redis_url)
        kwargs.setdefault("key_prefix", f"sstest:{token}:")
        kwargs.setdefault("client_name", f"sstest-{token}")
        kwargs.setdefault("config", Config.from_dict({}))
        made.append(RedisStoreBackend(**kwargs))
        return made[-1]

    yield make
    for backend in made:
        backend.close()
        delete_prefix(admin, backend.key_prefix)


@pytest.fixture
def redis_section(redis_url: str, admin: redis.Redis) -> Iterator[dict[str, str]]:
    """A ``[statestore_redis]`` section with a key prefix of its own, deleted afterwards."""
    token = secrets.token_hex(6)
    section = {"url": redis_url, "key_prefix": f"sstest:{token}:", "client_name": f"sstest-{token}"}
    yield section
    delete_prefix(admin, section["key_prefix"])


@pytest.fixture
def backend(make_backend: Callable[..., RedisStoreBackend]) -> RedisStoreBackend:
    return make_backend()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A Redis Cluster of three primaries and a replica of the first, started from redis-server for the session."""
    need_redis_server()
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"), replicas=1)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSentinel]:
    """A primary, a replica and three sentinels, started from redis-server for the session."""
    need_redis_server()
    sentinel = LocalSentinel(tmp_path_factory.mktemp("sentinel"))
    yield sentinel
    sentinel.stop()


class Workload:
    """Writer threads setting fresh keys until stopped; remembers every acknowledged write.

    A write that raises is not acknowledged and may or may not have happened; one that returned
    must be readable afterwards, whatever happened to the servers in between.
    """

    def __init__(self, backend: RedisStoreBackend, scopes: list[Any], threads: int = 4) -> None:
        self.backend = backend
        self.acked: list[tuple[Any, str, str]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._write, args=(n, scopes[n % len(scopes)]), daemon=True) for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _write(self, n: int, scope: Any) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            key, value = f"w{n}-{i}", f'"{n}:{i}"'
            try:
                self.backend.set(scope, key, value)
            except StorageError:
                self.failed += 1
                continue
            self.acked.append((scope, key, value))

    def wait_for_more(self, count: int, timeout: float = 30) -> None:
        """Wait until ``count`` more writes than now were acknowledged."""
        target = len(self.acked) + count
        wait_for(lambda: len(self.acked) >= target, f"{count} more acknowledged writes", timeout)

    def stop(self) -> list[tuple[Any, str, str]]:
        """Stop the writers; return the acknowledged writes that cannot be read back."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        return [(s, k, v) for s, k, v in self.acked if self.backend.get(s, k) != v]


@pytest.fixture
def workload() -> Iterator[Callable[..., Workload]]:
    """Start :class:`Workload` writer threads; any still running are stopped afterwards."""
    started: list[Workload] = []

    def start(backend: RedisStoreBackend, scopes: list[Any], threads: int = 4) -> Workload:
        started.append(Workload(backend, scopes, threads))
        return started[-1]

    yield start
    for load in started:
        load._stop.set()


@pytest.fixture
def cluster_admin(redis_cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = redis_cluster.client()
    yield client
    client.close()


@pytest.fixture
def make_cluster_backend(
    make_backend: Callable[..., RedisStoreBackend], redis_cluster: LocalCluster, cluster_admin: RedisCluster
) -> Iterator[Callable[..., RedisStoreBackend]]:
    """Backends on the test cluster (``cluster = True``, the url names one node), each under its own prefix."""
    made: list[RedisStoreBackend] = []

    def make(**kwargs: Any) -> RedisStoreBackend:
        made.append(make_backend(url=redis_cluster.url, cluster=True, **kwargs))
        return made[-1]

    yield make
    for backend in made:
        delete_prefix(cluster_admin, backend.key_prefix)
