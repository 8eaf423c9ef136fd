"""Plugin discovery through real entry points: throwaway distributions written to disk and put on sys.path."""

from __future__ import annotations

import json
import secrets
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from statestore.core import Config, ConfigurationError, plugins
from statestore.core.backends.memory import MemoryStoreBackend
from statestore.core.cli import main
from statestore.core.config import unknown_settings
from statestore.core.errors import (
    BackendImportError,
    BackendNotFoundError,
    BackendNotInstalledError,
    DuplicateBackendError,
)
from statestore.core.plugins import BackendInfo, PluginWarning, available_backends, load_backend

MakeDist = Callable[..., str]

HOOKS = """
from statestore.core.plugins import BackendSpec, hookimpl

@hookimpl
def statestore_backends():
    return [{specs}]
"""

BACKEND = """
from statestore.core.backends.memory import MemoryStoreBackend

class Backend(MemoryStoreBackend):
    name = "{name}"
"""


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Write an installed distribution (dist-info with METADATA and entry_points.txt, plus a package).

    Returns the package name, unique per call so modules never leak between tests.
    """
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(dist: str, hooks: str, files: dict[str, str] | None = None, *, entry_point: str = "main") -> str:
        package = f"{dist.replace('-', '_')}_{secrets.token_hex(3)}"
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(textwrap.dedent(hooks).replace("PKG", package))
        for name, text in (files or {}).items():
            (tmp_path / package / f"{name}.py").parent.mkdir(exist_ok=True)
            (tmp_path / package / f"{name}.py").write_text(textwrap.dedent(text).replace("PKG", package))
        info = tmp_path / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        (info / "entry_points.txt").write_text(f"[statestore.plugins]\n{entry_point} = {package}\n")
        plugins.registry.cache_clear()
        return package

    yield make
    plugins.registry.cache_clear()


def spec(name: str, class_path: str = "PKG.backend:Backend", **extra: str) -> str:
    args = "".join(f", {k}={v}" for k, v in extra.items())
    return f"BackendSpec(name={name!r}, class_path={class_path!r}{args})"


def rows_named(name: str) -> list[BackendInfo]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return [row for row in available_backends() if row.name == name]


def test_core_backends_register_through_their_entry_point() -> None:
    plugins.registry.cache_clear()
    (memory,) = rows_named("memory")
    assert (memory.distribution, memory.class_path) == (
        "statestore-core",
        "statestore.core.backends.memory:MemoryStoreBackend",
    )
    assert memory.roles == ("server", "worker")
    assert memory.importable, memory.problem
    assert load_backend("memory") is MemoryStoreBackend


def test_plugin_is_listed_without_importing_its_backend(make_dist: MakeDist) -> None:
    package = make_dist(
        "acme-state",
        HOOKS.format(specs=spec("acme", description="'Acme object store'", roles="frozenset({'worker'})")),
        {"backend": BACKEND.format(name="acme")},
    )
    (row,) = rows_named("acme")
    assert row == BackendInfo(
        name="acme",
        roles=("worker",),
        description="Acme object store",
        distribution="acme-state",
        version="1.2.3",
        class_path=f"{package}.backend:Backend",
        importable=True,
    )
    assert f"{package}.backend" not in sys.modules
    backend_class = load_backend("acme")
    assert backend_class.__module__ == f"{package}.backend"
    assert load_backend(f"{package}.backend:Backend") is backend_class
    assert load_backend(f"{package}.backend.Backend") is backend_class


def test_unknown_name_lists_installed_and_closest() -> None:
    plugins.registry.cache_clear()
    with pytest.raises(BackendNotFoundError) as info:
        load_backend("memroy")
    message = str(info.value)
    assert message.startswith("unknown backend 'memroy'. Installed backends: ")
    installed = message.split("Installed backends: ")[1].split(".")[0].split(", ")
    assert {"local", "memory", "metastore"} <= set(installed)
    assert installed == sorted(installed)
    assert "Did you mean 'memory'?" in message
    assert "'package.module.Class' also works" in message


def test_known_name_not_installed_says_what_to_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(plugins.KNOWN_BACKENDS, "zzstore", "statestore-zzstore")
    plugins.registry.cache_clear()
    with pytest.raises(BackendNotInstalledError) as info:
        load_backend("zzstore")
    assert str(info.value) == (
        "backend 'zzstore' is provided by the distribution statestore-zzstore, which is not installed: "
        "pip install statestore-zzstore"
    )


def test_plugin_module_import_failure(make_dist: MakeDist) -> None:
    make_dist("acme-broken", "import acme_missing_sdk\n", entry_point="acmebroken")
    with pytest.warns(PluginWarning) as caught:
        rows = available_backends()
    assert [str(w.message) for w in caught] == [
        "plugin 'acmebroken' from acme-broken failed to load: ModuleNotFoundError: No module named 'acme_missing_sdk'"
    ]
    assert "memory" in {row.name for row in rows}, "listing goes on after a broken plugin"
    with pytest.raises(BackendImportError) as info:
        load_backend("acmebroken")
    assert "backend 'acmebroken' is unavailable: plugin 'acmebroken' from acme-broken failed to load" in str(info.value)
    assert "Reinstall acme-broken" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_backend_class_import_failure(make_dist: MakeDist) -> None:
    package = make_dist(
        "acme-heavy",
        HOOKS.format(specs=spec("heavy", requires="('acme_heavy_sdk',)")),
        {"backend": "import acme_heavy_sdk\n"},
    )
    (row,) = rows_named("heavy")
    assert not row.importable
    broken = "acme-heavy 1.2.3 is installed but broken; reinstall it: pip install --force-reinstall acme-heavy"
    assert row.problem == f"missing module 'acme_heavy_sdk'. {broken}"
    with pytest.raises(BackendImportError) as info:
        load_backend("heavy")
    assert str(info.value) == (
        f"backend 'heavy' from acme-heavy 1.2.3 failed to import '{package}.backend:Backend': "
        f"No module named 'acme_heavy_sdk'. {broken}"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_listing_checks_dotted_requirements_without_importing_them(make_dist: MakeDist) -> None:
    package = make_dist(
        "acme-deep",
        HOOKS.format(specs=spec("deep", "PKG.missing:Backend", requires="('PKG.sub.leaf',)")),
        {"sub/__init__": "raise RuntimeError('imported during listing')\n", "sub/leaf": ""},
    )
    (row,) = rows_named("deep")
    assert row.problem == (
        f"missing module '{package}.missing'. acme-deep 1.2.3 is installed but broken; reinstall it: "
        "pip install --force-reinstall acme-deep"
    )
    assert f"{package}.sub" not in sys.modules


def test_backend_module_raising_other_errors_is_an_import_error(make_dist: MakeDist) -> None:
    make_dist("acme-raising", HOOKS.format(specs=spec("raising")), {"backend": "raise RuntimeError('no region')\n"})
    with pytest.raises(BackendImportError, match=r"from acme-raising 1\.2\.3 failed to import .*: no region") as info:
        load_backend("raising")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_duplicate_name_is_reported_not_resolved(make_dist: MakeDist) -> None:
    first = make_dist("dup-one", HOOKS.format(specs=spec("dupe")), {"backend": BACKEND.format(name="dupe")})
    second = make_dist("dup-two", HOOKS.format(specs=spec("dupe")), {"backend": BACKEND.format(name="dupe")})
    with pytest.raises(DuplicateBackendError) as info:
        load_backend("dupe")
    assert str(info.value) == (
        "backend name 'dupe' is registered by more than one distribution: "
        f"dup-one ({first}.backend:Backend), dup-two ({second}.backend:Backend). "
        "Uninstall one of them, or name the class path you want instead of the short name."
    )
    rows = rows_named("dupe")
    assert [(r.distribution, r.importable, r.problem) for r in rows] == [
        ("dup-one", False, "name also registered by dup-two"),
        ("dup-two", False, "name also registered by dup-one"),
    ]
    assert load_backend(f"{second}.backend:Backend").__module__ == f"{second}.backend"


def test_hook_that_raises(make_dist: MakeDist) -> None:
    hooks = """
    from statestore.core.plugins import hookimpl

    @hookimpl
    def statestore_backends():
        raise RuntimeError("credentials file unreadable")
    """
    make_dist("acme-hookfail", hooks, entry_point="hookfail")
    with pytest.warns(PluginWarning, match="plugin 'hookfail' from acme-hookfail failed to load: RuntimeError: cred"):
        rows = available_backends()
    assert "memory" in {row.name for row in rows}
    with pytest.raises(BackendImportError, match="acme-hookfail") as info:
        load_backend("hookfail")
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize(
    ("hooks", "error"),
    [
        (HOOKS.format(specs="'not-a-spec'"), "TypeError: statestore_backends() must return a list of BackendSpec"),
        (
            "from statestore.core.plugins import hookimpl\n@hookimpl\ndef statestore_backend():\n    return []\n",
            "unknown hook",
        ),
        (
            HOOKS.format(specs=spec("named", settings="('bucket', 'prefix')")),
            "TypeError: BackendSpec 'named': settings must be a tuple of statestore.core.settings.SettingSpec",
        ),
    ],
    ids=["wrong-return", "misspelt-hook", "settings-as-names"],
)
def test_malformed_plugin_is_one_warning(make_dist: MakeDist, hooks: str, error: str) -> None:
    make_dist("acme-malformed", hooks)
    good = make_dist("acme-good", HOOKS.format(specs=spec("goodone")), {"backend": BACKEND.format(name="goodone")})
    with pytest.warns(PluginWarning) as caught:
        rows = available_backends()
    assert len(caught) == 1
    assert "from acme-malformed failed to load" in str(caught[0].message)
    assert error in str(caught[0].message)
    assert [r.class_path for r in rows if r.name == "goodone"] == [f"{good}.backend:Backend"]


def test_a_third_party_plugins_settings_are_shown_checked_and_resolved(make_dist: MakeDist) -> None:
    """A plugin's declared settings: defaults in ``Config``, typos warned, and its constructor resolves them."""
    hooks = """
    from statestore.core.plugins import BackendSpec, hookimpl
    from statestore.core.settings import SettingSpec

    SETTINGS = (SettingSpec("region", str, "eu", "where"), SettingSpec("retries", int, 2, "how often", minimum=0))

    @hookimpl
    def statestore_backends():
        return [BackendSpec(name="acmeset", class_path="PKG.backend:Backend", settings=SETTINGS)]
    """
    backend = """
    from statestore.core.backends.memory import MemoryStoreBackend
    from statestore.core.settings import resolve
    from PKG import SETTINGS

    class Backend(MemoryStoreBackend):
        name = "acmeset"

        def __init__(self, region=None, *, retries=None, config=None):
            super().__init__(config=config)
            given = {"region": region, "retries": retries}
            values = resolve(self.config, "statestore_acmeset", SETTINGS, given, owner="Backend")
            self.region, self.retries = values["region"], values["retries"]
    """
    make_dist("acme-settings", hooks, {"backend": backend})
    config = Config.from_dict({"statestore_acmeset": {"retries": "5"}})
    assert {k: s.value for k, s in config.section("statestore_acmeset").items()} == {"region": "eu", "retries": "5"}
    made = load_backend("acmeset")(config=config)
    assert (made.region, made.retries) == ("eu", 5)
    with pytest.raises(ConfigurationError, match=r"\[statestore_acmeset\] retries must be >= 0, got -1"):
        load_backend("acmeset")(config=Config.from_dict({"statestore_acmeset": {"retries": "-1"}}))
    assert unknown_settings(Config(environ={"STATESTORE__STATESTORE_ACMESET__REGOIN": "us"})) == [
        "unknown key STATESTORE__STATESTORE_ACMESET__REGOIN in the environment; "
        "did you mean STATESTORE__STATESTORE_ACMESET__REGION?"
    ]


