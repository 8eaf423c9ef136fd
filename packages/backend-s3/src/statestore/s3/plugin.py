"""The ``statestore.plugins`` entry point of statestore-s3: light, imports neither boto3 nor the backend."""

from __future__ import annotations

import argparse
from typing import Any

from statestore.core.plugins import BackendSpec, hookimpl


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``s3``."""
    return [
        BackendSpec(
            name="s3",
            class_path="statestore.s3.backend:S3StoreBackend",
            description="one object per key in an S3 or S3-compatible bucket (MinIO, Ceph, R2)",
            requires=("boto3",),
            settings=(
                "bucket",
                "prefix",
                "endpoint_url",
                "region_name",
                "addressing_style",
                "max_attempts",
                "max_pool_connections",
                "sse",
                "sse_kms_key_id",
                "profile_name",
                "threshold",
                "compression",
                "aws_access_key_id",
                "aws_secret_access_key",
                "aws_session_token",
            ),
        )
    ]


@hookimpl
def statestore_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``state-store s3 lifecycle``."""
    from statestore.s3.cli import add_commands

    add_commands(subparsers)
