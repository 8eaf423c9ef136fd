"""Connections: retry across a dropped connection or a restarting server, credentials never shown, configuration."""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from statestore.core import Config, TaskScope
from statestore.core.config import load_config
from statestore.core.errors import ConfigurationError, StorageError
from statestore.redis import RedisStoreBackend
from statestore.redis.backend import CHUNK

SCOPE = TaskScope("dag", "run", "task")


def kill_connections(admin: redis.Redis, client_name: str) -> int:
    ids = [c["id"] for c in admin.client_list() if c.get("name") == client_name]
    for client_id in ids:
        admin.client_kill_filter(_id=client_id)
    return len(ids)


def test_killed_connection_is_replaced(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    backend.set(SCOPE, "k", '"v"')
    assert kill_connections(admin, backend._options["client_name"]) == 1
    assert backend.get(SCOPE, "k") == '"v"'
    assert kill_connections(admin, backend._options["client_name"]) == 1
    backend.set(SCOPE, "k", '"w"')
    assert backend.get(SCOPE, "k") == '"w"'


async def test_killed_async_connection_is_replaced(backend: RedisStoreBackend, admin: redis.Redis) -> None:
    await backend.aset(SCOPE, "k", '"v"')
    assert kill_connections(admin, backend._options["client_name"]) == 1
    assert await backend.aget(SCOPE, "k") == '"v"'
    await backend.aclose()


def test_an_error_reply_fails_one_operation_and_leaves_the_connection_usable(
    backend: RedisStoreBackend, admin: redis.Redis
) -> None:
    backend.set(SCOPE, "k", '"v"')
    admin.hset(backend.layout.value_key(SCOPE, "planted"), "field", "x")  # not a string: GET replies WRONGTYPE
    with pytest.raises(StorageError, match=r"Redis GET failed at .*: ResponseError: WRONGTYPE") as info:
        backend.get(SCOPE, "planted")
    assert "Check that the server is reachable" in str(info.value)
    assert backend.get(SCOPE, "k") == '"v"'
    assert kill_connections(admin, backend._options["client_name"]) == 1  # still the one connection


async def test_a_cancelled_async_operation_leaves_no_reply_behind(
    private_redis: Callable[..., Any], make_backend: Callable[..., RedisStoreBackend]
) -> None:
    server = private_redis("--enable-debug-command", "yes")
    backend = make_backend(url=server.url)
    await backend.aset(SCOPE, "a", '"a"')
    await backend.aset(SCOPE, "b", '"b"')  # the pool now holds an idle connection
    admin = aredis.Redis.from_url(server.url)
    sleeper = asyncio.create_task(admin.execute_command("DEBUG", "SLEEP", "0.4"))
    await asyncio.sleep(0.1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(backend.aget(SCOPE, "a"), 0.1)  # GET sent, its reply not read yet
    await sleeper
    await admin.aclose()
    assert await backend.aget(SCOPE, "b") == '"b"'  # not the reply meant for the cancelled GET
    await backend.aclose()


def restart_later(server: Any, delay: float) -> threading.Thread:
    """Stop ``server`` now and start it again on the same port after ``delay`` seconds."""
    server.stop()
    thread = threading.Thread(target=lambda: (time.sleep(delay), server.start()))
    thread.start()
    return thread


def test_retry_rides_out_a_server_restart(
    private_redis: Callable[..., Any], make_backend: Callable[..., RedisStoreBackend]
) -> None:
    server = private_redis()
    backend = make_backend(url=server.url, retry_attempts=8, retry_backoff_base=0.05, retry_backoff_cap=0.5)
    backend.set(SCOPE, "before", '"b"')
    thread = restart_later(server, 0.5)
    try:
        backend.set(SCOPE, "after", '"a"')  # refused connections are retried until the server is back
    finally:
        thread.join()
    assert backend.get(SCOPE, "after") == '"a"'
    assert backend.get(SCOPE, "before") is None  # the private server keeps nothing across restarts


async def test_async_retry_rides_out_a_server_restart(
    private_redis: Callable[..., Any], make_backend: Callable[..., RedisStoreBackend]
) -> None:
    server = private_redis()
    backend = make_backend(url=server.url, retry_attempts=8, retry_backoff_base=0.05, retry_backoff_cap=0.5)
    await backend.aset(SCOPE, "before", '"b"')
    thread = restart_later(server, 0.5)
    try:
        await backend.aset(SCOPE, "after", '"a"')
    finally:
        thread.join()
    assert await backend.aget(SCOPE, "after") == '"a"'
    await backend.aclose()


def test_without_retries_a_restart_fails_with_a_clear_error(
    private_redis: Callable[..., Any], make_backend: Callable[..., RedisStoreBackend]
) -> None:
    server = private_redis()
    backend = make_backend(url=server.url, retry_attempts=0)
    backend.set(SCOPE, "before", '"b"')
    thread = restart_later(server, 0.5)
    try:
        with pytest.raises(StorageError, match=r"Redis SET failed at redis://127\.0\.0\.1:\d+/0 key_prefix=") as info:
            backend.set(SCOPE, "after", '"a"')
    finally:
        thread.join()
    assert "ConnectionError" in str(info.value)
    assert "Check that the server is reachable" in str(info.value)
    assert isinstance(info.value.__cause__, redis.ConnectionError)


@pytest.fixture
def acl_user(admin: redis.Redis, backend: RedisStoreBackend) -> Iterator[tuple[str, str]]:
    """A throwaway Redis ACL user limited to one key prefix, deleted afterwards."""
    user, password = f"sstest-{secrets.token_hex(4)}", f"pw-{secrets.token_hex(12)}"
    admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=[f"{backend.key_prefix}*"],
        commands=["+@all"],
    )
    yield user, password
    admin.acl_deluser(user)


def test_password_is_never_shown(
    acl_user: tuple[str, str],
    redis_url: str,
    backend: RedisStoreBackend,
    make_backend: Callable[..., RedisStoreBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = acl_user
    host = redis_url.split("://", 1)[1].rsplit("/", 1)[0]
    caplog.set_level(logging.DEBUG)
    good = make_backend(url=f"redis://{user}:{password}@{host}/0", key_prefix=backend.key_prefix)
    good.set(SCOPE, "k", '"v"')
    assert good.get(SCOPE, "k") == '"v"'
    assert password not in repr(good)
    assert f"redis://{user}:***@{host}/0" in repr(good)
    wrong = f"{password}-wrong"
    for bad in (
        make_backend(url=f"redis://{user}:{wrong}@{host}/0", retry_attempts=0),
        make_backend(url=f"redis://{host}/0?password={wrong}", username=user, retry_attempts=0),
        make_backend(url=f"redis://{host}/0", username=user, password=wrong, retry_attempts=0),
    ):
        assert wrong not in repr(bad)
        with pytest.raises(StorageError, match="Redis GET failed at") as info:
            bad.get(SCOPE, "k")
        assert "AuthenticationError" in str(info.value)
        for text in (str(info.value), repr(info.value), str(info.value.__cause__), repr(bad), bad.location):
            assert wrong not in text
    assert password not in caplog.text


def test_no_argument_constructor_reads_the_config_file_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str, admin: redis.Redis
) -> None:
    prefix = f"sstest:{secrets.token_hex(6)}:"
    config_file = tmp_path / "statestore.cfg"
    config_file.write_text(f"[statestore_redis]\nurl = {redis_url}\nkey_prefix = wrong:\nretry_attempts = 2\n")
    monkeypatch.setenv("STATESTORE_CONFIG", str(config_file))
    monkeypatch.setenv("STATESTORE__STATESTORE_REDIS__KEY_PREFIX", prefix)
    monkeypatch.setenv("STATESTORE__STATESTORE_REDIS__CLIENT_NAME", "sstest-config")
    backend = RedisStoreBackend()
    try:
        assert backend.key_prefix == prefix
        assert backend._backoff[0] == 2
        backend.set(SCOPE, "k", '"v"')
        assert admin.get(backend.layout.value_key(SCOPE, "k")) == ':"v"'
        assert backend.location == f"{redis_url} key_prefix={prefix}"
        overridden = RedisStoreBackend(key_prefix="other:", retry_attempts=5, config=load_config())
        assert (overridden.key_prefix, overridden._backoff[0]) == ("other:", 5)
    finally:
        backend.clear(SCOPE)
        backend.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"key_prefix": "a{b"}, r"key_prefix must not contain '\{' or '\}'"),
        ({"url": "http://user:hunter2@host/0"}, r"url must start with redis://.*'http://user:\*\*\*@host/0'"),
        ({"url": "redis://host:notaport/0"}, r"url 'redis://host:notaport/0' is invalid"),
        ({"retry_attempts": "-1"}, r"retry_attempts must be >= 0, got -1"),
        ({"socket_timeout": "soon"}, r"socket_timeout must be a number, got 'soon'"),
        ({"retry_backoff_cap": "-2"}, r"retry_backoff_cap must be >= 0, got -2.0"),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        RedisStoreBackend(config=Config.from_dict({"statestore_redis": settings}))
    assert "hunter2" not in str(info.value)