def test_every_broken_plugin_warns_once_and_listing_continues(make_dist: MakeDist) -> None:
    make_dist("acme-broken-a", "raise ImportError('a is broken')\n", entry_point="a")
    make_dist("acme-broken-b", "raise ValueError('b is broken')\n", entry_point="b")
    with pytest.warns(PluginWarning) as caught:
        rows = available_backends()
    assert sorted(str(w.message) for w in caught) == [
        "plugin 'a' from acme-broken-a failed to load: ImportError: a is broken",
        "plugin 'b' from acme-broken-b failed to load: ValueError: b is broken",
    ]
    assert {"memory", "local"} <= {row.name for row in rows}


def test_non_backend_class_is_a_type_error(make_dist: MakeDist) -> None:
    package = make_dist(
        "acme-notabackend", HOOKS.format(specs=spec("notone")), {"backend": "class Backend:\n    pass\n"}
    )
    with pytest.raises(TypeError) as info:
        load_backend("notone")
    assert str(info.value) == (
        f"backend 'notone' ({package}.backend:Backend) is <class '{package}.backend.Backend'>, "
        "which is not a state store backend: a backend is a class with Airflow's eight methods (get, set, delete, "
        "clear, aget, aset, adelete, aclear); missing get, set, delete, clear, aget, aset, adelete, aclear"
    )
    with pytest.raises(
        TypeError, match=r"'collections\.OrderedDict' is <class 'collections.OrderedDict'>, which is not"
    ):
        load_backend("collections.OrderedDict")
    with pytest.raises(TypeError, match="the given class is <class 'dict'>"):
        load_backend(dict)  # type: ignore[arg-type]


