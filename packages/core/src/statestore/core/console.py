"""What the ``state-store`` command shows a person or a script: tables, JSON, progress and one-line errors.

One module for every command (the core's and plugins'), so their output looks the same:

* :func:`print_table` — a borderless ``rich`` table under upper-case headers; wide (CJK, emoji)
  characters keep columns aligned; a cell longer than :data:`MAX_CELL` terminal columns is cut with
  ``…`` unless ``full=True`` (the commands' ``--full``).
* :func:`print_json` — the one ``--json`` style: a single JSON document on one line of stdout
  (UTF-8, no indentation); datetimes as ISO 8601, sets sorted, dataclasses as objects.
* :func:`progress` — a bar (or a spinner while the total is unknown) on stderr that keeps moving
  during a long operation, shown only when stderr is a terminal.
* :func:`error_message` — any exception as one line with its cause and the remedy; the traceback
  only with ``--debug`` or ``STATESTORE_DEBUG=1`` (see :func:`report_error`).

Colour appears only on a terminal (``rich`` decides, and honours ``NO_COLOR``). ``rich`` and the
service clients are imported only when something is printed or an error is described.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import traceback
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DEBUG_ENV",
    "MAX_CELL",
    "Progress",
    "debug_enabled",
    "error_message",
    "print_json",
    "print_table",
    "progress",
    "report_error",
    "warn",
]

MAX_CELL = 60
"""Terminal columns a table cell may take before it is cut with ``…`` (``--full`` shows all)."""
DEBUG_ENV = "STATESTORE_DEBUG"
"""Set to 1 (or pass ``--debug``) to print the traceback after an error's one line."""
_PIPE_WIDTH = 100_000  # off a terminal, never wrap: one row per line for grep and cut


def _console(file: TextIO) -> Console:
    from rich.console import Console

    terminal = file.isatty()
    return Console(file=file, highlight=False, soft_wrap=False, width=None if terminal else _PIPE_WIDTH)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple, frozenset, set)):
        return ",".join(str(v) for v in value)
    return str(value).replace("\n", "\\n")


def print_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    full: bool = False,
    uncut: Collection[str] = (),
    file: TextIO | None = None,
) -> None:
    """Print ``rows`` (mappings) as aligned columns under upper-case headers; None prints as ``-``.

    Cells of more than :data:`MAX_CELL` columns are cut with ``…`` unless ``full`` or their column is
    in ``uncut`` (paths and sources that a reader needs whole).
    """
    from rich.table import Table
    from rich.text import Text

    out = file or sys.stdout
    console = _console(out)
    table = Table(box=None, pad_edge=False, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column.upper(), no_wrap=not full, overflow="fold" if full else "ellipsis")
    for row in rows:
        cells = [Text(_cell(row.get(column))) for column in columns]
        for cell, column in zip(cells, columns, strict=True):
            if not full and column not in uncut:
                cell.truncate(MAX_CELL, overflow="ellipsis")
        table.add_row(*cells)
    with console.capture() as captured:
        console.print(table)
    lines = captured.get().splitlines()
    out.write("".join(line.rstrip() + "\n" for line in lines))


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


def print_json(obj: Any, *, file: TextIO | None = None) -> None:
    """Print ``obj`` as one line of JSON (dataclasses, sets, tuples and datetimes converted)."""
    print(json.dumps(obj, ensure_ascii=False, default=_jsonable), file=file or sys.stdout)


def warn(message: str) -> None:
    """One warning line on stderr, in the same form as errors."""
    print(f"state-store: warning: {message}", file=sys.stderr)


