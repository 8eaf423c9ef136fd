"""``S3StoreBackend``: S3's storage primitives and settings under the shared object-store layer.

Every rule (naming, references, expiry metadata, threshold, compression, batched clear) lives in
``statestore.core.objectstore``; this module only talks to S3: one ``PutObject``, ``GetObject`` or
``DeleteObject`` per operation, ``ListObjectsV2`` pages of 1000, ``DeleteObjects`` batches of at most
1000 keys, and the bucket lifecycle rules behind ``state-store s3 lifecycle``.

Expiry for lifecycle rules: an object written with an expiry also carries the object tag
``statestore-retention=<N>d``, ``N`` the smallest of :data:`RETENTION_CLASSES` covering the time
to its expiry (written in the same ``PutObject``). The lifecycle rules match that tag and expire
an object ``N + 1`` days after it was written, so never before its own expiry (which, for a
worker-side value, is already a day after its row's). Objects without an expiry (never-expiring
values, Airflow's hooks) carry no tag and no rule ever matches them.

Async twins run the boto3 call in a worker thread (the layer's default): boto3 clients are
thread-safe, and aiobotocore pins narrow botocore ranges that would constrain users' boto3.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar

import boto3
import botocore.config
from botocore.exceptions import BotoCoreError, ClientError

from statestore.core.base import utcnow
from statestore.core.config import Config, mask_secret
from statestore.core.errors import ConfigurationError, StorageError
from statestore.core.objectstore import META_ENCODING, ListedObject, ObjectStoreBackend, StoredObject
from statestore.s3.plugin import SECTION, SETTINGS, SSE_MODES

__all__ = ["LIFECYCLE_RULE_PREFIX", "RETENTION_CLASSES", "RETENTION_TAG", "S3StoreBackend", "retention_class"]

LIFECYCLE_RULE_PREFIX = "statestore-retention"
_UNSAFE_RULE_PREFIX = "statestore-expire-task-objects"  # an earlier version's rule: it expired never-expiring values
RETENTION_TAG = "statestore-retention"
RETENTION_CLASSES = (1, 2, 3, 7, 8, 14, 15, 30, 31, 60, 61, 90, 91, 180, 181, 365, 366, 730, 731)
"""Days of the retention tag: common retentions and each plus the one-day margin of worker-side values."""
_MISSING = ("NoSuchKey", "404", "NotFound")
_SESSION_LOCK = threading.Lock()


def _new_session_lock_in_child() -> None:
    """A forked child has none of the parent's threads: a lock one of them held would never be released."""
    global _SESSION_LOCK
    _SESSION_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_new_session_lock_in_child)


@functools.lru_cache(maxsize=8)
def _session(profile: str | None, key_id: str | None, secret: str | None, token: str | None) -> boto3.session.Session:
    """One boto3 session per credential source, shared by backends (clients are made under the lock)."""
    return boto3.session.Session(
        profile_name=profile, aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token
    )


def retention_class(expires_at: datetime, now: datetime) -> int | None:
    """The smallest of :data:`RETENTION_CLASSES` (days) covering ``now`` .. ``expires_at``; None beyond the largest."""
    days = max(1, math.ceil((expires_at - now) / timedelta(days=1)))
    return next((c for c in RETENTION_CLASSES if c >= days), None)


