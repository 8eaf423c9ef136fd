"""The ``state-store`` command line (argparse; plugins add subcommands through a pluggy hook).

Commands of the core: ``state-store backends [--json]`` (installed backends and whether they
import) and ``state-store config [--json]`` (effective settings and where each came from, secrets
masked). Every plugin module's ``statestore_cli(subparsers)`` hook is then called, so a plugin adds
its own commands::

    from statestore.core.cli import print_json, print_table
    from statestore.core.plugins import hookimpl

    @hookimpl
    def statestore_cli(subparsers):
        cmd = subparsers.add_parser("s3", help="S3 backend tools")
        cmd.add_argument("--json", action="store_true")
        cmd.set_defaults(func=run)          # run(args) -> int | None (None means 0)

    def run(args):
        rows = [{"bucket": "b", "objects": 3}]
        print_json(rows) if args.json else print_table(rows, ["bucket", "objects"])

Keep the hook module light (import heavy modules inside ``run``): every ``state-store`` call
builds the whole parser. A ``StateStoreError`` escaping a command becomes one line on stderr and
exit status 2 for configuration or backend-selection errors, 1 for the rest; no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from statestore.core.errors import (
    BackendImportError,
    BackendNotFoundError,
    ConfigurationError,
    DuplicateBackendError,
    StateStoreError,
)

__all__ = ["build_parser", "main", "print_json", "print_table"]

_USAGE_ERRORS = (ConfigurationError, BackendNotFoundError, BackendImportError, DuplicateBackendError)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, frozenset, set)):
        return ",".join(str(v) for v in value)
    return str(value).replace("\n", "\\n")


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, file: TextIO | None = None) -> None:
    """Print ``rows`` (mappings) as aligned columns under upper-case headers; None prints as ``-``."""
    out = file or sys.stdout
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip(), file=out)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


def print_json(obj: Any, *, file: TextIO | None = None) -> None:
    """Print ``obj`` as indented JSON (dataclasses, sets, tuples and datetimes converted)."""
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=_jsonable), file=file or sys.stdout)


def _warn(message: str) -> None:
    print(f"state-store: warning: {message}", file=sys.stderr)


def _cmd_backends(args: argparse.Namespace) -> int:
    from statestore.core.plugins import PluginWarning, available_backends

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        rows = available_backends()
    for warning in caught:
        _warn(str(warning.message))
    if args.json:
        print_json(rows)
        return 0
    table = [
        {
            "name": row.name,
            "roles": row.roles,
            "distribution": row.distribution,
            "version": row.version,
            "status": "ok" if row.importable else f"problem: {row.problem}",
            "description": row.description,
        }
        for row in rows
    ]
    print_table(table, ["name", "roles", "distribution", "version", "status", "description"])
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from statestore.core.config import load_config

    config = load_config()
    settings = [{"section": s.section, "key": s.key, "value": s.display_value, "source": s.source} for s in config]
    origin = "airflow configuration" if config.from_airflow else str(config.path)
    if args.json:
        print_json({"file": origin, "file_exists": config.file_exists, "settings": settings})
        return 0
    state = "" if config.from_airflow or config.file_exists else " (not found; using defaults and environment)"
    print(f"configuration: {origin}{state}")
    print_table(settings, ["section", "key", "value", "source"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser: the core's commands, then every plugin's (a failing plugin hook is warned about)."""
    from statestore.core.plugins import registry

    parser = argparse.ArgumentParser(prog="state-store", description="Task-state and asset-state stores.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    backends = subparsers.add_parser("backends", help="list installed backends and whether they import")
    backends.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backends.set_defaults(func=_cmd_backends)
    config = subparsers.add_parser("config", help="show effective settings and where each came from")
    config.add_argument("--json", action="store_true", help="print JSON instead of a table")
    config.set_defaults(func=_cmd_config)
    manager = registry().manager
    for impl in manager.hook.statestore_cli.get_hookimpls():
        try:
            impl.function(subparsers=subparsers)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
            _warn(f"plugin {impl.plugin_name} failed to add its commands: {type(exc).__name__}: {exc}")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statestore-core")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``state-store``; returns the exit status."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except StateStoreError as exc:
        print(f"state-store: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
