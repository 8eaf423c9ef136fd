"""``GCSStoreBackend``: task and asset state as one Google Cloud Storage object per key.

Every rule (object names, references, expiry and encoding metadata, threshold, compression,
batched clear, cleanup) comes from :class:`statestore.core.objectstore.ObjectStoreBackend`; this
module supplies only GCS's storage primitives and settings:

* one request per primitive: a multipart upload (data, metadata, ``customTime``, KMS key), a media
  download whose ``x-goog-meta-*`` response headers carry the metadata, a delete;
* listings of up to 1000 objects per page, which carry each object's metadata;
* deletes in batch requests of up to 100 calls (the GCS limit), built in Google's documented
  ``multipart/mixed`` format;
* only public APIs: google-cloud-storage's ``Client`` for uploads, deletes, listings and the bucket,
  and, for the two requests whose response it does not expose (the download's ``x-goog-meta-*``
  headers, per-call batch outcomes), google-auth's ``AuthorizedSession`` on the same credentials and
  the JSON API's documented URLs;
* the expiry is also written as the object's ``customTime``, so a bucket lifecycle rule
  ``daysSinceCustomTime`` reclaims expired objects without any client
  (:meth:`GCSStoreBackend.lifecycle_rule`, ``state-store gcs lifecycle``).

google-cloud-storage is synchronous; the async twins run these primitives in worker threads
(the layer's default), so the event loop never blocks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import google.auth
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from statestore.core.config import Config, mask_secret
from statestore.core.errors import ConfigurationError, StorageError
from statestore.core.objectstore import ListedObject, ObjectStoreBackend, StoredObject
from statestore.gcs.plugin import SECTION as _SECTION
from statestore.gcs.plugin import SETTINGS

__all__ = ["GCSStoreBackend"]

_OTEL_TRACES = "ENABLE_GCS_PYTHON_CLIENT_OTEL_TRACES"
_NO_BUCKET_PROBE = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"
_EMULATOR_HOST = "STORAGE_EMULATOR_HOST"
_LIST_PAGE_SIZE = 1000  # the most one objects.list request returns
_META_HEADER = "x-goog-meta-"
_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]")
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})(.*)$", re.MULTILINE)
_CONTENT_ID = re.compile(rb"^Content-ID:\s*<response-(\d+)>", re.MULTILINE | re.IGNORECASE)
_MD5 = re.compile(r"(?:^|,)\s*md5=([A-Za-z0-9+/=]+)")
_PERMISSIONS = {
    "read": "storage.objects.get",
    "write": "storage.objects.create and storage.objects.delete",
    "delete": "storage.objects.delete",
    "list": "storage.objects.list",
    "batch-delete": "storage.objects.delete",
    "read the lifecycle of": "storage.buckets.get",
    "update the lifecycle of": "storage.buckets.update",
}
_SERVICE_ERRORS = (
    api_exceptions.GoogleAPICallError,
    api_exceptions.RetryError,
    GoogleAuthError,
    requests.RequestException,
    InvalidResponse,
    DataCorruption,
)


@dataclass(frozen=True)
class _Connection:
    """What one process uses to reach GCS: the client, the bucket handle, a session on the same credentials."""

    client: storage.Client
    bucket: storage.Bucket
    session: AuthorizedSession
    endpoint: str


class GCSStoreBackend(ObjectStoreBackend):
    """Task/asset state in a GCS bucket under an optional prefix; serves both roles.

    Keyword arguments override the ``[statestore_gcs]`` settings of the same name; with none, the
    backend is configured from that section alone (as Airflow instantiates it). Credentials come
    from Google's standard chain (Application Default Credentials), or from the service-account
    (or other credential) file named by ``credentials_file``; with ``STORAGE_EMULATOR_HOST`` set
    the client talks to that emulator anonymously.
    """

    name = "gcs"
    reference_scheme = "gs"
    config_section = _SECTION
    settings = SETTINGS
    delete_batch_size: ClassVar[int] = 100
    max_name_bytes: ClassVar[int | None] = 1024

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str | None = None,
        *,
        project: str | None = None,
        credentials_file: str | None = None,
        endpoint: str | None = None,
        kms_key_name: str | None = None,
        threshold: int | None = None,
        compression: str | None = None,
        retry_deadline: float | None = None,
        timeout: float | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__(
            bucket=bucket,
            prefix=prefix,
            threshold=threshold,
            compression=compression,
            project=project,
            credentials_file=credentials_file,
            endpoint=endpoint,
            kms_key_name=kms_key_name,
            retry_deadline=retry_deadline,
            timeout=timeout,
            config=config,
        )
        settings = self._settings
        self.project: str | None = settings["project"]
        self.credentials_file: str | None = settings["credentials_file"]
        self.endpoint: str | None = settings["endpoint"]
        self.kms_key_name: str | None = settings["kms_key_name"]
        self.retry_deadline: float = settings["retry_deadline"]
        self.timeout: float = settings["timeout"]
        self._retry: Retry = DEFAULT_RETRY.with_timeout(self.retry_deadline)
        self._connection_lock = threading.Lock()
        self._connection: _Connection | None = None

    # -- settings -----------------------------------------------------------------------------------------

    def _check_bucket(self, bucket: str) -> str:
        bucket = bucket.strip()
        if not _BUCKET_NAME.fullmatch(bucket) or ("." not in bucket and len(bucket) > 63) or ".." in bucket:
            raise ConfigurationError(
                f"GCSStoreBackend: invalid bucket name {bucket!r}; GCS bucket names are 3-63 characters "
                "(up to 222 with dots) of lower-case letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit"
            )
        return bucket

    # -- the client --------------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Drop the parent's client and session (they would share keep-alive sockets) and a lock a thread held."""
        self._connection_lock = threading.Lock()
        self._connection = None

    @property
    def client(self) -> storage.Client:
        """The google-cloud-storage client, created on first use (so constructing never touches the network)."""
        return self._connected().client

    @property
    def _bucket(self) -> storage.Bucket:
        return self._connected().bucket

    def _connected(self) -> _Connection:
        with self._connection_lock:
            if self._connection is None:
                self._connection = self._connect()
            return self._connection

    def _connect(self) -> _Connection:
        """The client and, on the same credentials, the session for the requests the client cannot make."""
        credentials, project = self._credentials()
        options = {"api_endpoint": self.endpoint} if self.endpoint else None
        client = storage.Client(project=self.project or project, credentials=credentials, client_options=options)
        if os.environ.get(_OTEL_TRACES, "").strip().lower() not in ("1", "true", "yes", "on"):
            # google-cloud-storage >= 3.11 fetches the bucket's metadata (GET bucket, which needs
            # storage.buckets.get) in a background thread only to label OpenTelemetry spans, even
            # with tracing off. It has no per-client switch; this process-wide variable is the opt-out
            # its maintainers point to (googleapis/google-cloud-python#18203). With tracing off no
            # client in the process uses that metadata, and an explicit setting is left alone.
            os.environ.setdefault(_NO_BUCKET_PROBE, "true")
        session = AuthorizedSession(credentials, refresh_timeout=self.timeout)  # type: ignore[no-untyped-call]
        session.configure_mtls_channel()  # type: ignore[no-untyped-call]  # as the client does for its own
        return _Connection(client, client.bucket(self.bucket), session, client.api_endpoint)

    def _credentials(self) -> tuple[Credentials, str | None]:
        """The credentials (and their project) the client and the session share, chosen as the client would.

        A ``credentials_file`` wins; else ``STORAGE_EMULATOR_HOST`` means anonymous access; else
        Application Default Credentials.
        """
        if self.credentials_file:
            key = self._service_account_credentials(self.credentials_file)
            return key, key.project_id
        if os.environ.get(_EMULATOR_HOST):
            return AnonymousCredentials(), None  # type: ignore[no-untyped-call]
        try:
            credentials, project = google.auth.default(scopes=storage.Client.SCOPE)  # type: ignore[no-untyped-call]
        except DefaultCredentialsError as exc:
            raise ConfigurationError(
                "GCSStoreBackend found no Google credentials. Use Application Default Credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, or the "
                f"metadata server on Google Cloud), or set [{_SECTION}] credentials_file. Cause: {exc}"
            ) from exc
        return credentials, project

    @staticmethod
    def _service_account_credentials(path: str) -> service_account.Credentials:
        """Load the service-account key at ``path``; any problem is a ``ConfigurationError`` naming the setting."""
        try:
            with open(path, encoding="utf-8") as file:
                info = json.load(file)
            if not isinstance(info, dict) or info.get("type") != "service_account":
                kind = info.get("type") if isinstance(info, dict) else type(info).__name__
                raise ValueError(
                    f"it is not a service-account key (type {kind!r}); for other credential types "
                    "use Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS)"
                )
            credentials: service_account.Credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=storage.Client.SCOPE
            )
            return credentials
        except (OSError, ValueError) as exc:  # json.JSONDecodeError and google's malformed-key errors are ValueErrors
            raise ConfigurationError(f"[{_SECTION}] credentials_file {path!r} cannot be used: {exc}") from None

    @contextmanager
    def _calling(self, action: str, name: str = "") -> Iterator[None]:
        """Translate the client's errors while doing ``action`` on ``name`` into ``StorageError``."""
        where = f"gs://{self.bucket}/{name}"
        try:
            yield
        except api_exceptions.Forbidden as exc:
            raise StorageError(
                f"GCS refused to {action} {where}: {mask_secret('url', str(exc.message))}. The credentials need "
                f"{_PERMISSIONS.get(action, 'access')} on bucket {self.bucket!r} (see the statestore-gcs README)."
            ) from exc
        except api_exceptions.NotFound as exc:
            if "bucket" not in str(exc).lower():
                raise StorageError(f"GCS could not {action} {where}: {exc}") from exc
            raise StorageError(
                f"GCS could not {action} {where}: bucket {self.bucket!r} does not exist. Create it with "
                f"`gcloud storage buckets create gs://{self.bucket}`, or set [{_SECTION}] bucket to an existing one"
            ) from exc
        except _SERVICE_ERRORS as exc:
            raise StorageError(f"GCS could not {action} {where}: {mask_secret('url', str(exc))}") from exc

    # -- primitives ----------------------------------------------------------------------------------------

    def _put_object(self, name: str, data: bytes, metadata: Mapping[str, str], expires_at: datetime | None) -> None:
        blob = self._bucket.blob(name, kms_key_name=self.kms_key_name)
        blob.metadata = dict(metadata)
        blob.custom_time = expires_at
        with self._calling("write", name):
            # Unconditional retry: a replayed upload writes the same bytes again.
            blob.upload_from_string(
                data, content_type="application/octet-stream", retry=self._retry, timeout=self.timeout
            )

    def _get_object(self, name: str) -> StoredObject | None:
        """One media download; its ``x-goog-meta-*`` headers are the metadata, its ``X-Goog-Hash`` is checked."""
        connection = self._connected()
        url = f"{connection.endpoint}/download/storage/v1/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"

        def download() -> requests.Response | None:
            response = connection.session.get(url, params={"alt": "media"}, timeout=self.timeout)
            if response.status_code == 404:
                return None
            if response.status_code >= 300:
                raise api_exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
            return response

        with self._calling("read", name):
            response = self._retry(download)()
        if response is None:
            return None
        if not _digest_matches(response):
            raise StorageError(
                f"GCS could not read gs://{self.bucket}/{name}: the bytes received do not match the object's "
                f"MD5 (X-Goog-Hash: {response.headers.get('X-Goog-Hash')}), so nothing is returned. Read it "
                "again; if this persists, the stored object is damaged and deleting the key removes it"
            )
        metadata = {
            header[len(_META_HEADER) :].lower(): value
            for header, value in response.headers.items()
            if header.lower().startswith(_META_HEADER)
        }
        return StoredObject(response.content, metadata)

    def _delete_object(self, name: str) -> None:
        with self._calling("delete", name), suppress(api_exceptions.NotFound):
            self._bucket.blob(name).delete(retry=self._retry, timeout=self.timeout)

    def _head_object(self, name: str) -> Mapping[str, str] | None:
        with self._calling("read", name):
            blob = self._bucket.get_blob(name, retry=self._retry, timeout=self.timeout)
        return None if blob is None else dict(blob.metadata or {})

    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        with self._calling("list", prefix):
            listing = self.client.list_blobs(
                self._bucket,
                prefix=prefix,
                page_size=_LIST_PAGE_SIZE,
                fields="items(name,metadata),nextPageToken",
                retry=self._retry,
                timeout=self.timeout,
            )
            for page in listing.pages:
                yield [ListedObject(blob.name, dict(blob.metadata or {})) for blob in page]

    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        """Delete ``names`` (at most 100) in one batch request; calls refused with 429/5xx are retried."""
        if len(names) > self.delete_batch_size:
            raise ValueError(f"a GCS batch holds at most {self.delete_batch_size} calls, got {len(names)}")
        failures: dict[str, str] = {}
        pending = list(names)

        def attempt() -> None:
            nonlocal pending
            outcomes = self._send_delete_batch(pending)
            retry_later = []
            for name, (status, reason) in zip(pending, outcomes, strict=True):
                if status in _RETRYABLE_STATUS:
                    retry_later.append(name)
                elif status >= 300 and status != 404:
                    failures[name] = f"HTTP {status} {reason}".strip()
            pending = retry_later
            if pending:
                raise api_exceptions.ServiceUnavailable(  # type: ignore[no-untyped-call]
                    f"GCS refused {len(pending)} calls of a batch; retrying them"
                )

        with self._calling("batch-delete", f"{len(names)} objects"):
            try:
                self._retry(attempt)()
            except api_exceptions.RetryError as exc:
                reason = f"still refused when the retry deadline passed: {exc.cause}"
                failures.update(dict.fromkeys(pending, reason))
        return failures

    def _send_delete_batch(self, names: Sequence[str]) -> list[tuple[int, str]]:
        """POST one ``multipart/mixed`` batch of DELETE calls; return ``(status, reason)`` per name, in order."""
        boundary = f"statestore_{secrets.token_hex(12)}"
        bucket_path = f"/storage/v1/b/{quote(self.bucket, safe='')}/o/"
        # Every part carries a Content-ID (fake-gcs-server skips parts without one) and its own
        # empty header block, with CRLF line ends, as in Google's batch documentation.
        body = (
            "".join(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{index}>\r\n\r\n"
                f"DELETE {bucket_path}{quote(name, safe='')} HTTP/1.1\r\n\r\n\r\n"
                for index, name in enumerate(names)
            )
            + f"--{boundary}--\r\n"
        )
        connection = self._connected()
        response = connection.session.post(
            f"{connection.endpoint}/batch/storage/v1",
            data=body.encode("utf-8"),
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
            timeout=self.timeout,
        )
        if response.status_code >= 300:
            raise api_exceptions.from_http_response(response)  # type: ignore[no-untyped-call]
        return _batch_outcomes(response, len(names))

    # -- lifecycle -----------------------------------------------------------------------------------------

    def lifecycle_rule(self, days: int = 1) -> dict[str, Any]:
        """The bucket lifecycle rule that deletes this backend's objects ``days`` after their expiry.

        Objects carry their expiry as ``customTime``; objects that never expire have none and are
        never matched. With a prefix, the rule is limited to it (``matchesPrefix``).
        """
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError(f"days must be a non-negative integer, got {days!r}")
        condition: dict[str, Any] = {"daysSinceCustomTime": days}
        if self.prefix:
            condition["matchesPrefix"] = [self._root]
        return {"action": {"type": "Delete"}, "condition": condition}

    def install_lifecycle_rule(self, days: int = 1) -> bool:
        """Add :meth:`lifecycle_rule` to the bucket, replacing an earlier one for this prefix; keep other rules.

        Returns False when the bucket already had exactly this rule. The update is conditional on
        the bucket's metageneration, so a concurrent change to the bucket is not overwritten.
        """
        ours = self.lifecycle_rule(days)
        with self._calling("read the lifecycle of"):
            bucket = self.client.get_bucket(self.bucket, retry=self._retry, timeout=self.timeout)
        rules = [dict(rule) for rule in bucket.lifecycle_rules]
        others = [rule for rule in rules if not self._is_own_rule(rule)]
        if ours in rules and len(others) == len(rules) - 1:
            return False
        bucket.lifecycle_rules = [*others, ours]
        with self._calling("update the lifecycle of"):
            bucket.patch(if_metageneration_match=bucket.metageneration, retry=self._retry, timeout=self.timeout)
        return True

    def _is_own_rule(self, rule: Mapping[str, Any]) -> bool:
        condition = rule.get("condition") or {}
        return (
            rule.get("action") == {"type": "Delete"}
            and set(condition) <= {"daysSinceCustomTime", "matchesPrefix"}
            and "daysSinceCustomTime" in condition
            and condition.get("matchesPrefix") == self.lifecycle_rule()["condition"].get("matchesPrefix")
        )