def test_max_connections_caps_concurrency_not_threads(
    make_backend: Callable[..., RedisStoreBackend], admin: redis.Redis
) -> None:
    """Each operation borrows a connection: more threads than max_connections wait their turn, none fails."""
    backend = make_backend(max_connections=2)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                backend.set(SCOPE, f"t{n}-{i}", '"v"')
                assert backend.get(SCOPE, f"t{n}-{i}") == '"v"'
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(backend.keys(SCOPE)) == 400
    assert 1 <= len([c for c in admin.client_list() if c.get("name") == backend._options["client_name"]]) <= 2


def test_async_clients_are_closed_with_their_event_loops(backend: RedisStoreBackend) -> None:
    for _ in range(5):
        asyncio.run(backend.aset(SCOPE, "k", '"v"'))
    assert backend._async_sides == {}  # asyncio.run cancelled each guard, which closed its client
    for _ in range(5):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(backend.aget(SCOPE, "k")) == '"v"'
        loop.run_until_complete(backend.aclose())
        loop.close()
    assert backend._async_sides == {}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # Python's own, for the open sockets
def test_clients_of_loops_closed_abruptly_are_dropped(backend: RedisStoreBackend) -> None:
    for _ in range(5):
        loop = asyncio.new_event_loop()
        assert loop.run_until_complete(backend.aget(SCOPE, "k")) is None
        loop.close()  # no task cancelled, no aclose(): the next loop's first operation drops the client
    assert len(backend._async_sides) == 1
    assert asyncio.run(backend.aget(SCOPE, "k")) is None  # drops the last one, closes its own
    assert backend._async_sides == {}
    gc.collect()  # here, where Python's warnings about the sockets left open are expected


