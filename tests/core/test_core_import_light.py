"""``import statestore.core`` and ``state-store backends`` import no heavy client library (fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("boto3", "botocore", "redis", "google", "sqlalchemy", "aiobotocore", "alembic")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})))
"""


def heavy_modules_after(body: str) -> list[str]:
    code = PROBE.format(body=body, heavy=set(HEAVY))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_import_statestore_core_is_light() -> None:
    assert heavy_modules_after("import statestore.core") == []


def test_importtime_report_shows_no_heavy_module() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import statestore.core"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "statestore" in imported, "the report lists what was imported"
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


def test_state_store_backends_is_light() -> None:
    body = (
        "from statestore.core.cli import main\nassert main(['backends']) == 0\nassert main(['backends', '--json']) == 0"
    )
    assert heavy_modules_after(body) == []


def test_listing_and_loading_light_backends_is_light() -> None:
    body = (
        "from statestore.core import available_backends, load_backend\n"
        "available_backends()\nload_backend('memory')\nload_backend('local')"
    )
    assert heavy_modules_after(body) == []


def test_airflow_provider_entry_points_are_light() -> None:
    """Airflow calls every ``get_provider_info`` at startup: none may import a client library or SQLAlchemy."""
    body = (
        "from importlib.metadata import entry_points\n"
        "called = [ep.load()() for ep in entry_points(group='apache_airflow_provider')"
        " if ep.dist.metadata['Name'].startswith('statestore-')]\n"
        "assert len(called) == 4, called\n"
    )
    assert heavy_modules_after(body) == []
