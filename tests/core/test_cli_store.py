"""The ``state-store`` commands for stored state, run through the real CLI entry point."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from statestore.core.cli import main

TASK = ["--dag-id", "d", "--run-id", "r", "--task-id", "t"]


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("STATESTORE"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STATESTORE_HOME", str(tmp_path))
    monkeypatch.setenv("STATESTORE_CONFIG", str(tmp_path / "none.cfg"))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_task_set_get_list_delete_clear(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    assert run(capsys, "task", "set", *TASK, "job", '{"id": "j-1", "n": [1, 2]}') == (0, "", "")
    assert run(capsys, "task", "set", *TASK, "--map-index", "2", "job", '"mapped"')[0] == 0
    code, out, _ = run(capsys, "task", "get", *TASK, "job", "--json")
    assert (code, json.loads(out)) == (0, {"id": "j-1", "n": [1, 2]})
    code, out, _ = run(capsys, "task", "list", *TASK)
    assert code == 0
    assert out.splitlines() == ["KEY  VALUE", 'job  {"id": "j-1", "n": [1, 2]}']
    assert json.loads(run(capsys, "task", "list", *TASK, "--map-index", "2", "--json")[1]) == {"job": "mapped"}
    assert run(capsys, "task", "delete", *TASK, "job")[0] == 0
    assert run(capsys, "task", "get", *TASK, "job") == (1, "", "state-store: no value for key 'job'\n")
    assert run(capsys, "task", "clear", *TASK, "--all-map-indices")[0] == 0
    assert json.loads(run(capsys, "task", "list", *TASK, "--map-index", "2", "--json")[1]) == {}
    assert (home / "statestore.db").is_file()


def test_task_set_retention_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "task", "set", *TASK, "k", "1", "--never-expire")[0] == 0
    assert run(capsys, "task", "set", *TASK, "k2", "1", "--retention-days", "0.0000001")[0] == 0
    time.sleep(0.05)  # past k2's 8.6 ms retention
    assert json.loads(run(capsys, "task", "list", *TASK, "--json")[1]) == {"k": 1}
    code, out, _err = run(capsys, "clean", "--json")
    assert code == 0
    assert json.loads(out)["by_kind"]["expired_task"] == 1


def test_asset_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "asset", "set", "--name", "orders", "watermark", "42")[0] == 0
    assert run(capsys, "asset", "get", "--name", "orders", "watermark") == (0, "42\n", "")
    assert json.loads(run(capsys, "asset", "list", "--name", "orders", "--json")[1]) == {"watermark": 42}
    assert run(capsys, "asset", "delete", "--name", "orders", "watermark")[0] == 0
    assert run(capsys, "asset", "set", "--uri", "s3://b/o", "k", '"v"')[0] == 0
    assert run(capsys, "asset", "clear", "--uri", "s3://b/o")[0] == 0
    assert json.loads(run(capsys, "asset", "list", "--uri", "s3://b/o", "--json")[1]) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["task", "set", *TASK, "k", "not json"], "VALUE must be JSON"),
        (["task", "set", *TASK, "k", "null"], "VALUE null cannot be stored; to remove a key, run the 'delete' command"),
        (
            ["task", "set", *TASK, "k", "1", "--retention-days", "-1"],
            "argument --retention-days: must be a positive number of days",
        ),
        (
            ["task", "set", *TASK, "k", "1", "--retention-days", "36526"],
            "argument --retention-days: must be at most 36525 days (100 years), got '36526'; use --never-expire for",
        ),
        (["task", "set", *TASK, "k", "1", "--retention-days", "1e300"], "--retention-days: must be at most 36525 days"),
        (["task", "set", *TASK, "k", "1", "--retention-days", "inf"], "--retention-days: must be at most 36525 days"),
        (["task", "set", *TASK, "k", "NaN"], "NaN and Infinity"),
        (["task", "set", *TASK, "", "1"], "non-empty"),
        (["task", "set", *TASK, "k" * 513, "1"], "limited to 512 characters"),
        (["task", "get", "--dag-id", "", "--run-id", "r", "--task-id", "t", "k"], "dag_id must be a non-empty"),
        (["task", "list", *TASK, "--map-index", "-5"], "map_index must be -1"),
        (["asset", "get", "k"], "--name or --uri"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str, home: Path
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("state-store: error: ")
    assert message in err
    assert json.loads(run(capsys, "task", "list", *TASK, "--json")[1]) == {}


def test_reference_without_worker_backend_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATESTORE__WORKERS__STATE_BACKEND", "local")
    assert run(capsys, "task", "set", *TASK, "k", '"v"')[0] == 0
    monkeypatch.delenv("STATESTORE__WORKERS__STATE_BACKEND")
    code, _, err = run(capsys, "task", "get", *TASK, "k")
    assert code == 1
    assert "no worker-side backend is configured" in err


def test_clean_dry_run_and_alias(capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        run(capsys, "task", "set", *TASK, f"k{i}", "1", "--retention-days", "0.0000001")
    time.sleep(0.05)  # 0.0000001 days is 8.6 ms: let the last one expire too
    code, out, _ = run(capsys, "clean", "--dry-run")
    assert code == 0
    assert "expired_task    3" in out
    assert "would remove 3 entries in total" in out
    code, out, _ = run(capsys, "cleanup-task-store")
    assert "removed 3 entries in total" in out
    assert "removed 0 entries in total" in run(capsys, "clean")[1]


def test_clean_shows_a_progress_bar_on_a_terminal(home: Path) -> None:
    env = {**os.environ, "STATESTORE__STATE_STORE__STATE_CLEANUP_BATCH_SIZE": "2"}
    script = (
        "from statestore.core import StateStore, TaskScope\n"
        "from datetime import timedelta\n"
        "ts = StateStore.from_config().task_store('d', 'r', 't')\n"
        "for i in range(5): ts.set(f'k{i}', i, retention=timedelta(microseconds=1))\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    primary, secondary = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-c", "from statestore.core.cli import main; raise SystemExit(main(['clean']))"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
        timeout=60,
    )
    os.close(secondary)
    terminal = os.read(primary, 65536).decode()
    os.close(primary)
    assert proc.returncode == 0
    assert "counting expired state" in terminal  # a spinner while counting
    assert "cleaning" in terminal
    assert "5/5" in terminal
    assert "expired_task" in terminal
    assert "removed 5 entries in total" in proc.stdout.decode()


def test_db_migrate(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    url = f"sqlite:///{home}/other.db"
    code, out, _ = run(capsys, "db", "migrate", "--url", url)
    assert (code, out) == (0, f"metastore at {url}: migrated from revision none to 0002\n")
    assert run(capsys, "db", "migrate", "--url", url)[1] == f"metastore at {url} is up to date (revision 0002)\n"
    code, _, err = run(capsys, "db", "migrate", "--url", "oracle://x")
    assert code == 2
    assert "supports SQLite, PostgreSQL and MySQL" in err


def test_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "demo", "--home", str(tmp_path / "demo"))
    assert code == 0
    assert "jobs submitted: 1 (job-001)" in out
    assert "reattached, no new submission" in out
    assert "pages fetched over both attempts: [1, 2, 3, 4, 5]" in out
    assert "run 3: watermark 15 -> 18" in out
    assert "removed 1 expired row(s)" in out
    assert "external_objects=1" in out
    assert (tmp_path / "demo" / "statestore.db").is_file()


def test_clean_dry_run_on_an_object_store(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", "local")
    for i in range(3):
        run(capsys, "task", "set", *TASK, f"k{i}", "1", "--retention-days", "0.0000001")
    run(capsys, "task", "set", *TASK, "kept", "1")
    time.sleep(0.05)  # past the 8.6 ms retention
    code, out, _ = run(capsys, "clean", "--dry-run", "--json")
    assert (code, json.loads(out)) == (0, {"dry_run": True, "removed": 3, "by_kind": {"expired_task": 3}})
    assert json.loads(run(capsys, "clean", "--json")[1])["removed"] == 3
    assert json.loads(run(capsys, "task", "list", *TASK, "--json")[1]) == {"kept": 1}


def test_clean_dry_run_says_what_a_store_cannot_count(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", "memory")
    code, _, err = run(capsys, "clean", "--dry-run")
    assert code == 1
    assert err == (
        "state-store: error: MemoryStoreBackend cannot count what clean would remove (its cleanup has no dry run); "
        "run clean without --dry-run to remove expired entries\n"
    )
    assert run(capsys, "clean")[0] == 0


def test_demo_twice_in_one_home_starts_fresh(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    home = tmp_path / "demo"
    assert run(capsys, "demo", "--home", str(home))[0] == 0
    code, out, _ = run(capsys, "demo", "--home", str(home))
    assert code == 0
    assert "(the previous demo there was removed: starting fresh)" in out
    assert "jobs submitted: 1 (job-001)" in out
    assert "run 1: watermark 0 -> 7" in out
    assert "run 3: watermark 15 -> 18" in out


def test_demo_refuses_a_directory_it_did_not_make(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, out, err = run(capsys, "demo", "--home", str(tmp_path / "mine"))
    assert (code, out) == (2, "")
    assert "is not empty and was not made by state-store demo" in err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_sqlite_in_a_missing_directory_is_an_error_outside_the_home(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path
) -> None:
    missing = home / "no" / "such" / "dir"
    monkeypatch.setenv("STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN", f"sqlite:///{missing}/state.db")
    code, _, err = run(capsys, "task", "set", *TASK, "k", "1")
    assert code == 2
    assert err == (
        f"state-store: error: the directory of the SQLite database {missing}/state.db does not exist: create it "
        f"(mkdir -p {missing}) or correct the URL ([state_store] sql_alchemy_conn, or --url)\n"
    )
    assert not (home / "no").exists()
    monkeypatch.delenv("STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN")
    monkeypatch.setenv("STATESTORE_HOME", str(home / "new-home"))
    assert run(capsys, "task", "set", *TASK, "k", "1")[0] == 0  # the default home is created
    assert (home / "new-home" / "statestore.db").is_file()