def _digest_matches(response: requests.Response) -> bool:
    """Whether the body matches the MD5 GCS sent for it (True when it sent none, as for composite objects).

    Only bytes served as stored are checked: the hash describes the stored bytes, which a body decoded
    from, or transcoded to, another content encoding is not. statestore writes no content encoding.
    """
    digest = _MD5.search(response.headers.get("X-Goog-Hash", ""))
    served_as_stored = (
        "Content-Encoding" not in response.headers
        and response.headers.get("X-Goog-Stored-Content-Encoding", "identity") == "identity"
    )
    if digest is None or not served_as_stored:
        return True
    return base64.b64decode(digest.group(1)) == hashlib.md5(response.content, usedforsecurity=False).digest()


def _batch_outcomes(response: requests.Response, expected: int) -> list[tuple[int, str]]:
    """``(status, reason)`` of each call in a batch response, ordered like the request's parts."""
    match = re.search(r'boundary="?([^";]+)"?', response.headers.get("Content-Type", ""))
    if match is None:
        raise StorageError(f"GCS batch response is not multipart: {response.headers.get('Content-Type')!r}")
    delimiter = b"--" + match.group(1).encode()
    parts = [part for part in response.content.split(delimiter)[1:] if not part.startswith(b"--")]
    outcomes: dict[int, tuple[int, str]] = {}
    for position, part in enumerate(parts):
        status = _STATUS_LINE.search(part)
        if status is None:
            raise StorageError(f"GCS batch response part {position} has no HTTP status line")
        content_id = _CONTENT_ID.search(part)
        index = int(content_id.group(1)) if content_id else position
        body = re.split(rb"\r?\n\r?\n", part[status.end() :], maxsplit=1)[-1].strip()
        reason = status.group(2).decode("latin-1").strip()
        if body:
            reason = f"{reason}: {body[:300].decode('utf-8', 'replace')}"
        outcomes[index] = (int(status.group(1)), reason)
    if sorted(outcomes) != list(range(expected)):
        raise StorageError(
            f"GCS batch response answers {len(outcomes)} calls of {expected}; nothing is assumed deleted"
        )
    return [outcomes[index] for index in range(expected)]
