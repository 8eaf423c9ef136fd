"""Settings: [statestore_s3] section, keyword overrides, SSE, validation messages, secrets kept out of repr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from statestore.core import Config, ConfigurationError, TaskScope, load_backend
from statestore.s3 import S3StoreBackend

TASK = TaskScope("dag", "run", "task")


def test_no_argument_constructor_reads_the_section(
    moto_endpoint: str, bucket: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__BUCKET", bucket)
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__PREFIX", f"/{prefix}/env/")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__ADDRESSING_STYLE", "path")
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    backend = load_backend("s3")()
    assert backend.location == f"s3://{bucket}/{prefix}/env/"
    backend.set(TASK, "k", "1")
    assert backend.get(TASK, "k") == "1"
    assert load_backend("statestore.s3.S3StoreBackend") is S3StoreBackend


def test_keyword_arguments_override_the_section(moto_endpoint: str, bucket: str) -> None:
    config = Config.from_dict({"statestore_s3": {"bucket": "from-config", "prefix": "cfg", "compression": "gzip"}})
    backend = S3StoreBackend(bucket, "kw", endpoint_url=moto_endpoint, compression="none", config=config)
    assert (backend.bucket, backend.prefix, backend.compression) == (bucket, "kw", "none")
    assert S3StoreBackend(endpoint_url=moto_endpoint, config=config).location == "s3://from-config/cfg/"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, r"S3StoreBackend needs a bucket: pass bucket=\.\.\. or set .*STATESTORE__STATESTORE_S3__BUCKET"),
        ({"bucket": "b"}, "is not an S3 bucket name"),
        ({"bucket": "bucket", "prefix": "a/../b"}, "invalid prefix 'a/../b'"),
        ({"bucket": "bucket", "prefix": "p" * 400}, "prefix 'p+' is too long"),
        ({"bucket": "bucket", "compression": "zstd"}, "compression must be one of none, gzip, got 'zstd'"),
        ({"bucket": "bucket", "threshold": "-1"}, "threshold must be >= 0"),
        ({"bucket": "bucket", "addressing_style": "sideways"}, "addressing_style must be one of"),
        ({"bucket": "bucket", "sse": "rot13"}, "sse must be one of none, AES256"),
        ({"bucket": "bucket", "sse_kms_key_id": "k"}, "sse_kms_key_id needs sse = aws:kms"),
        ({"bucket": "bucket", "max_attempts": "0"}, r"\[statestore_s3\] max_attempts must be >= 1, got 0"),
        ({"bucket": "bucket", "max_pool_connections": "x"}, "max_pool_connections must be an integer, got 'x'"),
    ],
)
def test_invalid_settings_say_what_to_fix(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        S3StoreBackend(config=Config.from_dict({"statestore_s3": settings}))


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"sse": "AES256"}, {"ServerSideEncryption": "AES256"}),
        ({"sse": "aws:kms", "sse_kms_key_id": "alias/statestore"}, {"ServerSideEncryption": "aws:kms"}),
    ],
)
def test_server_side_encryption_is_requested(
    settings: dict[str, str], expected: dict[str, str], make_backend: Callable[..., Any], s3_client: Any, bucket: str
) -> None:
    backend = make_backend(config=Config.from_dict({"statestore_s3": settings}))
    backend.set(TASK, "k", "1")
    head = s3_client.head_object(Bucket=bucket, Key=backend.object_name(TASK, "k"))
    assert {k: head.get(k) for k in expected} == expected
    if "sse_kms_key_id" in settings:
        assert settings["sse_kms_key_id"] in head["SSEKMSKeyId"]
    assert backend.get(TASK, "k") == "1"


def test_secrets_never_in_repr(moto_endpoint: str, bucket: str) -> None:
    config = Config.from_dict(
        {"statestore_s3": {"aws_access_key_id": "AKIDSECRETID", "aws_secret_access_key": "very-secret-key"}}
    )
    backend = S3StoreBackend(bucket, endpoint_url=moto_endpoint, config=config)
    assert repr(backend) == f"S3StoreBackend('s3://{bucket}/')"
    assert "very-secret-key" not in repr(vars(backend).get("_write_args"))
    backend.set(TASK, "k", "1")  # moto accepts any credentials: the explicit ones were used without error
