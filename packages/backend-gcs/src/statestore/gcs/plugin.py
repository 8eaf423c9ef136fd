"""The ``statestore.plugins`` entry point of statestore-gcs: announces ``gcs`` and ``state-store gcs`` lightly.

Nothing here imports google-cloud-storage; the backend is imported only when selected or when a
``state-store gcs`` command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from statestore.core.plugins import BackendSpec, hookimpl
from statestore.core.settings import SettingSpec, object_store_settings, provider_info

SECTION = "statestore_gcs"


def _positive(seconds: float) -> bool:
    return seconds > 0


SETTINGS = (
    *object_store_settings(SettingSpec("bucket", str, None, "bucket name", required=True)),
    SettingSpec("project", str, None, "Google Cloud project for the client; default: the credentials'"),
    SettingSpec(
        "credentials_file",
        str,
        None,
        "service-account key file; default: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, ...)",
    ),
    SettingSpec(
        "endpoint", str, None, "API endpoint (Private Service Connect, emulators); default: Google's", url=True
    ),
    SettingSpec("kms_key_name", str, None, "customer-managed encryption key for new objects; default: the bucket's"),
    SettingSpec(
        "retry_deadline",
        float,
        120.0,
        "seconds during which 408/429/5xx responses and connection errors are retried",
        check=_positive,
        rule="must be a positive number of seconds",
    ),
    SettingSpec(
        "timeout",
        float,
        60.0,
        "seconds per HTTP request",
        check=_positive,
        rule="must be a positive number of seconds",
    ),
)
"""``[statestore_gcs]``: every setting of ``GCSStoreBackend``, declared once."""


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``gcs`` (server-side store and worker-side backend)."""
    return [
        BackendSpec(
            name="gcs",
            class_path="statestore.gcs.backend:GCSStoreBackend",
            description="one Google Cloud Storage object per key; expiry as customTime for bucket lifecycle rules",
            requires=("google.cloud.storage",),
            settings=SETTINGS,
        )
    ]


def get_provider_info() -> dict[str, Any]:
    """The ``apache_airflow_provider`` entry point: ``airflow providers list`` and ``[statestore_gcs]`` defaults."""
    return provider_info(
        "statestore-gcs",
        "statestore Google Cloud Storage",
        "Google Cloud Storage task-state and asset-state store (server-side and worker-side).",
        {SECTION: ("statestore's Google Cloud Storage backend (statestore.gcs.GCSStoreBackend).", SETTINGS)},
    )


@hookimpl
def statestore_cli(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``state-store gcs lifecycle [--apply] [--days N] [--bucket B] [--prefix P]``."""
    gcs = subparsers.add_parser("gcs", help="Google Cloud Storage backend tools")
    commands = gcs.add_subparsers(dest="gcs_command", required=True, metavar="COMMAND")
    lifecycle = commands.add_parser(
        "lifecycle",
        help="print (or install with --apply) the bucket lifecycle rule that deletes expired objects",
        description=(
            "Objects written with an expiry carry it as their customTime. This prints the bucket "
            "lifecycle configuration that deletes them DAYS days after it, for `gcloud storage buckets "
            "update gs://BUCKET --lifecycle-file=FILE` (--json prints that file on one line); --apply adds it to "
            "the bucket instead (needs storage.buckets.get and storage.buckets.update), keeping the bucket's "
            "other rules."
        ),
    )
    lifecycle.add_argument("--apply", action="store_true", help="install the rule on the bucket")
    lifecycle.add_argument(
        "--json", action="store_true", help="print the lifecycle configuration as one line of JSON (a --lifecycle-file)"
    )
    lifecycle.add_argument("--days", type=_days, default=1, help="days after expiry before deletion (default 1)")
    lifecycle.add_argument("--bucket", help="bucket (default: [statestore_gcs] bucket)")
    lifecycle.add_argument("--prefix", help="object prefix (default: [statestore_gcs] prefix)")
    lifecycle.set_defaults(func=_lifecycle)


def _days(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--days takes a whole number of days (0 or more), got {text!r}")
    return int(text)


def _lifecycle(args: argparse.Namespace) -> int:
    from statestore.core.console import print_json
    from statestore.gcs.backend import GCSStoreBackend

    backend = GCSStoreBackend(bucket=args.bucket, prefix=args.prefix)
    rule = backend.lifecycle_rule(args.days)
    changed = backend.install_lifecycle_rule(args.days) if args.apply else None
    if args.json:
        print_json({"lifecycle": {"rule": [rule]}})
        return 0
    prefixes = rule["condition"].get("matchesPrefix")
    where = f"objects under {', '.join(prefixes)}" if prefixes else "objects"
    meaning = f"deletes {where} {args.days} day(s) after their customTime (their expiry); objects without one stay"
    if changed is None:
        print(f"lifecycle rule for gs://{backend.bucket} (run again with --apply to install it): {meaning}")
    else:
        print(f"lifecycle rule {'installed' if changed else 'already installed'} on gs://{backend.bucket}: {meaning}")
    return 0
