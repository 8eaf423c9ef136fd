"""``state-store`` commands for stored state: ``task``, ``asset``, ``clean``, ``reconcile``, ``db`` and ``demo``.

Values go in and come out as JSON. Tables are for people, ``--json`` for scripts (one line, see
:mod:`statestore.core.console`). Bad input (invalid JSON, a bad key, a missing id) is one line on
stderr and exit status 2; a missing key on ``get`` is exit status 1. Heavy modules (SQLAlchemy) are
imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from statestore.core.base import RECONCILE_GRACE
from statestore.core.console import print_json, print_table, progress

if TYPE_CHECKING:
    from statestore.core.reconcile import ReconcileResult
    from statestore.core.store import AssetStoreAccessor, StateStore, TaskStoreAccessor

__all__ = ["register"]

Command = Callable[[argparse.Namespace], int]


def _store() -> StateStore:
    from statestore.core.store import StateStore

    return StateStore.from_config()


def _task(args: argparse.Namespace) -> TaskStoreAccessor:
    return _store().task_store(args.dag_id, args.run_id, args.task_id, args.map_index)


def _asset(args: argparse.Namespace) -> AssetStoreAccessor:
    if not args.name and not args.uri:
        raise ValueError("name the asset with --name or --uri")
    return _store().asset_store(name=args.name, uri=args.uri)


def _parse_value(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"VALUE must be JSON (a string needs quotes: '\"text\"'); {text!r} is not: {exc.msg} at column {exc.colno}"
        ) from None
    if value is None:
        raise ValueError("VALUE null cannot be stored; to remove a key, run the 'delete' command with the same ids")
    return value


def _positive_days(text: str) -> float:
    from statestore.core.config import MAX_RETENTION_DAYS

    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not days > 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of days, got {text!r}; use --never-expire to keep a key, "
            "or the 'delete' command to remove it"
        )
    if days > MAX_RETENTION_DAYS:
        raise argparse.ArgumentTypeError(
            f"must be at most {MAX_RETENTION_DAYS} days (100 years), got {text!r}; use --never-expire for a key "
            "that should never expire"
        )
    return days


def _retention(args: argparse.Namespace) -> Any:
    from statestore.core.scopes import NEVER_EXPIRE

    if args.never_expire:
        return NEVER_EXPIRE
    return None if args.retention_days is None else timedelta(days=args.retention_days)


def _cmd_get(accessor: Callable[[argparse.Namespace], TaskStoreAccessor | AssetStoreAccessor]) -> Command:
    def run(args: argparse.Namespace) -> int:
        missing = object()
        value = accessor(args).get(args.key, missing)
        if value is missing:
            print(f"state-store: no value for key {args.key!r}", file=sys.stderr)
            return 1
        print(json.dumps(value, ensure_ascii=False, indent=None if args.json else 2))  # --json: one line
        return 0

    return run


def _cmd_list(accessor: Callable[[argparse.Namespace], TaskStoreAccessor | AssetStoreAccessor]) -> Command:
    def run(args: argparse.Namespace) -> int:
        store = accessor(args)
        keys = store.keys()  # an accessor, not a dict
        values = {key: store.get(key) for key in keys}
        if args.json:
            print_json(values)
        else:
            rows = [{"key": k, "value": json.dumps(v, ensure_ascii=False)} for k, v in values.items()]
            print_table(rows, ["key", "value"], full=args.full)
        return 0

    return run


def _cmd_task_set(args: argparse.Namespace) -> int:
    _task(args).set(args.key, _parse_value(args.value), retention=_retention(args))
    return 0


def _cmd_asset_set(args: argparse.Namespace) -> int:
    _asset(args).set(args.key, _parse_value(args.value))
    return 0


def _cmd_delete(accessor: Callable[[argparse.Namespace], TaskStoreAccessor | AssetStoreAccessor]) -> Command:
    def run(args: argparse.Namespace) -> int:
        accessor(args).delete(args.key)
        return 0

    return run


def _cmd_task_clear(args: argparse.Namespace) -> int:
    with progress("clearing the task's state"):
        _task(args).clear(all_map_indices=args.all_map_indices)
    return 0


def _cmd_asset_clear(args: argparse.Namespace) -> int:
    with progress("clearing the asset's state"):
        _asset(args).clear()
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from statestore.core.base import BaseStoreBackend
    from statestore.core.config import load_config
    from statestore.core.store import StateStore

    config = load_config()
    server = _airflow_server() if config.from_airflow else None
    airflows = server is not None and not isinstance(server, BaseStoreBackend)  # e.g. Airflow's own metastore
    if airflows and args.dry_run:  # Airflow's own stores have no public way to count: say where to ask
        from statestore.core.errors import StateStoreError

        raise StateStoreError(
            f"[state_store] backend is {_class_name(server)}, which cannot count what clean would remove; "
            "run clean without --dry-run to remove its expired entries (Airflow's own "
            "`airflow state-store clean --dry-run` counts the rows of Airflow's metastore)"
        )
    store = StateStore(backend=server, config=config)
    with progress("counting expired state", enabled=None if not args.json else False) as bar:
        if not args.dry_run and bar.active:
            bar.start(_countable(store), "cleaning")
        result = store.cleanup(dry_run=args.dry_run, progress=bar if bar.active else None)
    if args.json:
        removed = None if airflows else result.removed  # Airflow's own stores report no counts
        print_json({"dry_run": args.dry_run, "removed": removed, "by_kind": result.by_kind})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print_table([{"kind": k, verb: n} for k, n in result.by_kind.items()], ["kind", verb])
    if airflows:
        print(f"{_class_name(server)} removed its expired entries (it reports no counts)")
    else:
        print(f"{verb} {result.removed} entries in total")
    if args.dry_run and store.worker_backend is not None:
        print("(a dry run does not count the worker-side objects that the removed rows reference)")
    return 0


def _airflow_server() -> Any:
    """The server store Airflow's processes use: ``[state_store] backend`` resolved by Airflow itself.

    ``clean`` and ``reconcile`` both act on it, so with Airflow's default (its own metastore) they
    work on Airflow's ``task_state_store`` table, never on a statestore database Airflow does not use.
    """
    from airflow.state import get_state_backend

    return get_state_backend()


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _countable(store: StateStore) -> int | None:
    """How many entries cleanup will remove, when the server store can count them (else a spinner)."""
    from statestore.core.errors import StateStoreError

    try:
        return store.cleanup(dry_run=True).removed
    except StateStoreError:
        return None


def _cmd_reconcile(args: argparse.Namespace) -> int:
    if args.grace_minutes < 0:
        raise ValueError(f"--grace-minutes must be 0 or more, got {args.grace_minutes:g}")
    store = _store()
    with progress("listing worker-side values", enabled=None if not args.json else False) as bar:
        listed = [0]

        def advance(result: ReconcileResult) -> None:
            bar("values", result.listed - listed[0])
            listed[0] = result.listed

        result = store.reconcile(
            dry_run=args.dry_run, grace=timedelta(minutes=args.grace_minutes), progress=advance if bar.active else None
        )
    if args.json:
        print_json(result)
        return 1 if result.failed else 0
    verb = "would discard" if args.dry_run else "discarded"
    rows = [
        {"values": "listed", "count": result.listed},
        {"values": f"kept: younger than {args.grace_minutes:g} min", "count": result.young},
        {"values": "kept: referenced by a row", "count": result.live},
        {"values": "kept: not resolvable", "count": result.unresolved},
        {"values": f"{verb}: no row references them", "count": result.orphaned if args.dry_run else result.discarded},
    ]
    if result.failed:
        rows.append({"values": "failed to discard (the next run retries)", "count": result.failed})
    print_table(rows, ["values", "count"])
    return 1 if result.failed else 0


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    from statestore.core.config import load_config
    from statestore.core.metastore import MetastoreStoreBackend

    backend = MetastoreStoreBackend(args.url, config=load_config(), auto_migrate=False)
    before, after = backend.migrate()
    if before == after:
        print(f"metastore at {backend.location} is up to date (revision {after})")
    else:
        print(f"metastore at {backend.location}: migrated from revision {before or 'none'} to {after}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from statestore.core.demo import run_demo

    return run_demo(args.home)


def _add_task_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dag-id", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--task-id", required=True)
    parser.add_argument("--map-index", type=int, default=-1, help="map index (default -1: unmapped)")


def _add_asset_ids(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="asset name")
    parser.add_argument("--uri", help="asset URI")


def _add_commands(
    subparsers: argparse._SubParsersAction[Any],
    add_ids: Callable[[argparse.ArgumentParser], None],
    accessor: Callable[[argparse.Namespace], TaskStoreAccessor | AssetStoreAccessor],
    set_command: Command,
    clear_command: Command,
) -> dict[str, argparse.ArgumentParser]:
    """The five subcommands that ``task`` and ``asset`` share; returns them by name for extra options."""
    commands = {
        "get": ("print one value as JSON", _cmd_get(accessor)),
        "set": ("store a JSON value", set_command),
        "delete": ("remove one key", _cmd_delete(accessor)),
        "clear": ("remove every key", clear_command),
        "list": ("list keys and values", _cmd_list(accessor)),
    }
    parsers = {}
    for name, (help_text, command) in commands.items():
        parser = subparsers.add_parser(name, help=help_text)
        add_ids(parser)
        if name in ("get", "set", "delete"):
            parser.add_argument("key")
        if name == "set":
            parser.add_argument("value", help="the value as JSON, e.g. 42, '\"text\"' or '{\"a\": [1, 2]}'")
        if name in ("get", "list"):
            parser.add_argument("--json", action="store_true", help="one line of JSON for scripts")
        if name == "list":
            parser.add_argument("--full", action="store_true", help="do not cut long values")
        parser.set_defaults(func=command)
        parsers[name] = parser
    return parsers


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``task``, ``asset``, ``clean`` (alias ``cleanup-task-store``), ``reconcile``, ``db`` and ``demo``."""
    task = subparsers.add_parser("task", help="read and write a task instance's state")
    task_parsers = _add_commands(
        task.add_subparsers(dest="action", metavar="ACTION", required=True),
        _add_task_ids,
        _task,
        _cmd_task_set,
        _cmd_task_clear,
    )
    retention = task_parsers["set"].add_mutually_exclusive_group()
    retention.add_argument(
        "--retention-days", type=_positive_days, help="expire after this many days (default: configured)"
    )
    retention.add_argument("--never-expire", action="store_true", help="never expire this key")
    task_parsers["clear"].add_argument("--all-map-indices", action="store_true", help="every map index of the task")

    asset = subparsers.add_parser("asset", help="read and write an asset's state")
    _add_commands(
        asset.add_subparsers(dest="action", metavar="ACTION", required=True),
        _add_asset_ids,
        _asset,
        _cmd_asset_set,
        _cmd_asset_clear,
    )

    clean = subparsers.add_parser(
        "clean", aliases=["cleanup-task-store"], help="remove expired state and inactive assets' state"
    )
    clean.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    clean.add_argument("--json", action="store_true", help="print JSON instead of a table")
    clean.set_defaults(func=_cmd_clean)

    reconcile = subparsers.add_parser(
        "reconcile",
        help="discard worker-side values that no server row references any more",
        description=(
            "Lists the worker-side backend's values page by page (1 request per 1000), keeps those written "
            "within the grace period (their rows may not be committed yet) and those a server row references "
            "(looked up in batches), and discards the rest in batches. Run it periodically: overwritten keys, "
            "rows deleted by `airflow db clean` or by clearing tasks, and interrupted cleanups leave such values."
        ),
    )
    reconcile.add_argument("--dry-run", action="store_true", help="only count what would be discarded")
    reconcile.add_argument(
        "--grace-minutes",
        type=float,
        default=RECONCILE_GRACE / timedelta(minutes=1),
        help="keep values younger than this (default %(default)g); a set writes its value before its row",
    )
    reconcile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    reconcile.set_defaults(func=_cmd_reconcile)

    db = subparsers.add_parser("db", help="metastore database tools")
    db_actions = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = db_actions.add_parser("migrate", help="create or upgrade the metastore schema")
    migrate.add_argument("--url", help="SQLAlchemy URL (default: [state_store] sql_alchemy_conn)")
    migrate.set_defaults(func=_cmd_db_migrate)

    demo = subparsers.add_parser("demo", help="a short narrated run of the three use cases on embedded defaults")
    demo.add_argument("--home", help="directory for the demo's database and objects (default: a temporary one)")
    demo.set_defaults(func=_cmd_demo)
