"""The ``state-store`` command line: backends, config, output helpers and error handling."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from statestore.core import plugins
from statestore.core.cli import main, print_json, print_table


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user configuration leaks in: an empty STATESTORE_HOME and no STATESTORE__ variables."""
    monkeypatch.setenv("STATESTORE_HOME", str(tmp_path))
    monkeypatch.delenv("STATESTORE_CONFIG", raising=False)
    for name in [n for n in os.environ if n.startswith("STATESTORE__")]:
        monkeypatch.delenv(name)
    plugins.registry.cache_clear()


def test_backends_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["NAME", "ROLES", "DISTRIBUTION", "VERSION", "STATUS", "DESCRIPTION"]
    memory = next(line for line in out if line.startswith("memory "))
    assert memory.split()[:5] == ["memory", "server,worker", "statestore-core", "0.1.0", "ok"]
    assert memory.endswith("process-local dictionary, for tests and examples")


def test_backends_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backends", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["memory"] == {
        "name": "memory",
        "roles": ["server", "worker"],
        "description": "process-local dictionary, for tests and examples",
        "distribution": "statestore-core",
        "version": "0.1.0",
        "class_path": "statestore.core.backends.memory:MemoryStoreBackend",
        "importable": True,
        "problem": None,
    }


def test_config_shows_sources_and_masks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "statestore.cfg"
    cfg.write_text("[state_store]\nbackend = memory\n[statestore_s3]\nbucket = b1\nsecret_access_key = hunter2\n")
    monkeypatch.setenv("STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN", "postgresql://u:hunter2@db/state")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    lines = out.splitlines()
    assert lines[0] == f"configuration: {cfg}"
    assert lines[1].split() == ["SECTION", "KEY", "VALUE", "SOURCE"]
    assert [f"state_store backend memory {cfg} [state_store] backend"] == [
        " ".join(line.split()) for line in lines if line.split()[:2] == ["state_store", "backend"]
    ]
    row = next(line for line in lines if " sql_alchemy_conn " in line).split()
    assert row[2:] == [
        "postgresql://u:***@db/state",
        "environment",
        "variable",
        "STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN",
    ]
    assert next(line for line in lines if "secret_access_key" in line).split()[:3] == [
        "statestore_s3",
        "secret_access_key",
        "***",
    ]
    assert any(line.split()[:3] == ["state_store", "default_retention_days", "30"] for line in lines)


def test_config_masks_passwords_with_url_characters_and_query_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "statestore.cfg"
    cfg.write_text(
        "[state_store]\nbackend = memory\nsql_alchemy_conn = postgresql://u:pw%40x%3Ay@db/s?password=QUERYPW\n"
        "[statestore_redis]\nurl = redis://:hunter@2SecretTail@host:6379/0\n"
        "[statestore_s3]\naws_session_token = SESSIONTOKEN\n"
    )
    monkeypatch.setenv("STATESTORE_CONFIG", str(cfg))
    for args in (["config"], ["config", "--json"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        for secret in ("pw%40x", "QUERYPW", "hunter", "2SecretTail", "SESSIONTOKEN"):
            assert secret not in out, f"{secret} shown by state-store {' '.join(args)}"
        assert "redis://:***@host:6379/0" in out


def test_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(tmp_path / "statestore.cfg")
    assert data["file_exists"] is False
    assert {"section": "state_store", "key": "backend", "value": "metastore", "source": "default"} in data["settings"]


def test_configuration_error_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS", "-1")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "state-store: error: [state_store] default_retention_days must be >= 0, got -1 "
        "(from environment variable STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS)\n"
    )


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "backends" in capsys.readouterr().out


def test_print_table_aligns_and_marks_missing() -> None:
    out = io.StringIO()
    print_table(
        [{"name": "a", "roles": ("server", "worker")}, {"name": "longer\nname", "roles": None}],
        ["name", "roles"],
        file=out,
    )
    assert out.getvalue().splitlines() == [
        "NAME          ROLES",
        "a             server,worker",
        "longer\\nname  -",
    ]


def test_print_json_converts_dataclasses_and_sets() -> None:
    out = io.StringIO()
    print_json({"specs": [plugins.BackendSpec("x", "m:C", roles=frozenset({"worker", "server"}))]}, file=out)
    assert json.loads(out.getvalue())["specs"][0]["roles"] == ["server", "worker"]


def test_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "state-store"
    result = subprocess.run([str(script), "backends"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "memory" in result.stdout
    assert "Traceback" not in result.stderr


def test_airflow_flag_without_airflow_is_one_line() -> None:
    script = (
        "import sys\n"
        "sys.modules['airflow'] = None  # as if Airflow were not installed\n"
        "from statestore.core.cli import main\n"
        "raise SystemExit(main(['--airflow', 'config']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("state-store: error: --airflow needs Apache Airflow in the Python environment")
    assert result.stderr.count("\n") == 1