def test_class_path_errors() -> None:
    with pytest.raises(BackendImportError) as info:
        load_backend("statestore.core.backends.memory:Nope")
    assert str(info.value) == (
        "cannot import backend class 'statestore.core.backends.memory:Nope': "
        "module 'statestore.core.backends.memory' has no attribute 'Nope'. "
        "Check the module path and that its distribution is installed."
    )
    with pytest.raises(
        BackendImportError, match=r"It belongs to statestore-s3\. statestore-s3 0\.1\.0 is installed but"
    ):
        load_backend("statestore.s3.nowhere.Backend")
    with pytest.raises(BackendImportError, match=r"No module named 'acme_nowhere'\. Check the module path"):
        load_backend("acme_nowhere.Backend")
    with pytest.raises(BackendNotFoundError, match="neither a backend name nor a class path"):
        load_backend("memory:")
    with pytest.raises(BackendNotFoundError, match="non-empty string or a class"):
        load_backend("  ")
    assert load_backend(" statestore.core.backends.memory.MemoryStoreBackend ") is MemoryStoreBackend


CLI_HOOKS = """
from statestore.core.cli import print_table
from statestore.core.errors import StorageError
from statestore.core.plugins import hookimpl

def run(args):
    if args.fail:
        raise StorageError("bucket b1 is unreachable")
    print_table([{"bucket": "b1", "objects": 3}], ["bucket", "objects"])

@hookimpl
def statestore_cli(subparsers):
    command = subparsers.add_parser("acme", help="Acme tools")
    command.add_argument("--fail", action="store_true")
    command.set_defaults(func=run)
"""


