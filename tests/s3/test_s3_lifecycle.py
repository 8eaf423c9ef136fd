"""``state-store s3 lifecycle``: prints or installs a rule expiring abandoned task objects, keeping other rules."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from statestore.core.cli import main


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, fresh_bucket: str) -> str:
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__BUCKET", fresh_bucket)
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__PREFIX", "airflow/state")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS", "30")
    return fresh_bucket


def _printed_json(out: str) -> Any:
    return json.loads(out[out.index("{") :])


def test_print_only_changes_nothing(cli_env: str, s3_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["s3", "lifecycle"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"would install on s3://{cli_env} (run again with --apply):")
    (rule,) = _printed_json(out)["Rules"]
    assert rule["Filter"] == {"Prefix": "airflow/state/task/"}
    assert rule["Expiration"] == {"Days": 31}
    with pytest.raises(s3_client.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3_client.get_bucket_lifecycle_configuration(Bucket=cli_env)


def test_apply_installs_and_keeps_other_rules(cli_env: str, s3_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=cli_env, LifecycleConfiguration={"Rules": [other]})
    assert main(["s3", "lifecycle", "--apply", "--days", "45"]) == 0
    assert main(["s3", "lifecycle", "--apply", "--days", "60"]) == 0  # replaces its own rule, no duplicate
    assert "installed on s3://" in capsys.readouterr().out
    rules = {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=cli_env)["Rules"]}
    assert set(rules) == {"logs", "statestore-expire-task-objects:airflow/state/task/"}
    assert rules["statestore-expire-task-objects:airflow/state/task/"]["Expiration"] == {"Days": 60}
    assert rules["logs"]["Expiration"] == {"Days": 3}


def test_never_expiring_retention_needs_explicit_days(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS", "0")
    assert main(["s3", "lifecycle"]) == 2
    assert "pass --days N" in capsys.readouterr().err


def test_days_shorter_than_retention_warns(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["s3", "lifecycle", "--days", "7"]) == 0
    assert "shorter than default_retention_days (30)" in capsys.readouterr().err


def test_rule_rejects_nonsense_days(make_backend: Callable[..., Any]) -> None:
    with pytest.raises(ValueError, match="lifecycle days must be a positive integer, got 0"):
        make_backend().lifecycle_rule(0)


def test_missing_bucket_is_one_line_with_how_to_create_it(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__BUCKET", "statestore-no-such-bucket")
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", "s3")
    assert main(["task", "set", "--dag-id", "d", "--run-id", "r", "--task-id", "t", "k", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "bucket 'statestore-no-such-bucket' does not exist" in err
    assert "aws s3 mb s3://statestore-no-such-bucket" in err
