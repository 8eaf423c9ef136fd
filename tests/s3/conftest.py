"""Fixtures for statestore-s3: moto's threaded S3 server on 127.0.0.1, request counting, a fault proxy."""

from __future__ import annotations

import http.client
import os
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from statestore.core import Config

BUCKET = "statestore-s3-tests"
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    """Dummy credentials through boto3's standard chain (environment), never the developer's own."""
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(_AWS_ENV)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_endpoint(aws_environment: None) -> Iterator[str]:
    """A real HTTP S3 endpoint: moto's ThreadedMotoServer on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"moto's server is not installed ({exc}); run: pip install -e 'packages/backend-s3[test]'")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Any:
    """A raw boto3 client on the moto server, for setup and for checking what the backend wrote."""
    import boto3

    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture(scope="session")
def bucket(s3_client: Any) -> str:
    s3_client.create_bucket(Bucket=BUCKET)
    return BUCKET


@pytest.fixture
def fresh_bucket(s3_client: Any) -> str:
    """A bucket of its own, for tests of bucket-wide settings (lifecycle rules)."""
    name = f"statestore-{secrets.token_hex(6)}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def prefix() -> str:
    """A prefix unique to one test, so tests share the bucket without seeing each other's objects."""
    return f"t-{secrets.token_hex(6)}"


@pytest.fixture
def make_backend(moto_endpoint: str, bucket: str, prefix: str) -> Callable[..., Any]:
    """Build an ``S3StoreBackend`` on the test bucket and prefix; keyword arguments override."""
    from statestore.s3 import S3StoreBackend

    def make(**overrides: Any) -> Any:
        kwargs: dict[str, Any] = {"bucket": bucket, "prefix": prefix, "endpoint_url": moto_endpoint}
        kwargs.update(overrides)
        kwargs.setdefault("config", Config.from_dict({}))
        return S3StoreBackend(**kwargs)

    return make


@dataclass
class Requests:
    """Every HTTP request a boto3 client sent (retries included), as ``(operation, method, path)``."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)
    delete_batches: list[int] = field(default_factory=list)
    _operation: threading.local = field(default_factory=threading.local)

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-call.s3", self._before_call)
        events.register("before-send.s3", self._before_send)
        events.register("provide-client-params.s3.DeleteObjects", self._delete_params)

    def _before_call(self, model: Any, **_: Any) -> None:
        self._operation.name = model.name

    def _delete_params(self, params: Any, **_: Any) -> None:
        self.delete_batches.append(len(params["Delete"]["Objects"]))

    def _before_send(self, request: Any, **_: Any) -> None:
        path = re.sub(r"^https?://[^/]+", "", request.url)
        self.sent.append((getattr(self._operation, "name", "?"), request.method, path))

    def operations(self) -> list[str]:
        return [op for op, _, _ in self.sent]

    def clear(self) -> None:
        self.sent.clear()
        self.delete_batches.clear()


@pytest.fixture
def requests_of() -> Callable[[Any], Requests]:
    """``requests_of(backend)`` starts counting the requests of that backend's client."""

    def attach(backend: Any) -> Requests:
        counter = Requests()
        counter.attach(backend.client)
        return counter

    return attach


class FaultProxy:
    """A loopback HTTP proxy in front of moto that can answer 503 to the next N requests.

    ``fail(n)`` arms it. Names in ``deny_delete`` are taken out of forwarded ``DeleteObjects``
    requests and reported back as per-key ``AccessDenied`` errors, as S3 does when a bucket policy
    forbids deleting them. ``seen`` counts requests that reached the proxy.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.failures_left = 0
        self.status = 503
        self.seen = 0
        self.deny_delete: set[str] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy._lock:
                    proxy.seen += 1
                    failing = proxy.failures_left > 0
                    proxy.failures_left -= failing
                if failing:
                    error = b"<Error><Code>SlowDown</Code><Message>injected by the test proxy</Message></Error>"
                    self._reply(proxy.status, {"Content-Type": "application/xml"}, error)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "content-length"}
                denied = proxy.deny_delete if self.command == "POST" and self.path.endswith("?delete") else set()
                denied = {name for name in denied if f"<Key>{name}</Key>".encode() in body}
                for name in denied:
                    body = body.replace(f"<Object><Key>{name}</Key></Object>".encode(), b"")
                if denied:  # the body changed: drop its checksum (moto does not check signatures)
                    headers = {k: v for k, v in headers.items() if not k.lower().startswith("x-amz-checksum")}
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                errors = "".join(
                    f"<Error><Key>{n}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                    for n in sorted(denied)
                )
                data = data.replace(b"</DeleteResult>", errors.encode() + b"</DeleteResult>")
                passed = {k: v for k, v in response.getheaders() if k.lower() not in ("content-length", "connection")}
                conn.close()
                self._reply(response.status, passed, data)

            def _reply(self, status: int, headers: dict[str, str], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, count: int, status: int = 503) -> None:
        with self._lock:
            self.failures_left, self.status = count, status

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_endpoint)
    yield proxy
    proxy.close()
