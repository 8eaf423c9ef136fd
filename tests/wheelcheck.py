"""Wheel checks for ``nox -s wheels``.

``wheelcheck.py DIST``: no wheel in DIST may ship ``statestore/__init__.py`` (a PEP 420 namespace).
``wheelcheck.py --import-all``: import every module of every installed statestore distribution, and
call each one's Airflow provider entry point (``apache_airflow_provider``) as Airflow would.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import zipfile
from pathlib import Path


def check_namespace(dist: Path) -> None:
    wheels = sorted(dist.glob("*.whl"))
    if not wheels:
        sys.exit(f"no wheels in {dist}")
    for wheel in wheels:
        names = zipfile.ZipFile(wheel).namelist()
        if "statestore/__init__.py" in names:
            sys.exit(f"{wheel.name} ships statestore/__init__.py; statestore must stay a namespace package")
        print(f"ok {wheel.name}: {len(names)} files, no statestore/__init__.py")


def import_all() -> None:
    import statestore

    if getattr(statestore, "__file__", None) is not None:
        sys.exit(f"statestore is a regular package at {statestore.__file__}; it must be a namespace")
    count = 0
    for info in pkgutil.walk_packages(statestore.__path__, "statestore."):
        importlib.import_module(info.name)
        count += 1
    print(f"imported {count} modules from {list(statestore.__path__)}")
    check_provider_entry_points()


def check_provider_entry_points() -> None:
    """Every statestore distribution's ``apache_airflow_provider`` entry point returns its own metadata."""
    from importlib.metadata import distributions, entry_points

    ours = sorted(d.metadata["Name"] for d in distributions() if d.metadata["Name"].startswith("statestore-"))
    found = {}
    for ep in entry_points(group="apache_airflow_provider"):
        if ep.dist is not None and ep.dist.metadata["Name"] in ours:
            found[ep.dist.metadata["Name"]] = ep.load()()["package-name"]
    if found != {name: name for name in ours}:
        sys.exit(f"Airflow provider entry points: expected one per distribution {ours}, got {found}")
    print(f"{len(found)} Airflow provider entry points return their metadata")


if __name__ == "__main__":
    if sys.argv[1:] == ["--import-all"]:
        import_all()
    else:
        check_namespace(Path(sys.argv[1]))
