"""statestore's distributions as Airflow providers, in a real Airflow 3.3.2 (``nox -s airflow``).

Each distribution's ``apache_airflow_provider`` entry point returns metadata built from the settings
schema: ``airflow providers list`` shows it, ``airflow config list --defaults`` shows its sections
with their defaults, and its secrets are sensitive to Airflow (hidden, and readable from ``_CMD``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_airflow_compat import fresh_airflow_env

pytestmark = pytest.mark.airflow

BIN = Path(sys.executable).parent
DISTRIBUTIONS = ("statestore-core", "statestore-gcs", "statestore-redis", "statestore-s3")
PLUGIN_SECTIONS = {
    "statestore_local": "statestore.core.builtin_plugins:LOCAL_SETTINGS",
    "statestore_s3": "statestore.s3.plugin:SETTINGS",
    "statestore_redis": "statestore.redis.plugin:SETTINGS",
    "statestore_gcs": "statestore.gcs.plugin:SETTINGS",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh Airflow home and no statestore settings of any kind."""
    return fresh_airflow_env(tmp_path)


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def declared(target: str) -> dict[str, tuple[str | None, bool]]:
    """``name -> (default text, sensitive)`` of a settings tuple named ``module:attribute``."""
    import importlib

    module, _, attribute = target.partition(":")
    specs = getattr(importlib.import_module(module), attribute)
    return {spec.name: (spec.text_default, spec.secret or spec.url) for spec in specs}


def commented_defaults(text: str) -> dict[str, dict[str, str]]:
    """``section -> {key: value}`` from ``airflow config list --defaults`` (every option is ``# key = value``)."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header[1], {})
        option = re.fullmatch(r"# (\w+) = (.*)", line)
        if option:
            current[option[1]] = option[2]
    return sections


def test_provider_info_is_valid_for_airflow_and_imports_no_client(env: dict[str, str]) -> None:
    """Airflow's own validator accepts each entry point's dict; calling them imports no client library."""
    script = """
        import json, sys
        from importlib.metadata import entry_points
        from airflow.providers_manager import _create_provider_info_schema_validator

        validator = _create_provider_info_schema_validator()
        before = set(sys.modules)
        found = {}
        for ep in entry_points(group="apache_airflow_provider"):
            if ep.dist.metadata["Name"].startswith("statestore-"):
                info = ep.load()()
                validator.validate(info)
                found[ep.dist.metadata["Name"]] = [info["package-name"], info["versions"], sorted(info["config"])]
        heavy = sorted(m for m in set(sys.modules) - before
                       if m.split(".")[0] in {"boto3", "botocore", "redis", "sqlalchemy"} or m.startswith("google"))
        print(json.dumps({"found": found, "heavy": heavy}))
    """
    import textwrap

    out = json.loads(run(env, sys.executable, "-c", textwrap.dedent(script)).stdout.splitlines()[-1])
    from importlib.metadata import version

    assert out["found"] == {
        "statestore-core": ["statestore-core", [version("statestore-core")], ["state_store", "statestore_local"]],
        "statestore-gcs": ["statestore-gcs", [version("statestore-gcs")], ["statestore_gcs"]],
        "statestore-redis": ["statestore-redis", [version("statestore-redis")], ["statestore_redis"]],
        "statestore-s3": ["statestore-s3", [version("statestore-s3")], ["statestore_s3"]],
    }
    assert out["heavy"] == [], "the entry points must import no boto3, redis, SQLAlchemy or google library"


def test_airflow_providers_list_shows_every_distribution(env: dict[str, str]) -> None:
    from importlib.metadata import version

    listed = json.loads(run(env, str(BIN / "airflow"), "providers", "list", "--output", "json").stdout)
    ours = {row["package_name"]: row["version"] for row in listed if row["package_name"].startswith("statestore-")}
    assert ours == {dist: version(dist) for dist in DISTRIBUTIONS}


def test_airflow_config_list_defaults_shows_our_sections(env: dict[str, str]) -> None:
    airflow = str(BIN / "airflow")
    shown = commented_defaults(run(env, airflow, "config", "list", "--defaults", "--show-values").stdout)
    hidden = commented_defaults(
        run(env, airflow, "config", "list", "--defaults", "--show-values", "--hide-sensitive").stdout
    )
    for section, target in PLUGIN_SECTIONS.items():
        options = declared(target)
        assert list(shown[section]) == list(options), section
        for key, (default, sensitive) in options.items():
            assert shown[section][key] == (default or ""), (section, key)
            assert (hidden[section][key] == "< hidden >") is sensitive, (section, key)
    assert shown["state_store"]["sqlite_synchronous"] == "full"
    assert shown["state_store"]["sql_alchemy_conn"] == ""
    assert shown["state_store"]["backend"] == "airflow.state.metastore.MetastoreBackend", "Airflow's own stay Airflow's"
    assert hidden["statestore_redis"]["password"] == "< hidden >"
    assert hidden["statestore_s3"]["aws_secret_access_key"] == "< hidden >"
    assert hidden["statestore_s3"]["bucket"] == ""


def test_a_secret_can_come_from_a_command_and_defaults_say_default(env: dict[str, str]) -> None:
    """Airflow reads a sensitive option from ``_CMD``; ``state-store --airflow config`` agrees and warns of nothing."""
    env = {**env, "AIRFLOW__STATESTORE_REDIS__PASSWORD_CMD": "echo hunter2"}
    got = run(env, str(BIN / "airflow"), "config", "get-value", "statestore_redis", "password")
    assert got.stdout.strip() == "hunter2"
    result = run(env, str(BIN / "state-store"), "--airflow", "config", "--json")
    assert "warning" not in result.stderr, result.stderr
    rows = {(r["section"], r["key"]): r for r in json.loads(result.stdout)["settings"]}
    assert rows["statestore_redis", "password"]["value"] == "***"
    assert rows["statestore_redis", "password"]["source"] == "airflow configuration [statestore_redis] password"
    assert ("statestore_redis", "password_cmd") not in rows
    assert rows["statestore_redis", "url"] == {
        "section": "statestore_redis",
        "key": "url",
        "value": "redis://127.0.0.1:6379/0",
        "source": "default",
    }
    assert rows["state_store", "default_retention_days"]["source"] == "default"
    assert rows["workers", "state_backend"]["source"] == "default"
    assert "hunter2" not in result.stdout
