"""The conformance suite over an Airflow-native backend (``native_backend_suite.py``), in a fresh interpreter.

Importing Airflow makes statestore read Airflow's configuration for the rest of the process, so the
suite runs in its own pytest process, with a private ``AIRFLOW_HOME`` and no ``STATESTORE__``/``AIRFLOW__``
variables, as the other Airflow tests do.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

SUITE = Path(__file__).with_name("native_backend_suite.py")
ROOT = Path(__file__).resolve().parents[2]
DECLARED = {
    "AirflowDictBackend does not support listing: Airflow's contract has no keys()",
    "AirflowDictBackend does not support cleanup: Airflow's cleanup() returns None",
    "AirflowDictBackend does not support references: Airflow's default hooks keep values inline",
    "ForeignBackend does not support listing: Airflow's contract has no keys()",
    "ForeignBackend does not support cleanup: Airflow's cleanup() returns None",
}


def test_the_suite_passes_over_an_airflow_native_backend_directly_and_through_statestore(tmp_path: Path) -> None:
    if importlib.util.find_spec("airflow") is None:
        pytest.fail(
            "Airflow is not installed here; run `nox -s airflow` (installs apache-airflow-core==3.3.2 "
            "and apache-airflow-task-sdk==1.3.2)",
            pytrace=False,
        )
    env = {name: value for name, value in os.environ.items() if not name.startswith(("STATESTORE", "AIRFLOW"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "STATESTORE_HOME": str(tmp_path / "statestore")}
    command = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-rs", "--timeout=300"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    passed = int(re.search(r"(\d+) passed", output)[1])  # type: ignore[index]
    assert passed >= 280, output
    reasons = {match[1] for match in re.finditer(r"^SKIPPED \[\d+\] \S+: (.+)$", output, re.M)}
    assert reasons == DECLARED, output
