"""README blocks for Airflow, read and run by a real Airflow 3.3.2 (``nox -s airflow``).

* Every ``ini`` block that could go into ``airflow.cfg`` (it names no backend by a short plugin name,
  which only statestore's own configuration understands) and every ``dotenv`` block of ``AIRFLOW__``
  variables is read by Airflow's own parser (``AirflowConfigParser``, validated): each value it sets
  means the same to Airflow, to statestore inside Airflow and to statestore's own loader, and no
  ``[statestore_*]`` key is unknown.
* ``sh`` blocks of ``state-store --airflow`` commands run on a fresh ``AIRFLOW_HOME``; the ``crontab``
  line runs as cron would (``/bin/sh``), with the deployment's paths mapped to the test's.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from statestore.core.config import Config

from ..readmes import Block, blocks, settings
from .test_airflow_compat import fresh_airflow_env

pytestmark = pytest.mark.airflow

BIN = Path(sys.executable).parent
_SHORT_NAMED = (("state_store", "backend"), ("workers", "state_backend"), ("workers", "state_store_backend"))


def _for_airflow(block: Block) -> bool:
    values = settings(block)
    if block.language == "dotenv":
        return block.text.startswith("AIRFLOW__")
    return not any("." not in values.get(s, {}).get(k, ".") for s, k in _SHORT_NAMED)


CONFIG_BLOCKS = [b for b in blocks("ini", "dotenv") if not b.skip and _for_airflow(b)]
AIRFLOW_COMMANDS = [b for b in blocks("sh") if "state-store --airflow" in b.text]

# Runs in a fresh interpreter (importing Airflow switches statestore to Airflow's configuration for good):
# for each block, Airflow's parser reads it (a file, or AIRFLOW__ variables), then Airflow's and
# statestore's view of every value it sets are printed.
_READ_IN_AIRFLOW = """
import json, os, sys
from airflow.configuration import AirflowConfigParser
from statestore.core.config import Config, unknown_settings

results = {}
for block in json.loads(sys.stdin.read()):
    conf = AirflowConfigParser()
    if block["file"]:
        conf.read(block["file"])
    os.environ.update(block["environ"])
    conf.validate()
    ours = Config(airflow_conf=conf, environ=dict(os.environ))
    results[block["id"]] = {
        "airflow": {s: {k: conf.get(s, k) for k in keys} for s, keys in block["values"].items()},
        "statestore": {s: {k: ours.get(s, k) for k in keys} for s, keys in block["values"].items()},
        "unknown": unknown_settings(ours),
    }
    for name in block["environ"]:
        del os.environ[name]
print(json.dumps(results))
"""


@pytest.fixture
def airflow_env(tmp_path: Path) -> dict[str, str]:
    """A fresh Airflow process's environment: private homes, no AIRFLOW__/STATESTORE__ settings but the server store."""
    # The README's example deployment: statestore's metastore as the server store. With Airflow's own
    # (the default), `state-store --airflow clean` cleans Airflow's database, which a fresh home lacks.
    return fresh_airflow_env(
        tmp_path,
        AIRFLOW__STATE_STORE__BACKEND="statestore.core.MetastoreStoreBackend",
        AIRFLOW__STATE_STORE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path / 'state.db'}",
    )


@pytest.fixture(scope="module")
def read_by_airflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Airflow (and statestore inside it) reads from each configuration block, by block id."""
    if importlib.util.find_spec("airflow.state") is None:
        pytest.fail("Airflow is not installed here; run `nox -s airflow`", pytrace=False)
    home = tmp_path_factory.mktemp("airflow-readmes")
    inputs = []
    for index, block in enumerate(CONFIG_BLOCKS):
        values = settings(block)
        path = home / f"block-{index}.cfg"
        if block.language == "ini":
            path.write_text(block.text, encoding="utf-8")
        environ = dict(line.split("=", 1) for line in block.text.splitlines()) if block.language == "dotenv" else {}
        inputs.append(
            {
                "id": block.id,
                "file": str(path) if block.language == "ini" else None,
                "environ": environ,
                "values": {section: sorted(keys) for section, keys in values.items()},
            }
        )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "AIRFLOW_HOME": str(home / "airflow")}
    result = subprocess.run(
        [sys.executable, "-c", _READ_IN_AIRFLOW],
        input=json.dumps(inputs),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    read: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return read


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in CONFIG_BLOCKS])
def test_airflow_reads_the_block_as_statestore_does(
    block: Block, read_by_airflow: dict[str, Any], tmp_path: Path
) -> None:
    values = settings(block)
    if block.language == "ini":
        path = tmp_path / "statestore.cfg"
        path.write_text(block.text, encoding="utf-8")
        ours = Config(path=path, environ={})
        expected = {s: {k: ours.get(s, k) for k in keys} for s, keys in values.items()}
    else:
        expected = values
    read = read_by_airflow[block.id]
    assert read["airflow"] == expected, f"{block.id}: Airflow reads other values than statestore's loader"
    assert read["statestore"] == expected, f"{block.id}: statestore inside Airflow reads other values"
    assert read["unknown"] == [], f"{block.id}: {read['unknown']}"


def _run(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in AIRFLOW_COMMANDS])
def test_airflow_commands_run(block: Block, airflow_env: dict[str, str]) -> None:
    for line in block.text.splitlines():
        if line.strip():
            result = _run(airflow_env, line)
            assert result.returncode == 0, f"{block.id}: {line}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in blocks("crontab")])
def test_crontab_line_runs_as_cron_would(block: Block, airflow_env: dict[str, str], tmp_path: Path) -> None:
    airflow_home = airflow_env["AIRFLOW_HOME"]
    for line in block.text.splitlines():
        command = line.split(None, 5)[5]
        mapped = (
            command.replace("/opt/airflow/venv/bin/", f"{BIN}/")
            .replace("/opt/airflow", airflow_home)
            .replace("/var/log/", f"{tmp_path}/")
        )
        assert mapped != command, f"{block.id}: the test maps /opt/airflow and /var/log/; update it with the README"
        env = {k: v for k, v in airflow_env.items() if k != "AIRFLOW_HOME"}  # the line sets it, as in a crontab
        result = _run(env, mapped)
        assert result.returncode == 0, f"{block.id}: {mapped}:\n{result.stdout}{result.stderr}"
        logs = [t for t in shlex.split(mapped) if t.startswith(f"{tmp_path}/")]
        logged = Path(logs[0]).read_text().splitlines()
        assert [json.loads(x)["dry_run"] for x in logged] == [False], f"{block.id}: the log holds {logged}"


def test_every_airflow_block_is_found() -> None:
    """Guard against a README reshuffle that would silently leave these tests with nothing to check."""
    assert len(CONFIG_BLOCKS) >= 10
    assert AIRFLOW_COMMANDS
