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
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from statestore.core import Config
from statestore.redis import RedisStoreBackend

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, retry=None)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """A private ``redis-server`` on a free loopback port, without persistence; stop() ends it."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            *args,
        ]
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"redis-server did not start listening on 127.0.0.1:{self.port} within 10 s")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


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
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start private redis-server processes (extra arguments allowed); all are stopped afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail("this test starts its own redis-server; install Redis so that redis-server is on PATH")
    servers: list[RedisServer] = []

    def start(*args: str) -> RedisServer:
        servers.append(RedisServer(tmp_path, *args))
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
