"""The fork-safety tests of :class:`ForkSuite`; see :mod:`statestore.core.testing` for how to use them.

Airflow's task runner, Celery's prefork pool and ``multiprocessing`` fork processes that already
used a backend. Each test here uses the backend, forks, and lets parent and child write and read
keys of their own scopes at the same time through the *same* instance, sync then async. A child
that shares a connection with its parent reads the parent's replies (foreign values), fails on
garbled protocol state, or hangs; a lock held by another thread at the fork hangs the child.
POSIX only (``os.fork``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import select
import signal
import threading
import time
from typing import Any, ClassVar

import pytest

from statestore.core.base import BaseStoreBackend
from statestore.core.scopes import TaskScope

__all__ = ["ForkSuite"]


def _exercise(backend: BaseStoreBackend, scope: TaskScope, who: str, rounds: int) -> dict[str, Any]:
    """Write then read back ``rounds`` values of one key, sync then async; report what went wrong."""
    foreign: list[str] = []
    errors: list[str] = []

    def check(expected: str, got: str | None) -> None:
        if got != expected:
            foreign.append(f"expected {expected}, read {got}")

    for i in range(rounds):
        value = json.dumps(f"{who}-sync-{i}")
        try:
            backend.set(scope, "k", value)
            check(value, backend.get(scope, "k"))
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the test
            errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")

    async def run_async() -> None:
        for i in range(rounds // 2):
            value = json.dumps(f"{who}-async-{i}")
            try:
                await backend.aset(scope, "k", value)
                check(value, await backend.aget(scope, "k"))
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")

    asyncio.run(run_async())
    return {"foreign": foreign[:5], "foreign_count": len(foreign), "errors": errors[:5], "error_count": len(errors)}


class ForkSuite:
    """Fork-safety tests; subclass in a test module and override the ``backend`` fixture.

    ``fork_rounds`` sync rounds (and half as many async ones) run in parent and child at once;
    ``fork_timeout`` bounds the wait for the child, which is killed (and the test failed) after it.
    At the end the parent reads the child's last write, unless ``shares_storage_across_processes``
    is False.
    """

    fork_rounds: ClassVar[int] = 200
    fork_timeout: ClassVar[float] = 120.0
    shares_storage_across_processes: ClassVar[bool] = True
    """False for a process-local store (``memory``): the parent then does not see the child's writes."""

    @pytest.fixture
    def backend(self) -> BaseStoreBackend:
        """Override in the subclass: the backend under test."""
        raise NotImplementedError("a ForkSuite subclass must override the `backend` fixture")

    def _fork_and_compare(self, backend: BaseStoreBackend, *, busy_thread: bool) -> None:
        token = secrets.token_hex(6)
        parent_scope = TaskScope(f"{token}fork", "run", "parent")
        child_scope = TaskScope(f"{token}fork", "run", "child")
        backend.set(parent_scope, "k", '"before-fork"')  # pools a connection / builds clients before the fork
        assert backend.get(parent_scope, "k") == '"before-fork"'
        asyncio.run(backend.aget(parent_scope, "k"))
        stop = threading.Event()
        busy_errors: list[str] = []

        def busy() -> None:  # holds the backend's locks and connections while the main thread forks
            scope = TaskScope(f"{token}fork", "run", "busy")
            while not stop.is_set():
                try:
                    backend.set(scope, "k", '"busy"')
                    backend.get(scope, "k")
                except Exception as exc:  # noqa: BLE001
                    busy_errors.append(f"{type(exc).__name__}: {exc}")

        thread = threading.Thread(target=busy, daemon=True) if busy_thread else None
        if thread is not None:
            thread.start()
            time.sleep(0.05)  # let it get into the backend (the fork must land mid-operation, not before)
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            try:
                os.close(reader)
                report = _exercise(backend, child_scope, "child", self.fork_rounds)
                os.write(writer, json.dumps(report).encode())
            except BaseException as exc:  # noqa: BLE001
                os.write(writer, json.dumps({"crash": f"{type(exc).__name__}: {exc}"}).encode())
            finally:
                os._exit(0)
        os.close(writer)
        try:
            parent = _exercise(backend, parent_scope, "parent", self.fork_rounds)
            child = self._read_report(reader, pid)
        finally:
            stop.set()
            if thread is not None:
                thread.join(timeout=30)
            os.close(reader)
        assert child.get("crash") is None, f"the forked child crashed: {child['crash']}"
        for who, report in (("parent", parent), ("child", child)):
            assert report["foreign_count"] == 0, f"{who} read values it did not write: {report['foreign']}"
            assert report["error_count"] == 0, f"{who} failed after the fork: {report['errors']}"
        assert busy_errors == [], f"the parent's busy thread failed: {busy_errors[:5]}"
        assert backend.get(parent_scope, "k") == json.dumps(f"parent-async-{self.fork_rounds // 2 - 1}")
        if self.shares_storage_across_processes:
            assert backend.get(child_scope, "k") == json.dumps(f"child-async-{self.fork_rounds // 2 - 1}")

    def _read_report(self, reader: int, pid: int) -> dict[str, Any]:
        """The child's JSON report; a child that does not finish within ``fork_timeout`` hung."""
        deadline = time.monotonic() + self.fork_timeout
        chunks: list[bytes] = []
        while True:
            ready, _, _ = select.select([reader], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child hung (no report within {self.fork_timeout:.0f} s)")
            chunk = os.read(reader, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.waitpid(pid, 0)
        return dict(json.loads(b"".join(chunks) or b'{"crash": "no report"}'))

    def test_parent_and_forked_child_read_only_their_own_values(self, backend: BaseStoreBackend) -> None:
        """Used before the fork, the same instance serves parent and child, sync and async."""
        self._fork_and_compare(backend, busy_thread=False)

    def test_fork_while_another_thread_uses_the_backend(self, backend: BaseStoreBackend) -> None:
        """A fork landing while a thread holds the backend's locks and connections leaves the child working."""
        self._fork_and_compare(backend, busy_thread=True)
