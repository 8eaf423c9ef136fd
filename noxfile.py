"""Every check a contributor or CI runs: ``nox`` runs lint, typecheck, tests, wheels, airflow and lowest."""

from __future__ import annotations

import shutil
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parent
PACKAGES = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
PYPROJECT = nox.project.load_toml(str(ROOT / "pyproject.toml"))
AIRFLOW = ["apache-airflow-core==3.3.2", "apache-airflow-task-sdk==1.3.2"]

# lowest: the suite on every declared dependency floor, so CI catches a floor that is no longer true.
nox.options.sessions = ["lint", "typecheck", "tests", "wheels", "airflow", "lowest"]
nox.options.error_on_missing_interpreters = True


def _editable_packages(extras: str = "test") -> list[str]:
    """``-e packages/x[extras]`` for every distribution in the repository (core first)."""
    ordered = sorted(PACKAGES, key=lambda p: p.name != "core")
    return [arg for p in ordered for arg in ("-e", f"{p}[{extras}]")]


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on every package's src/."""
    session.install(*_group("typecheck"), *_editable_packages("test,postgres,mysql"))
    session.run("mypy", *[str(p / "src") for p in PACKAGES])


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite against real servers (Redis, PostgreSQL, MariaDB, moto, GCS emulator)."""
    session.install("-U", "pip")
    session.install(*_group("dev"), *_editable_packages("test,postgres,mysql"))
    session.run("pytest", *(session.posargs or ["tests", "-m", "not airflow"]))


@nox.session
def wheels(session: nox.Session) -> None:
    """Build every wheel, install them non-editable in a fresh venv and import every module."""
    session.install("build")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in PACKAGES:
        session.run("python", "-m", "build", "--wheel", "--outdir", str(dist), str(package), silent=True)
    session.run("python", str(ROOT / "tests" / "wheelcheck.py"), str(dist))
    # pytest: the conformance suites (``statestore.*.testing``) import it, as their users have it.
    session.install(*sorted(str(w) for w in dist.glob("*.whl")), "pytest", "pytest-asyncio")
    session.chdir(session.create_tmp())
    session.run("python", str(ROOT / "tests" / "wheelcheck.py"), "--import-all")
    session.run("state-store", "backends")


@nox.session
def airflow(session: nox.Session) -> None:
    """Statestore backends inside the real Airflow 3.3.2 (server resolver, worker loader, scopes)."""
    session.install("-U", "pip")
    session.install(*_group("dev"), *_editable_packages("test,postgres"), *AIRFLOW)
    session.run("pytest", "tests/airflow", "-m", "airflow", *session.posargs)


def _floor_pins(extras: tuple[str, ...] = ("postgres", "mysql")) -> list[str]:
    """``name==floor`` for every third-party runtime dependency the packages declare (and these extras).

    Read from the pyproject files, so a floor changed there is what gets tested. Test-only extras
    are not pinned (they are tools of this repository, not promises to users); pip picks the newest
    of them that works with these floors.
    """
    floors: dict[str, str] = {}
    for package in PACKAGES:
        project = nox.project.load_toml(str(package / "pyproject.toml"))["project"]
        optional = project.get("optional-dependencies", {})
        for text in [*project["dependencies"], *(r for extra in extras for r in optional.get(extra, []))]:
            requirement = Requirement(text)
            if requirement.name.startswith("statestore-"):
                continue
            versions = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=")]
            if not versions:
                raise ValueError(f"{package.name}: {text!r} declares no lower bound")
            extra = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
            pin = f"{requirement.name}{extra}=={max(versions)}"
            if floors.setdefault(requirement.name, pin) != pin:
                raise ValueError(f"two floors for {requirement.name}: {floors[requirement.name]} and {pin}")
    return sorted(floors.values())


@nox.session
def lowest(session: nox.Session) -> None:
    """The test suite on the oldest version of every runtime dependency we declare (honest floors)."""
    session.install("-U", "pip")
    pins = _floor_pins()
    session.log("floors under test: " + " ".join(pins))
    session.install(*_group("dev"), *_editable_packages("test,postgres,mysql"), *pins)
    session.run("pip", "check")
    session.run("pytest", *(session.posargs or ["tests", "-m", "not airflow", "-q"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: ``nox -s bench -- NAME [args]`` runs benchmarks/bench_NAME.py."""
    if not session.posargs:
        names = sorted(p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py"))
        session.error(f"name a benchmark: nox -s bench -- {{{'|'.join(names)}}}")
    name, *args = session.posargs
    script = ROOT / "benchmarks" / f"bench_{name}.py"
    if not script.is_file():
        session.error(f"no benchmark {script.name} in benchmarks/")
    session.install("-U", "pip")
    session.install(*_group("dev"), *_editable_packages("test,postgres,mysql,bench"))
    session.run("python", str(script), *args)