class Progress:
    """Handle of a running progress display; call it as ``progress(kind, count)`` after each batch."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    @property
    def active(self) -> bool:
        """True when something is shown (stderr is a terminal)."""
        return self._bar is not None

    def start(self, total: int | None, description: str | None = None) -> None:
        """Set (or re-set) the total, turning the spinner into a bar; ``None`` keeps it indeterminate."""
        if self._bar is not None:
            fields = {} if description is None else {"description": description}
            self._bar.update(self._task, total=total, completed=0, **fields)

    def __call__(self, kind: str, count: int) -> None:
        """Advance by ``count`` items of ``kind`` (the cleanup progress callback's shape)."""
        if self._bar is not None:
            self._bar.update(self._task, advance=count, kind=kind)


@contextmanager
def progress(description: str, *, total: int | None = None, enabled: bool | None = None) -> Iterator[Progress]:
    """Show a moving bar on stderr for the block (a spinner until a total is known); no-op off a terminal.

    The display redraws itself several times a second, so elapsed time and the spinner move even
    while one long statement runs.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield Progress(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[kind]}"),
        TimeElapsedColumn(),
        console=_console(sys.stderr),
        transient=False,
    )
    with bar:
        yield Progress(bar, bar.add_task(description, total=total, kind=""))


# -- errors ---------------------------------------------------------------------------------------------


def debug_enabled(flag: bool = False) -> bool:
    """True with ``--debug`` or ``STATESTORE_DEBUG`` set to anything but empty/0/false."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


# (pattern on the error text, cause, remedy); {where} names what was being reached.
_KNOWN: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"connection refused|can't connect to mysql server|errno 111|failed to establish a new connection"),
        "connection refused",
        "start the server, or correct the host and port in {where}",
    ),
    (
        re.compile(
            r"password authentication failed|role \S+ does not exist|access denied for user|authentication "
            r"(failed|required)|invalid username-password|wrongpass|noauth|invalidaccesskeyid|"
            r"signaturedoesnotmatch|unable to locate credentials|^401 "
        ),
        "authentication failed",
        "correct the user name and password (or the credentials) in {where}",
    ),
    (
        re.compile(r"database \S+ does not exist|unknown database"),
        "unknown database",
        "create it (PostgreSQL: createdb NAME; MariaDB/MySQL: CREATE DATABASE NAME), or correct {where}",
    ),
    (
        re.compile(r"no such table|table \S+ doesn't exist|relation \S+ does not exist"),
        "missing tables",
        "create them: state-store db migrate (statestore's metastore) or airflow db migrate (Airflow's database), "
        "or correct {where}",
    ),
    (
        re.compile(r"unable to open database file|readonly database"),
        "cannot open the SQLite file",
        "create its directory or make it writable, or correct {where}",
    ),
    (
        re.compile(r"permission denied|accessdenied|access denied|^403 |forbidden|noperm"),
        "permission denied",
        "grant the identity in use access (the backend's README lists the permissions it needs), or correct {where}",
    ),
]


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)  # SQLAlchemy's DBAPIError keeps the driver's error here
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
            seen.add(id(orig))
        current = current.__cause__ or current.__context__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0].strip()}" if text else type(exc).__name__


def error_message(exc: BaseException, where: str = "the configuration") -> str:
    """One line for ``exc``: a ``StateStoreError``'s own message, else the cause found and its remedy.

    ``where`` names the setting or flag the user would fix (``[state_store] sql_alchemy_conn``, ``--url``).
    Passwords in URLs are masked.
    """
    from statestore.core.config import mask_secret
    from statestore.core.errors import StateStoreError

    for pattern, cause, remedy in _KNOWN:
        for error in _chain(exc):
            if isinstance(error, StateStoreError):
                continue  # our own messages are written for people already; look at what caused them
            if pattern.search(" ".join(str(error).split()).lower()):
                shown = exc if isinstance(exc, StateStoreError) else getattr(error, "orig", None) or error
                detail = mask_secret("", str(shown).strip().splitlines()[0])
                return f"{cause}: {detail}. Remedy: {remedy.format(where=where)}"
    if isinstance(exc, (StateStoreError, ValueError, TypeError, KeyError)):
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return " ".join(str(message).split())
    return f"{mask_secret('', _first_line(exc))} (run again with --debug for the traceback)"


def report_error(exc: BaseException, *, debug: bool = False, where: str = "the configuration") -> None:
    """Print ``exc`` as one line on stderr, and its traceback first when debugging is on."""
    if debug_enabled(debug):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    print(f"state-store: error: {error_message(exc, where)}", file=sys.stderr)