def test_plugin_adds_cli_commands(make_dist: MakeDist, capsys: pytest.CaptureFixture[str]) -> None:
    make_dist("acme-cli", CLI_HOOKS)
    assert main(["acme"]) == 0
    assert capsys.readouterr().out.splitlines() == ["BUCKET  OBJECTS", "b1      3"]
    assert main(["acme", "--fail"]) == 1
    assert capsys.readouterr().err == "state-store: error: bucket b1 is unreachable\n"


def test_cli_survives_broken_plugins(make_dist: MakeDist, capsys: pytest.CaptureFixture[str]) -> None:
    make_dist("acme-broken", "raise ImportError('acme is broken')\n", entry_point="acmebroken")
    hooks = "from statestore.core.plugins import hookimpl\n@hookimpl\ndef statestore_cli(subparsers):\n    1 / 0\n"
    make_dist("acme-badcli", hooks, entry_point="badcli")
    assert main(["backends"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "state-store: warning: plugin acme-badcli:badcli failed to add its commands: "
        "ZeroDivisionError: division by zero",
        "state-store: warning: plugin 'acmebroken' from acme-broken failed to load: ImportError: acme is broken",
    ]
    assert any(line.startswith("memory ") for line in captured.out.splitlines())
    assert main(["backends", "--json"]) == 0
    assert "memory" in {row["name"] for row in json.loads(capsys.readouterr().out)}
