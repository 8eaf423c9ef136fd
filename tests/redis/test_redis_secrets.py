"""A Redis password holding '@', ':' and '%' in the URL's user-info is never shown (issue 10's reproduction)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterator

import pytest
import redis

from statestore.core import TaskScope
from statestore.core.errors import StorageError
from statestore.redis import RedisStoreBackend

SCOPE = TaskScope("dag", "run", "task")


@pytest.fixture
def odd_password_user(admin: redis.Redis, backend: RedisStoreBackend) -> Iterator[tuple[str, str]]:
    """A throwaway ACL user whose password holds '@', ':' and '%' (redis-py splits user-info at its last '@')."""
    user, password = f"sstest-{secrets.token_hex(4)}", f"hunter@{secrets.token_hex(4)}:Se%cret@Tail"
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=[f"{backend.key_prefix}*"], commands=["+@all"]
    )
    yield user, password
    admin.acl_deluser(user)


def test_password_with_url_characters_is_never_shown(
    odd_password_user: tuple[str, str],
    redis_url: str,
    backend: RedisStoreBackend,
    make_backend: Callable[..., RedisStoreBackend],
    caplog: pytest.LogCaptureFixture,
) -> None:
    user, password = odd_password_user
    host = redis_url.split("://", 1)[1].rsplit("/", 1)[0]
    fragments = [part for part in password.replace("@", " ").replace(":", " ").split() if len(part) > 3]
    shown: list[str] = []
    with caplog.at_level(logging.DEBUG, logger="statestore"):
        good = make_backend(url=f"redis://{user}:{password}@{host}/0", key_prefix=backend.key_prefix)
        good.set(SCOPE, "k", '"v"')  # the raw password authenticates: it is parsed as redis-py parses it
        assert good.get(SCOPE, "k") == '"v"'
        shown += [repr(good), good.location]
        assert f"redis://{user}:***@{host}/0" in good.location
        wrong = make_backend(url=f"redis://{user}:{password}x@{host}/0", retry_attempts=0)
        with pytest.raises(StorageError, match="AuthenticationError") as info:
            wrong.get(SCOPE, "k")
        shown += [str(info.value), repr(info.value), repr(wrong), wrong.location]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        for fragment in fragments:
            assert fragment not in text, f"{fragment!r} of the password shown in {text!r}"
