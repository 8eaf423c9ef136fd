"""``state-store s3 ...`` commands; boto3 is imported only when a command runs."""

from __future__ import annotations

import argparse
from typing import Any

from statestore.core.config import load_config
from statestore.core.console import print_json, print_table


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``s3 lifecycle`` on the ``state-store`` command line."""
    s3 = subparsers.add_parser("s3", help="statestore-s3 maintenance commands")
    commands = s3.add_subparsers(dest="s3_command", required=True)
    lifecycle = commands.add_parser(
        "lifecycle",
        help="print (or install with --apply) the bucket lifecycle rules that reclaim expired objects",
        description=(
            "Objects written with an expiry carry the tag statestore-retention=<N>d (N covers the time to their "
            "expiry); one rule per N expires them N + 1 days after their write, never before their own expiry. "
            "Objects that never expire (NEVER_EXPIRE, Airflow's hooks) carry no tag and are never touched; "
            "`state-store reconcile` reclaims those whose rows are gone. The rules replace this prefix's earlier "
            "statestore rules (including the older untagged one) and keep the bucket's others. Without --apply "
            "they are printed (1 request); with --apply installed (2 requests). --json prints the bucket's whole "
            "lifecycle configuration as one line of JSON, as `aws s3api put-bucket-lifecycle-configuration "
            "--lifecycle-configuration` takes it. Needs s3:GetLifecycleConfiguration and "
            "s3:PutLifecycleConfiguration."
        ),
    )
    lifecycle.add_argument("--bucket", help="override [statestore_s3] bucket")
    lifecycle.add_argument("--prefix", help="override [statestore_s3] prefix")
    lifecycle.add_argument("--endpoint-url", help="override [statestore_s3] endpoint_url")
    lifecycle.add_argument("--apply", action="store_true", help="install the configuration on the bucket")
    lifecycle.add_argument("--json", action="store_true", help="print the configuration as one line of JSON")
    lifecycle.add_argument("--full", action="store_true", help="do not cut long values")
    lifecycle.set_defaults(func=run_lifecycle)


def run_lifecycle(args: argparse.Namespace) -> int:
    """Print or install the lifecycle configuration; return the exit status."""
    from statestore.s3.backend import S3StoreBackend

    backend = S3StoreBackend(
        bucket=args.bucket, prefix=args.prefix, endpoint_url=args.endpoint_url, config=load_config()
    )
    configuration = backend.install_lifecycle() if args.apply else backend.lifecycle_configuration()
    if args.json:
        print_json(configuration)
        return 0
    if args.apply:
        print(f"installed on s3://{backend.bucket}:")
    else:
        print(f"would install on s3://{backend.bucket} (run again with --apply to install it):")
    rows = [_describe(rule) for rule in configuration["Rules"]]
    print_table(rows, ["id", "prefix", "tag", "expire after days", "status"], full=args.full)
    return 0


def _describe(rule: dict[str, Any]) -> dict[str, Any]:
    """One lifecycle rule as a table row: its id, the prefix and tags it selects, when it expires objects."""
    selector = rule.get("Filter") or {}
    selector = selector.get("And", selector)
    tags = [*selector.get("Tags", []), *([selector["Tag"]] if "Tag" in selector else [])]
    return {
        "id": rule.get("ID"),
        "prefix": selector.get("Prefix", rule.get("Prefix")) or None,
        "tag": [f"{tag['Key']}={tag['Value']}" for tag in tags] or None,
        "expire after days": (rule.get("Expiration") or {}).get("Days"),
        "status": rule.get("Status"),
    }
