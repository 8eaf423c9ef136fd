"""The ``state-store`` command line (argparse; plugins add subcommands through a pluggy hook).

Commands of the core: ``state-store backends [--json]`` (installed backends and whether they
import) and ``state-store config [--json] [--check]`` (effective settings and where each came from,
secrets masked; ``--check`` fails on unknown keys and invalid values). Global options:
``--airflow`` runs every command on Airflow's configuration (``airflow.cfg`` and ``AIRFLOW__…``),
``--debug`` prints tracebacks. Every plugin module's ``statestore_cli(subparsers)`` hook is then
called, so a plugin adds its own commands::

    from statestore.core.console import print_json, print_table
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
builds the whole parser. Any exception escaping a command becomes one line on stderr with its cause
and remedy (:func:`statestore.core.console.error_message`): exit status 2 for bad input,
configuration or backend-selection errors, 1 for the rest; the traceback only with ``--debug`` or
``STATESTORE_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from statestore.core.console import DEBUG_ENV, error_message, print_json, print_table, report_error, warn
from statestore.core.errors import (
    BackendImportError,
    BackendNotFoundError,
    ConfigurationError,
    DuplicateBackendError,
)

if TYPE_CHECKING:
    from statestore.core.config import Config

__all__ = ["build_parser", "main", "print_json", "print_table", "use_airflow_configuration"]

_USAGE_ERRORS = (
    ConfigurationError,
    BackendNotFoundError,
    BackendImportError,
    DuplicateBackendError,
    ValueError,
    TypeError,
    KeyError,
)


def _cmd_backends(args: argparse.Namespace) -> int:
    from statestore.core.plugins import PluginWarning, available_backends

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        rows = available_backends()
    for warning in caught:
        warn(str(warning.message))
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
    print_table(table, ["name", "roles", "distribution", "version", "status", "description"], full=args.full)
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from statestore.core.config import ConfigurationWarning, load_config

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigurationWarning)
        config = load_config()
    problems = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ConfigurationWarning)))
    for problem in problems:
        warn(problem)
    if args.check:
        return _check_config(config, problems)
    settings = [{"section": s.section, "key": s.key, "value": s.display_value, "source": s.source} for s in config]
    origin = "airflow configuration" if config.from_airflow else str(config.path)
    if args.json:
        print_json({"file": origin, "file_exists": config.file_exists, "settings": settings})
        return 0
    state = "" if config.from_airflow or config.file_exists else " (not found; using defaults and environment)"
    print(f"configuration: {origin}{state}")
    print_table(settings, ["section", "key", "value", "source"], full=args.full, uncut=("source",))
    return 0


def _check_config(config: Config, problems: list[str]) -> int:
    """Build the configured backends (which validates their settings, without connecting); 1 on any problem."""
    from statestore.core.foreign import build_backend

    for role, name in (("[state_store] backend", config.backend), ("[workers] state_backend", config.worker_backend)):
        if name is None:
            continue
        try:
            build_backend(name, config)
        except Exception as exc:  # noqa: BLE001 - every way a backend refuses its settings is a finding
            problems.append(f"{role} {name!r}: {error_message(exc)}")
            print(f"state-store: error: {problems[-1]}", file=sys.stderr)
    if problems:
        print(f"configuration check failed: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("configuration ok")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's ``--help`` (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit with status 2."""
        self.exit(2, f"state-store: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser: the core's commands, then every plugin's (a failing plugin hook is warned about)."""
    from statestore.core.plugins import registry

    parser = _Parser(prog="state-store", description="Task-state and asset-state stores.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--airflow",
        action="store_true",
        help="use Airflow's configuration (airflow.cfg, AIRFLOW__ variables) instead of statestore's, "
        "so commands act on what Airflow's processes use",
    )
    parser.add_argument("--debug", action="store_true", help=f"print the traceback of an error (or set {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    backends = subparsers.add_parser("backends", help="list installed backends and whether they import")
    backends.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backends.add_argument("--full", action="store_true", help="do not cut long values")
    backends.set_defaults(func=_cmd_backends)
    config = subparsers.add_parser("config", help="show effective settings and where each came from")
    config.add_argument("--json", action="store_true", help="print JSON instead of a table")
    config.add_argument("--full", action="store_true", help="do not cut long values")
    config.add_argument(
        "--check",
        action="store_true",
        help="exit 1 on unknown sections, keys or variables and on invalid values (builds the configured backends)",
    )
    config.set_defaults(func=_cmd_config)
    manager = registry().manager
    for impl in manager.hook.statestore_cli.get_hookimpls():
        try:
            impl.function(subparsers=subparsers)
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not take the CLI down
            warn(f"plugin {impl.plugin_name} failed to add its commands: {type(exc).__name__}: {exc}")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statestore-core")
    except PackageNotFoundError:
        return "unknown"


def use_airflow_configuration() -> None:
    """Load Airflow's configuration module, so :func:`load_config` reads ``airflow.cfg`` from here on.

    Airflow's informational logging (on stdout) is quietened unless its level is set explicitly,
    so that stdout stays the command's own (``--json`` included).
    """
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    try:
        import airflow.configuration  # noqa: F401 - importing it is what makes Airflow's settings effective
    except ImportError as exc:
        raise ConfigurationError(
            f"--airflow needs Apache Airflow in the Python environment of state-store ({exc}); run state-store "
            "from Airflow's environment, or pip install apache-airflow-core there"
        ) from exc


def _show_warning(message: Warning | str, *_args: object, **_kwargs: object) -> None:
    """Warnings raised while a command runs are ``state-store: warning:`` lines on stderr."""
    warn(str(message))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``state-store``; returns the exit status."""
    debug = False
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, --version and usage errors: argparse has printed them
            return exit_.code if isinstance(exit_.code, int) else 2
        debug = args.debug
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        if args.airflow:
            use_airflow_configuration()
        warnings.showwarning = _show_warning  # after Airflow, whose logging would send them to stdout
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 1
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line (and a traceback with --debug)
        report_error(exc, debug=debug, where=_where(argv))
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1


def _where(argv: Sequence[str] | None) -> str:
    """What a user would fix after a connection error: the --url flag if given, else the settings."""
    words = list(sys.argv[1:] if argv is None else argv)
    if any(w == "--url" or w.startswith("--url=") for w in words):
        return "--url"
    return "the configured settings (state-store config shows them and where each came from)"


if __name__ == "__main__":
    sys.exit(main())
