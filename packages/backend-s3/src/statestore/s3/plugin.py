"""The ``statestore.plugins`` entry point of statestore-s3: light, imports neither boto3 nor the backend."""

from __future__ import annotations

import argparse
from typing import Any

from statestore.core.plugins import BackendSpec, hookimpl
from statestore.core.settings import SettingSpec, object_store_settings, provider_info

SECTION = "statestore_s3"
SSE_MODES = {"none": None, "aes256": "AES256", "sse-s3": "AES256", "aws:kms": "aws:kms", "sse-kms": "aws:kms"}
"""``sse`` values (any case) and the ``ServerSideEncryption`` each requests."""
SETTINGS = (
    *object_store_settings(SettingSpec("bucket", str, None, "the bucket", required=True)),
    SettingSpec("endpoint_url", str, None, "an S3-compatible endpoint (MinIO, Ceph, R2); default: AWS"),
    SettingSpec("region_name", str, None, "region; default: boto3's"),
    SettingSpec(
        "addressing_style",
        str,
        "auto",
        "path (most S3-compatible stores), virtual, or auto",
        choices=("auto", "path", "virtual"),
    ),
    SettingSpec(
        "max_attempts",
        int,
        5,
        "attempts per request, the first included (botocore standard retry mode: 5xx, throttling, timeouts)",
        minimum=1,
    ),
    SettingSpec("max_pool_connections", int, 32, "HTTP connections kept by the client", minimum=1),
    SettingSpec(
        "sse",
        str,
        "none",
        "server-side encryption: none, AES256 (SSE-S3) or aws:kms (SSE-KMS)",
        choices=tuple(SSE_MODES),
        rule="must be one of none, AES256 (SSE-S3) or aws:kms (SSE-KMS)",
    ),
    SettingSpec("sse_kms_key_id", str, None, "KMS key id, ARN or alias for sse = aws:kms; default: the bucket's"),
    SettingSpec("profile_name", str, None, "a named AWS profile"),
    SettingSpec("aws_access_key_id", str, None, "only if you must; prefer boto3's standard chain", secret=True),
    SettingSpec("aws_secret_access_key", str, None, "only if you must; prefer boto3's standard chain", secret=True),
    SettingSpec("aws_session_token", str, None, "only with the two above, for temporary credentials", secret=True),
)
"""``[statestore_s3]``: every setting of ``S3StoreBackend``, declared once."""


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``s3``."""
    return [
        BackendSpec(
            name="s3",
            class_path="statestore.s3.backend:S3StoreBackend",
            description="one object per key in an S3 or S3-compatible bucket (MinIO, Ceph, R2)",
            requires=("boto3",),
            settings=SETTINGS,
        )
    ]


def get_provider_info() -> dict[str, Any]:
    """The ``apache_airflow_provider`` entry point: ``airflow providers list`` and ``[statestore_s3]`` defaults."""
    return provider_info(
        "statestore-s3",
        "statestore S3",
        "Task-state and asset-state store on Amazon S3 and S3-compatible stores (MinIO, Ceph, R2).",
        {SECTION: ("statestore's S3 backend (statestore.s3.S3StoreBackend).", SETTINGS)},
    )


@hookimpl
def statestore_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``state-store s3 lifecycle``."""
    from statestore.s3.cli import add_commands

    add_commands(subparsers)