class S3StoreBackend(ObjectStoreBackend):
    """Task/asset state as one S3 object per key, in ``[statestore_s3] bucket`` under ``prefix``.

    Keyword arguments override the ``[statestore_s3]`` settings; credentials come from boto3's
    standard chain (environment, shared config/profile, container or instance role) unless
    ``aws_access_key_id``/``aws_secret_access_key`` are set there explicitly.
    """

    name = "s3"
    reference_scheme = "s3"
    config_section = SECTION
    settings = SETTINGS
    delete_batch_size = 1000
    max_name_bytes: ClassVar[int | None] = 1024

    def __init__(
        self,
        bucket: str | None = None,
        prefix: str | None = None,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        addressing_style: str | None = None,
        max_attempts: int | None = None,
        max_pool_connections: int | None = None,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        profile_name: str | None = None,
        threshold: int | None = None,
        compression: str | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__(
            bucket=bucket,
            prefix=prefix,
            threshold=threshold,
            compression=compression,
            endpoint_url=endpoint_url,
            region_name=region_name,
            addressing_style=addressing_style,
            max_attempts=max_attempts,
            max_pool_connections=max_pool_connections,
            sse=sse,
            sse_kms_key_id=sse_kms_key_id,
            profile_name=profile_name,
            config=config,
        )
        settings = self._settings
        self.endpoint_url: str | None = settings["endpoint_url"]
        self.region_name: str | None = settings["region_name"]
        self._write_args: dict[str, str] = {}
        encryption = SSE_MODES[settings["sse"]]
        if encryption:
            self._write_args["ServerSideEncryption"] = encryption
        if settings["sse_kms_key_id"]:
            if encryption != "aws:kms":
                raise ConfigurationError(f"[{SECTION}] sse_kms_key_id needs sse = aws:kms")
            self._write_args["SSEKMSKeyId"] = settings["sse_kms_key_id"]
        self._credentials = tuple(
            settings[key] for key in ("profile_name", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        )
        self._client_config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": settings["max_attempts"]},
            s3={"addressing_style": settings["addressing_style"]},
            max_pool_connections=settings["max_pool_connections"],
        )
        self._client: Any = self._new_client()

    def _new_client(self) -> Any:
        with _SESSION_LOCK:  # boto3 sessions are not thread-safe; sharing one saves ~0.1 s per client
            return _session(*self._credentials).client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=self._client_config
            )

    @property
    def client(self) -> Any:
        """The boto3 S3 client; a forked child builds its own (its parent's holds the parent's connections)."""
        client = self._client
        if client is None:
            client = self._client = self._new_client()
        return client

    def _after_fork_in_child(self) -> None:
        """Drop the parent's client: its HTTP connection pool would share keep-alive sockets with the parent."""
        self._client = None

    def _check_bucket(self, bucket: str) -> str:
        bucket = super()._check_bucket(bucket)
        if not 3 <= len(bucket) <= 63:
            raise ConfigurationError(f"[{SECTION}] bucket {bucket!r} is not an S3 bucket name (3 to 63 characters)")
        return bucket

    @contextmanager
    def _errors(self, action: str, name: str) -> Iterator[None]:
        """Turn boto3's exceptions (after botocore's retries) into ``StorageError`` naming what failed."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "NoSuchBucket":
                endpoint = f" at {mask_secret('url', self.endpoint_url)}" if self.endpoint_url else ""
                raise StorageError(
                    f"S3 {action} s3://{self.bucket}/{name} failed: bucket {self.bucket!r} does not exist"
                    f"{endpoint}. Create it with "
                    f"`aws s3 mb s3://{self.bucket}` (add --endpoint-url for an S3-compatible store), or set "
                    f"[{SECTION}] bucket to an existing one"
                ) from exc
            message = f"{error.get('Code', '?')}: {mask_secret('url', str(error.get('Message', exc)))}"
            raise StorageError(f"S3 {action} s3://{self.bucket}/{name} failed: {message}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 {action} s3://{self.bucket}/{name} failed: {mask_secret('url', str(exc))}") from exc

    # -- primitives ---------------------------------------------------------------------------------

    def _put_object(self, name: str, data: bytes, metadata: Mapping[str, str], expires_at: datetime | None) -> None:
        content_type = "application/gzip" if metadata.get(META_ENCODING) else "application/json"
        retention = None if expires_at is None else retention_class(expires_at, utcnow())
        tagging = {} if retention is None else {"Tagging": f"{RETENTION_TAG}={retention}d"}
        with self._errors("PutObject", name):
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=data,
                Metadata=dict(metadata),
                ContentType=content_type,
                **tagging,
                **self._write_args,
            )

    def _get_object(self, name: str) -> StoredObject | None:
        with self._errors("GetObject", name):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    return None
                raise
            return StoredObject(response["Body"].read(), response.get("Metadata", {}))

    def _head_object(self, name: str) -> Mapping[str, str] | None:
        with self._errors("HeadObject", name):
            try:
                response = self.client.head_object(Bucket=self.bucket, Key=name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in _MISSING:
                    return None
                raise
            metadata: Mapping[str, str] = response.get("Metadata", {})
            return metadata

    def _delete_object(self, name: str) -> None:
        with self._errors("DeleteObject", name):
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def _list_objects(self, prefix: str) -> Iterator[list[ListedObject]]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.delete_batch_size}
        )
        with self._errors("ListObjectsV2", prefix):
            for page in pages:
                yield [ListedObject(item["Key"]) for item in page.get("Contents", ())]

    def _delete_objects(self, names: Sequence[str]) -> Mapping[str, str]:
        if len(names) > self.delete_batch_size:  # S3 refuses more; some S3-compatible servers do not
            raise ValueError(f"DeleteObjects takes at most {self.delete_batch_size} keys, got {len(names)}")
        with self._errors("DeleteObjects", names[0] if names else ""):
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": n} for n in names], "Quiet": True}
            )
        return {e["Key"]: f"{e.get('Code', '?')}: {e.get('Message', '')}" for e in response.get("Errors", ())}

    # -- bucket lifecycle ------------------------------------------------------------------------------

    def lifecycle_rules(self) -> list[dict[str, Any]]:
        """One rule per retention class: objects under the prefix tagged ``<N>d`` expire N + 1 days after their write.

        Untagged objects (no expiry: never-expiring values, values of Airflow's hooks) match no rule.
        """
        rules = []
        for days in RETENTION_CLASSES:
            tag = {"Key": RETENTION_TAG, "Value": f"{days}d"}
            selector = {"And": {"Prefix": self._root, "Tags": [tag]}} if self._root else {"Tag": tag}
            rules.append(
                {
                    "ID": f"{LIFECYCLE_RULE_PREFIX}-{days}d:{self._root}"[:255],
                    "Filter": selector,
                    "Status": "Enabled",
                    "Expiration": {"Days": days + 1},
                }
            )
        return rules

    def _is_own_rule(self, rule: dict[str, Any]) -> bool:
        """A rule this prefix's ``lifecycle`` installed, now or (the unsafe untagged one) before."""
        rule_id = str(rule.get("ID", ""))
        ours = rule_id.startswith(f"{LIFECYCLE_RULE_PREFIX}-") and rule_id.endswith(f":{self._root}")
        return ours or rule_id == f"{_UNSAFE_RULE_PREFIX}:{self._root}task/"[:255]

    def lifecycle_configuration(self) -> dict[str, Any]:
        """The bucket's lifecycle rules with this prefix's statestore rules added or replaced (1 request)."""
        with self._errors("GetBucketLifecycleConfiguration", ""):
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket).get("Rules", [])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                    raise
                rules = []
        return {"Rules": [r for r in rules if not self._is_own_rule(r)] + self.lifecycle_rules()}

    def install_lifecycle(self) -> dict[str, Any]:
        """Install :meth:`lifecycle_configuration` on the bucket (2 requests) and return it."""
        configuration = self.lifecycle_configuration()
        with self._errors("PutBucketLifecycleConfiguration", ""):
            self.client.put_bucket_lifecycle_configuration(Bucket=self.bucket, LifecycleConfiguration=configuration)
        return configuration
