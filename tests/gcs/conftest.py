"""Fixtures for the GCS backend tests: fake-gcs-server on 127.0.0.1, one bucket, a prefix per backend.

fake-gcs-server is started once per session (``statestore.gcs.testing``; ``STATESTORE_TEST_GCS_URL``
names an already running one instead). ``STORAGE_EMULATOR_HOST`` points at it for the session, so
every client is anonymous. Each backend writes under its own random prefix, so tests never see
each other's objects. ``proxy`` puts a request-counting, fault-injecting proxy in front of the
emulator; backends built with ``via_proxy=True`` talk through it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from statestore.core import Config
from statestore.gcs import GCSStoreBackend
from statestore.gcs.testing import (
    CountingProxy,
    Emulator,
    create_bucket,
    start_fake_gcs_server,
    start_gcp_storage_emulator,
)

MakeBackend = Callable[..., GCSStoreBackend]


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Emulator]:
    """fake-gcs-server for the session, with ``STORAGE_EMULATOR_HOST`` set while it runs."""
    with start_fake_gcs_server() as emulator, pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
        yield emulator


@pytest.fixture(scope="session")
def gcs_bucket(gcs_emulator: Emulator) -> str:
    """A bucket of this session's own."""
    bucket = f"statestore-test-{secrets.token_hex(4)}"
    create_bucket(gcs_emulator.url, bucket)
    return bucket


@pytest.fixture
def proxy(gcs_emulator: Emulator) -> Iterator[CountingProxy]:
    """A counting proxy in front of the emulator, for this test only."""
    with CountingProxy(gcs_emulator.url) as counting:
        yield counting


@pytest.fixture
def make_backend(gcs_emulator: Emulator, gcs_bucket: str, request: pytest.FixtureRequest) -> MakeBackend:
    """Build backends on the session bucket under a fresh prefix; ``via_proxy=True`` routes through ``proxy``."""

    def make(*, via_proxy: bool = False, prefix: str | None = None, **kwargs: Any) -> GCSStoreBackend:
        endpoint = request.getfixturevalue("proxy").url if via_proxy else gcs_emulator.url
        return GCSStoreBackend(
            gcs_bucket,
            prefix if prefix is not None else f"t-{secrets.token_hex(6)}",
            endpoint=endpoint,
            config=kwargs.pop("config", Config.from_dict({})),
            **kwargs,
        )

    return make


@pytest.fixture(scope="session")
def raw_client(gcs_emulator: Emulator) -> storage.Client:
    """A plain google-cloud-storage client on the emulator, to look at objects behind the backend's back."""
    return storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_emulator.url}
    )


@pytest.fixture(scope="session")
def lifecycle_emulator() -> Iterator[Emulator]:
    """gcp-storage-emulator, which (unlike fake-gcs-server) stores bucket lifecycle configuration."""
    with start_gcp_storage_emulator() as emulator:
        yield emulator
