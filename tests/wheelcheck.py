"""Wheel checks for ``nox -s wheels``.

``wheelcheck.py DIST``: no wheel in DIST may ship ``statestore/__init__.py`` (a PEP 420 namespace).
``wheelcheck.py --import-all``: import every module of every installed statestore distribution.
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


if __name__ == "__main__":
    if sys.argv[1:] == ["--import-all"]:
        import_all()
    else:
        check_namespace(Path(sys.argv[1]))