def test_clear_and_cleanup_of_100_000_keys_never_block_the_server(
    private_redis: Callable[..., Any], make_backend: Callable[..., RedisStoreBackend]
) -> None:
    """Clear and cleanup of 100,000 keys run as hundreds of short scripts, well under 10 ms each.

    Server time is measured as the server's CPU time (INFO cpu) per script call: unlike the wall
    time in SLOWLOG or commandstats, it does not grow when a loaded host deschedules the server.
    """
    server = private_redis()
    backend = make_backend(url=server.url)
    admin = server.client()
    index = backend.layout.index_key(SCOPE)
    backend.set(SCOPE, "kept", '"k"')  # the index persists: cleanup has to prune it entry by entry
    soon = int(time.time() * 1000) + 300
    fill(admin, backend, index, lambda i: (f"{soon}:1", soon, soon))
    time.sleep(0.4)  # let every value expire: cleanup then prunes 100,000 index entries
    with short_scripts(admin, calls=100_000 // CHUNK):
        assert backend.cleanup().removed == 100_000
    assert backend.keys(SCOPE) == ["kept"]
    fill(admin, backend, index, lambda i: (":1", None, "inf"))
    with short_scripts(admin, calls=100_000 // CHUNK):
        backend.clear(SCOPE)
    assert admin.dbsize() == 0
    admin.close()


def fill(admin: redis.Redis, backend: RedisStoreBackend, index: str, entry: Callable[[int], tuple[Any, ...]]) -> None:
    """Write 100,000 values of SCOPE and their index entries directly (value, PXAT or None, score)."""
    for start in range(0, 100_000, 10_000):
        pipe = admin.pipeline(transaction=False)
        for i in range(start, start + 10_000):
            value, pxat, score = entry(i)
            pipe.set(backend.layout.value_key(SCOPE, f"k{i}"), value, pxat=pxat)
            pipe.zadd(index, {f"k{i}": score})
        pipe.execute()


@contextmanager
def short_scripts(admin: redis.Redis, calls: int) -> Iterator[None]:
    """Check that the block runs at least ``calls`` scripts, using under 2 ms of server CPU each on average."""
    admin.config_resetstat()
    before = admin.info("cpu")
    yield
    after = admin.info("cpu")
    cpu = sum(after[k] - before[k] for k in ("used_cpu_user_main_thread", "used_cpu_sys_main_thread"))
    scripts = admin.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert scripts >= calls
    assert cpu / scripts < 0.002, f"{cpu / scripts * 1000:.2f} ms of server CPU per script"
