"""A burst of S3 500/503 answers (from a loopback proxy in front of moto) is retried by botocore's standard mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from statestore.core import StorageError, TaskScope

TASK = TaskScope("dag", "run", "task")


@pytest.mark.parametrize("status", [500, 503])
def test_burst_is_retried(status: int, make_backend: Callable[..., Any], fault_proxy: Any) -> None:
    backend = make_backend(endpoint_url=fault_proxy.url, max_attempts=5)
    fault_proxy.fail(2, status)
    backend.set(TASK, "k", '"v"')
    assert fault_proxy.seen == 3
    fault_proxy.fail(2, status)
    assert backend.get(TASK, "k") == '"v"'
    assert fault_proxy.seen == 6


async def test_burst_is_retried_async(make_backend: Callable[..., Any], fault_proxy: Any) -> None:
    backend = make_backend(endpoint_url=fault_proxy.url, max_attempts=3)
    fault_proxy.fail(2)
    await backend.aset(TASK, "k", "1")
    fault_proxy.fail(1)
    assert await backend.aget(TASK, "k") == "1"
    assert fault_proxy.seen == 5


def test_exhausted_retries_raise_storage_error(make_backend: Callable[..., Any], fault_proxy: Any) -> None:
    backend = make_backend(endpoint_url=fault_proxy.url, max_attempts=2)
    fault_proxy.fail(10)
    with pytest.raises(
        StorageError,
        match=r"S3 PutObject s3://statestore-s3-tests/t-\w+/task/dag/run/task/-1/k "
        r"failed: SlowDown: injected by the test proxy",
    ):
        backend.set(TASK, "k", "1")
    assert fault_proxy.seen == 2  # max_attempts counts every attempt, the first included
    fault_proxy.fail(0)
    assert backend.get(TASK, "k") is None  # the rejected write wrote nothing
