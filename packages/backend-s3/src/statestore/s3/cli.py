"""``state-store s3 ...`` commands; boto3 is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from statestore.core.config import load_config


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``s3 lifecycle`` on the ``state-store`` command line."""
    s3 = subparsers.add_parser("s3", help="statestore-s3 maintenance commands")
    commands = s3.add_subparsers(dest="s3_command", required=True)
    lifecycle = commands.add_parser(
        "lifecycle",
        help="print (or install with --apply) a bucket lifecycle rule reclaiming abandoned task objects",
        description=(
            "Build an S3 lifecycle rule that expires objects under <prefix>/task/ DAYS days after their "
            "last write, merged with the bucket's other lifecycle rules. Without --apply it is printed "
            "(reading the current rules: 1 request); with --apply it is installed (2 requests). "
            "Needs s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration."
        ),
    )
    lifecycle.add_argument("--days", type=int, help="days after the last write (default: default_retention_days + 1)")
    lifecycle.add_argument("--bucket", help="override [statestore_s3] bucket")
    lifecycle.add_argument("--prefix", help="override [statestore_s3] prefix")
    lifecycle.add_argument("--endpoint-url", help="override [statestore_s3] endpoint_url")
    lifecycle.add_argument("--apply", action="store_true", help="install the configuration on the bucket")
    lifecycle.set_defaults(func=run_lifecycle)


def run_lifecycle(args: argparse.Namespace) -> int:
    """Print or install the lifecycle configuration; return the exit status."""
    from statestore.s3.backend import S3StoreBackend

    config = load_config()
    retention = config.default_retention_days
    days = args.days if args.days is not None else (retention + 1 if retention else None)
    if days is None or days < 1:
        print(
            "state-store s3 lifecycle: [state_store] default_retention_days is 0 (task values never expire), "
            "so there is no safe default; pass --days N with N at least the longest retention you use",
            file=sys.stderr,
        )
        return 2
    if retention and days < retention:
        print(
            f"warning: --days {days} is shorter than default_retention_days ({retention}); the bucket would "
            "delete task values before they expire",
            file=sys.stderr,
        )
    backend = S3StoreBackend(bucket=args.bucket, prefix=args.prefix, endpoint_url=args.endpoint_url, config=config)
    if args.apply:
        configuration = backend.install_lifecycle(days)
        print(f"installed on s3://{backend.bucket}:")
    else:
        configuration = backend.lifecycle_configuration(days)
        print(f"would install on s3://{backend.bucket} (run again with --apply):")
    print(json.dumps(configuration, indent=2, default=str))
    return 0
