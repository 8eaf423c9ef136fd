"""The command line's output helpers: tables, JSON, progress and one-line errors with their remedy."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from statestore.core.cli import main
from statestore.core.console import MAX_CELL, error_message, print_json, print_table

POSTGRES_URL = os.environ.get("STATESTORE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("STATESTORE_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
TASK = ["--dag-id", "d", "--run-id", "r", "--task-id", "t"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in list(os.environ) if n.startswith("STATESTORE")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STATESTORE_HOME", str(tmp_path))


def table(rows: list[dict[str, object]], columns: list[str], **options: object) -> list[str]:
    out = io.StringIO()
    print_table(rows, columns, file=out, **options)  # type: ignore[arg-type]
    return out.getvalue().splitlines()


def test_wide_characters_stay_aligned() -> None:
    lines = table(
        [{"key": "注文", "value": 1}, {"key": "ascii", "value": 2}, {"key": "🎉x", "value": 3}], ["key", "value"]
    )
    assert lines[0].startswith("KEY")
    starts = {cell_len(line[: line.rindex(" ") + 1]) for line in lines}
    assert len(starts) == 1, lines  # the VALUE column starts at the same terminal column on every row


def test_long_values_are_cut_unless_full() -> None:
    value = "x" * 70_000
    cut = table([{"key": "k", "value": value}], ["key", "value"])
    assert cut[1].endswith("…")
    assert cell_len(cut[1]) == len("KEY  ") + MAX_CELL
    assert table([{"key": "k", "value": value}], ["key", "value"], full=True)[1] == f"k    {value}"
    assert table([{"key": "k", "value": value}], ["key", "value"], uncut=("value",))[1].endswith("x")


def test_table_lines_have_no_trailing_spaces_or_colour_off_a_terminal() -> None:
    lines = table([{"a": "1", "b": None}, {"a": "longer", "b": ("x", "y")}], ["a", "b"])
    assert lines == ["A       B", "1       -", "longer  x,y"]


def test_json_is_one_line() -> None:
    out = io.StringIO()
    print_json({"a": [1, 2], "s": {"b", "a"}, "t": "é"}, file=out)
    assert out.getvalue() == '{"a": [1, 2], "s": ["a", "b"], "t": "é"}\n'


def test_list_json_is_one_line_and_table_cuts_long_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", "set", *TASK, "big", json.dumps("v" * 60_000)]) == 0
    assert main(["task", "set", *TASK, "small", '{"a": 1}']) == 0
    capsys.readouterr()
    assert main(["task", "list", *TASK, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["small"] == {"a": 1}
    assert main(["task", "list", *TASK]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) < 100
    assert main(["task", "list", *TASK, "--full"]) == 0
    assert "v" * 60_000 in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        (f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test", "connection refused"),
        (POSTGRES_URL.rsplit("/", 1)[0] + "/statestore_no_such_db", "unknown database"),
        ("postgresql+psycopg://statestore_nobody:pw@127.0.0.1:5432/test", "authentication failed"),
        (f"mysql+pymysql://root@127.0.0.1:{_free_port()}/test", "connection refused"),
        (MYSQL_URL.rsplit("/", 1)[0] + "/statestore_no_such_db", "unknown database"),
        ("mysql+pymysql://statestore_nobody:secretpw@127.0.0.1:3306/test", "authentication failed"),
    ],
)
def test_sql_connection_errors_are_one_line_with_a_remedy(
    url: str, cause: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN", url)
    assert main(["task", "get", *TASK, "k"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"state-store: error: {cause}: ")
    assert "Remedy: " in err
    assert "state-store config" in err
    assert "secretpw" not in err
    assert main(["db", "migrate", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"state-store: error: {cause}: ")
    assert err.rstrip().endswith("in --url") or err.rstrip().endswith("correct --url")


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/test"
    assert main(["--debug", "db", "migrate", "--url", url]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("state-store: error: connection refused")
    monkeypatch.setenv("STATESTORE_DEBUG", "1")
    assert main(["db", "migrate", "--url", url]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("url", [POSTGRES_URL, MYSQL_URL, "sqlite://"], ids=["postgresql", "mariadb", "sqlite"])
def test_a_database_without_the_tables_names_the_migrations(url: str) -> None:
    """Each dialect's "missing table" error (as from a database that was never migrated) gets the remedy."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as info:
            conn.execute(sa.text("SELECT 1 FROM statestore_never_migrated"))
    finally:
        engine.dispose()
    message = error_message(info.value, "[state_store] sql_alchemy_conn")
    assert message.startswith("missing tables: "), message
    assert message.endswith(
        "Remedy: create them: state-store db migrate (statestore's metastore) or airflow db migrate (Airflow's "
        "database), or correct [state_store] sql_alchemy_conn"
    ), message


def test_unexpected_errors_name_the_debug_flag() -> None:
    assert error_message(RuntimeError("boom\nsecond line")) == (
        "RuntimeError: boom (run again with --debug for the traceback)"
    )
    assert error_message(PermissionError(13, "Permission denied", "/x")).startswith("permission denied: ")


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["task", "get", "--dag-id", "d"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("state-store: error: the following arguments are required")
    assert err.rstrip().endswith("(see: state-store task get --help)")


def test_colour_only_on_a_terminal(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "state-store"
    result = subprocess.run([str(script), "backends"], capture_output=True, text=True, timeout=60, check=True)
    assert "\x1b[" not in result.stdout
