"""``state-store s3 lifecycle``: rules keyed on each object's retention tag, never matching a value without expiry."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from statestore.core import NEVER_EXPIRE, Config, MetastoreStoreBackend, StateStore
from statestore.core.cli import main
from statestore.s3.backend import RETENTION_CLASSES, RETENTION_TAG, retention_class


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, fresh_bucket: str) -> str:
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__BUCKET", fresh_bucket)
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__PREFIX", "airflow/state")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS", "30")
    return fresh_bucket


def test_print_only_changes_nothing(cli_env: str, s3_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["s3", "lifecycle", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "--json is one line"
    rules = json.loads(out)["Rules"]
    assert [r["ID"] for r in rules] == [f"statestore-retention-{d}d:airflow/state/" for d in RETENTION_CLASSES]
    with pytest.raises(s3_client.exceptions.ClientError, match="NoSuchLifecycleConfiguration"):
        s3_client.get_bucket_lifecycle_configuration(Bucket=cli_env)


def test_print_is_a_table_of_rules(cli_env: str, s3_client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    s3_client.put_bucket_lifecycle_configuration(Bucket=cli_env, LifecycleConfiguration={"Rules": [other]})
    assert main(["s3", "lifecycle"]) == 0
    header, columns, *rows = capsys.readouterr().out.splitlines()
    assert header == f"would install on s3://{cli_env} (run again with --apply to install it):"
    assert columns.split() == ["ID", "PREFIX", "TAG", "EXPIRE", "AFTER", "DAYS", "STATUS"]
    assert rows[0].split() == ["logs", "logs/", "-", "3", "Enabled"]
    first = ["statestore-retention-1d:airflow/state/", "airflow/state/", "statestore-retention=1d", "2", "Enabled"]
    assert rows[1].split() == first
    assert len(rows) == 1 + len(RETENTION_CLASSES)


def test_every_rule_needs_the_retention_tag_and_waits_a_day_past_it(make_backend: Callable[..., Any]) -> None:
    """No rule can match an untagged object, and a tagged one expires only after its class plus a day."""
    for backend, selector in ((make_backend(), "And"), (make_backend(prefix=""), "Tag")):
        for rule, days in zip(backend.lifecycle_rules(), RETENTION_CLASSES, strict=True):
            tag = {"Key": RETENTION_TAG, "Value": f"{days}d"}
            if selector == "And":
                assert rule["Filter"] == {"And": {"Prefix": backend._root, "Tags": [tag]}}
            else:
                assert rule["Filter"] == {"Tag": tag}
            assert rule["Expiration"] == {"Days": days + 1}


def test_apply_installs_replaces_the_old_untagged_rule_and_keeps_others(
    cli_env: str, s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 3}}
    unsafe = {
        "ID": "statestore-expire-task-objects:airflow/state/task/",
        "Filter": {"Prefix": "airflow/state/task/"},
        "Status": "Enabled",
        "Expiration": {"Days": 31},
    }
    s3_client.put_bucket_lifecycle_configuration(Bucket=cli_env, LifecycleConfiguration={"Rules": [other, unsafe]})
    assert main(["s3", "lifecycle", "--apply"]) == 0
    assert main(["s3", "lifecycle", "--apply"]) == 0  # replaces its own rules, no duplicates
    assert f"installed on s3://{cli_env}:" in capsys.readouterr().out
    rules = {r["ID"]: r for r in s3_client.get_bucket_lifecycle_configuration(Bucket=cli_env)["Rules"]}
    assert set(rules) == {"logs"} | {f"statestore-retention-{d}d:airflow/state/" for d in RETENTION_CLASSES}
    assert rules["logs"]["Expiration"] == {"Days": 3}


@pytest.mark.parametrize(
    ("retention", "tag"),
    [(timedelta(hours=1), "2d"), (timedelta(days=30), "31d"), (timedelta(days=90), "91d"), (NEVER_EXPIRE, None)],
)
def test_values_carry_the_retention_tag_of_their_expiry(
    make_backend: Callable[..., Any], s3_client: Any, bucket: str, tmp_path: Path, retention: Any, tag: str | None
) -> None:
    """Through StateStore, a value is tagged from its row's expiry plus the margin; NEVER_EXPIRE carries no tag."""
    config = Config.from_dict({})
    worker = make_backend(config=config)
    store = StateStore(MetastoreStoreBackend(f"sqlite:///{tmp_path}/t.db", config=config), worker, config)
    ts = store.task_store("d", "r", "t")
    ts.set("k", "v" * 100, retention=retention)
    name = worker._name_from_reference(json.loads(store.backend.get(ts.scope, "k"))["__airflow_state_ref__"])
    tags = s3_client.get_object_tagging(Bucket=bucket, Key=name)["TagSet"]
    assert tags == ([] if tag is None else [{"Key": RETENTION_TAG, "Value": tag}])
    if tag is not None:
        row_expiry = store.backend._get(ts.scope, "k", None).expires_at
        written = s3_client.head_object(Bucket=bucket, Key=name)["LastModified"]
        assert written + timedelta(days=int(tag[:-1]) + 1) > row_expiry + timedelta(days=1), (
            "a rule could expire it early"
        )


def test_retention_class_covers_the_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retention_class(now + timedelta(seconds=1), now) == 1
    assert retention_class(now + timedelta(days=4), now) == 7
    assert retention_class(now + timedelta(days=731), now) == 731
    assert retention_class(now + timedelta(days=732), now) is None  # beyond every class: no tag, no rule


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
