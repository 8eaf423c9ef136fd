"""The bucket lifecycle rule (``daysSinceCustomTime``) and ``state-store gcs lifecycle``, on gcp-storage-emulator."""

from __future__ import annotations

import json
import secrets

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from statestore.core import Config
from statestore.core.cli import main
from statestore.gcs import GCSStoreBackend
from statestore.gcs.testing import Emulator, create_bucket

FOREIGN_RULE = {"action": {"type": "SetStorageClass", "storageClass": "NEARLINE"}, "condition": {"age": 30}}


@pytest.fixture
def bucket(lifecycle_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> storage.Bucket:
    """A fresh bucket holding one unrelated lifecycle rule; the environment points the CLI at it."""
    name = f"lifecycle-{secrets.token_hex(4)}"
    create_bucket(lifecycle_emulator.url, name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", lifecycle_emulator.url)
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__BUCKET", name)
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__PREFIX", "airflow/state")
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    handle = client.get_bucket(name)
    handle.lifecycle_rules = [FOREIGN_RULE]
    handle.patch()
    return handle


def _rules(bucket: storage.Bucket) -> list[dict[str, object]]:
    bucket.reload()
    return [dict(rule) for rule in bucket.lifecycle_rules]


def test_rule_matches_custom_time_and_prefix() -> None:
    config = Config.from_dict({})
    assert GCSStoreBackend("bkt", "p/q", config=config).lifecycle_rule(3) == {
        "action": {"type": "Delete"},
        "condition": {"daysSinceCustomTime": 3, "matchesPrefix": ["p/q/"]},
    }
    assert GCSStoreBackend("bkt", "", config=config).lifecycle_rule() == {
        "action": {"type": "Delete"},
        "condition": {"daysSinceCustomTime": 1},
    }
    with pytest.raises(ValueError, match="days must be a non-negative integer, got -1"):
        GCSStoreBackend("bkt", config=config).lifecycle_rule(-1)


def test_install_keeps_other_rules_and_replaces_its_own(bucket: storage.Bucket) -> None:
    backend = GCSStoreBackend()
    assert backend.install_lifecycle_rule(2) is True
    assert _rules(bucket) == [FOREIGN_RULE, backend.lifecycle_rule(2)]
    assert backend.install_lifecycle_rule(2) is False
    assert backend.install_lifecycle_rule(5) is True
    assert _rules(bucket) == [FOREIGN_RULE, backend.lifecycle_rule(5)]
    other_prefix = GCSStoreBackend(prefix="elsewhere")
    assert other_prefix.install_lifecycle_rule(1) is True
    assert _rules(bucket) == [FOREIGN_RULE, backend.lifecycle_rule(5), other_prefix.lifecycle_rule(1)]


def test_cli_prints_the_rule_without_touching_the_bucket(
    bucket: storage.Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gcs", "lifecycle", "--days", "4"]) == 0
    assert capsys.readouterr().out == (
        f"lifecycle rule for gs://{bucket.name} (run again with --apply to install it): deletes objects under "
        "airflow/state/ 4 day(s) after their customTime (their expiry); objects without one stay\n"
    )
    assert main(["gcs", "lifecycle", "--days", "4", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "--json is one line"
    printed = json.loads(out)
    assert printed == {
        "lifecycle": {
            "rule": [
                {
                    "action": {"type": "Delete"},
                    "condition": {"daysSinceCustomTime": 4, "matchesPrefix": ["airflow/state/"]},
                }
            ]
        }
    }
    assert _rules(bucket) == [FOREIGN_RULE]


def test_cli_apply_installs_the_rule(bucket: storage.Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gcs", "lifecycle", "--apply"]) == 0
    assert f"lifecycle rule installed on gs://{bucket.name}" in capsys.readouterr().out
    assert _rules(bucket)[-1] == {
        "action": {"type": "Delete"},
        "condition": {"daysSinceCustomTime": 1, "matchesPrefix": ["airflow/state/"]},
    }
    assert main(["gcs", "lifecycle", "--apply"]) == 0
    assert "already installed" in capsys.readouterr().out


def test_cli_errors_are_one_line(bucket: storage.Bucket, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gcs", "lifecycle", "--apply", "--bucket", "missing-bucket"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "bucket 'missing-bucket' does not exist" in err
    assert "gcloud storage buckets create gs://missing-bucket" in err
    assert main(["gcs", "lifecycle", "--days", "-2"]) == 2
    assert "--days takes a whole number of days (0 or more), got '-2'" in capsys.readouterr().err
