"""Plugin discovery: pluggy hooks announced through the ``statestore.plugins`` entry-point group.

A distribution names a *light* module of hook implementations in its entry points; the module
announces backends as class paths that are imported only when selected, so listing backends
never imports boto3, redis or google-cloud-storage. The core registers its own backends through
the same entry-point path as any third party.

Error policy, per failure:

* a plugin module that fails to import, or whose hook raises, is recorded with its
  distribution; listing warns once per broken plugin and goes on; selecting one of its names
  raises ``BackendImportError`` with the cause chained;
* a name claimed by two distributions is reported (``DuplicateBackendError``), never resolved
  by install order;
* a known first-party name whose distribution is missing says what to ``pip install``;
* an unknown name lists the installed names and the closest match.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.machinery
import sys
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from statestore.core.errors import (
    BackendImportError,
    BackendNotFoundError,
    BackendNotInstalledError,
    DuplicateBackendError,
)
from statestore.core.settings import SettingSpec

if TYPE_CHECKING:
    import argparse

    from statestore.core.base import StoreBackend

__all__ = [
    "ENTRY_POINT_GROUP",
    "KNOWN_BACKENDS",
    "BackendInfo",
    "BackendSpec",
    "PluginFailure",
    "PluginWarning",
    "available_backends",
    "hookimpl",
    "hookspec",
    "load_backend",
    "registry",
]

PROJECT = "statestore"
ENTRY_POINT_GROUP = "statestore.plugins"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

KNOWN_BACKENDS: dict[str, str] = {
    "s3": "statestore-s3",
    "redis": "statestore-redis",
    "gcs": "statestore-gcs",
}
"""First-party backend names and the distribution that provides each (for install hints)."""

SERVER, WORKER = "server", "worker"


class PluginWarning(UserWarning):
    """A plugin could not be loaded; listing goes on without it."""


@dataclass(frozen=True)
class BackendSpec:
    """A backend a plugin announces: short name, lazily imported class path and what it can do.

    ``class_path`` is ``"package.module:Class"``; ``requires`` names top-level modules the
    backend imports (checked with ``find_spec``, never imported, when listing). ``settings``
    declares the keys of its section ``[statestore_<name>]`` (the same tuple the backend's
    constructor resolves with :func:`statestore.core.settings.resolve`): ``state-store config``
    shows their defaults, a misspelt key is warned about with the closest one, and the Airflow
    provider metadata lists them. ``None`` (the default) leaves the section's keys unchecked.
    """

    name: str
    class_path: str
    description: str = ""
    roles: frozenset[str] = frozenset({SERVER, WORKER})
    requires: tuple[str, ...] = ()
    settings: tuple[SettingSpec, ...] | None = None
    distribution: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded: its entry point, distribution and the error."""

    entry_point: str
    distribution: str
    error: BaseException

    def describe(self) -> str:
        """One line for warnings and ``state-store backends``."""
        return (
            f"plugin {self.entry_point!r} from {self.distribution} failed to load: "
            f"{type(self.error).__name__}: {self.error}"
        )


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``available_backends()``."""

    name: str
    roles: tuple[str, ...]
    description: str
    distribution: str
    version: str
    class_path: str
    importable: bool
    problem: str | None = None


class _HookSpecs:
    """The hooks a statestore plugin module may implement (as plain functions)."""

    @hookspec
    def statestore_backends(self) -> list[BackendSpec]:  # type: ignore[empty-body]
        """Return the backends this plugin provides."""

    @hookspec
    def statestore_cli(self, subparsers: argparse._SubParsersAction[Any]) -> None:
        """Add subcommands to ``state-store`` (e.g. ``state-store s3 lifecycle``)."""


@dataclass
class Registry:
    """Everything discovered from the installed plugins."""

    manager: pluggy.PluginManager
    specs: dict[str, list[BackendSpec]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)

    def installed_names(self) -> list[str]:
        """Every backend name some installed plugin announces."""
        return sorted(self.specs)


def _distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution", "?"
    return dist.metadata["Name"], dist.version


def _announced(manager: pluggy.PluginManager, module: object) -> list[BackendSpec]:
    """The specs ``module``'s hook returns; raises if the hook fails or returns something else."""
    manager.check_pending()  # a misspelt hook name (``statestore_backend``) is this plugin's failure
    impls = [i for i in manager.hook.statestore_backends.get_hookimpls() if i.plugin is module]
    specs: list[BackendSpec] = []
    for impl in impls:
        returned = impl.function()
        if not (isinstance(returned, (list, tuple)) and all(isinstance(s, BackendSpec) for s in returned)):
            raise TypeError(f"statestore_backends() must return a list of BackendSpec, got {returned!r}")
        for spec in returned:
            if spec.settings is not None and not all(isinstance(s, SettingSpec) for s in spec.settings):
                raise TypeError(
                    f"BackendSpec {spec.name!r}: settings must be a tuple of statestore.core.settings.SettingSpec "
                    f"(or None), got {spec.settings!r}"
                )
        specs.extend(returned)
    return specs


def _discover(eps: list[EntryPoint]) -> Registry:
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(_HookSpecs)
    reg = Registry(manager)
    for ep in sorted(eps, key=lambda e: e.name):
        dist, version = _distribution_of(ep)
        module = None
        try:
            module = ep.load()
            manager.register(module, name=f"{dist}:{ep.name}")
            announced = _announced(manager, module)
        except Exception as exc:  # noqa: BLE001 - import errors, bad hookimpls, raising hooks: all this plugin's
            if module is not None and manager.is_registered(module):
                manager.unregister(module)
            reg.failures.append(PluginFailure(ep.name, dist, exc))
            continue
        for spec in announced:
            spec = replace(spec, distribution=dist, version=version)
            same = [s for s in reg.specs.get(spec.name, []) if s.distribution == dist]
            if not same:
                reg.specs.setdefault(spec.name, []).append(spec)
    return reg


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The plugin registry, built once per process from the installed entry points."""
    return _discover(list(entry_points(group=ENTRY_POINT_GROUP)))


def _split(class_path: str) -> tuple[str, str]:
    module_name, _, attr = class_path.partition(":") if ":" in class_path else class_path.rpartition(".")
    return module_name, attr


def _import_class(class_path: str) -> Any:
    module_name, attr = _split(class_path)
    if not module_name or not attr:
        raise BackendNotFoundError(
            f"{class_path!r} is neither a backend name nor a class path "
            "('package.module.Class' or 'package.module:Class')"
        )
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


def _check_backend_class(obj: Any, origin: str) -> type[StoreBackend]:
    """``obj`` if it is a complete backend class: the eight methods of Airflow's contract, none left abstract."""
    from statestore.core import airflow_compat
    from statestore.core.base import StoreBackend

    if not (isinstance(obj, type) and issubclass(obj, StoreBackend)):
        missing = [name for name in _CONTRACT if not callable(getattr(obj, name, None))]
        raise TypeError(
            f"{origin} is {obj!r}, which is not a state store backend: a backend is a class with Airflow's eight "
            f"methods ({', '.join(_CONTRACT)}); missing {', '.join(missing) or 'none (it is not a class)'}"
        )
    abstract = sorted(getattr(obj, "__abstractmethods__", ()))
    if abstract:
        raise TypeError(f"{origin} is {obj.__qualname__}, which leaves abstract: {', '.join(abstract)}; implement them")
    airflow_compat.register_with_airflow()
    return obj


_CONTRACT = ("get", "set", "delete", "clear", "aget", "aset", "adelete", "aclear")


def _spec_for(name: str) -> BackendSpec:
    reg = registry()
    specs = reg.specs.get(name)
    if specs and len(specs) > 1:
        owners = ", ".join(f"{s.distribution} ({s.class_path})" for s in specs)
        raise DuplicateBackendError(
            f"backend name {name!r} is registered by more than one distribution: {owners}. "
            "Uninstall one of them, or name the class path you want instead of the short name."
        )
    if specs:
        return specs[0]
    broken = [f for f in reg.failures if f.entry_point == name or f.distribution == KNOWN_BACKENDS.get(name)]
    if broken:
        failure = broken[0]
        raise BackendImportError(
            f"backend {name!r} is unavailable: {failure.describe()}. "
            f"Reinstall {failure.distribution} or install what it is missing."
        ) from failure.error
    if name in KNOWN_BACKENDS:
        dist = KNOWN_BACKENDS[name]
        raise BackendNotInstalledError(
            f"backend {name!r} is provided by the distribution {dist}, which is not installed: pip install {dist}"
        )
    installed = reg.installed_names()
    close = difflib.get_close_matches(name, installed + list(KNOWN_BACKENDS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise BackendNotFoundError(
        f"unknown backend {name!r}. Installed backends: {', '.join(installed) or 'none'}.{hint} "
        "A class path such as 'package.module.Class' also works."
    )


def load_backend(spec: str | type[Any]) -> type[StoreBackend]:
    """Resolve a short plugin name, ``pkg.mod.Class``, ``pkg.mod:Class`` or a class to a backend class.

    A backend class is any complete class with Airflow's eight methods (:class:`statestore.core.StoreBackend`):
    a ``statestore.core.BaseStoreBackend`` subclass or an Airflow-native one.
    """
    if isinstance(spec, type):
        return _check_backend_class(spec, "the given class")
    if not isinstance(spec, str) or not spec.strip():
        raise BackendNotFoundError(f"a backend is named by a non-empty string or a class, got {spec!r}")
    spec = spec.strip()
    if "." not in spec and ":" not in spec:
        found = _spec_for(spec)
        try:
            obj = _import_class(found.class_path)
        except Exception as exc:  # whatever the backend's module raises, name its distribution
            raise BackendImportError(
                f"backend {spec!r} from {found.distribution} {found.version} failed to import {found.class_path!r}: "
                f"{exc}. {_install_hint(found.distribution or '?')}"
            ) from exc
        return _check_backend_class(obj, f"backend {spec!r} ({found.class_path})")
    try:
        obj = _import_class(spec)
    except BackendNotFoundError:
        raise
    except Exception as exc:  # ImportError or an error in the module's own code
        owner = next((s for specs in registry().specs.values() for s in specs if _same_path(s.class_path, spec)), None)
        dist = (
            owner.distribution
            if owner
            else next((d for n, d in KNOWN_BACKENDS.items() if f".{n}." in f".{spec}"), None)
        )
        hint = (
            f" It belongs to {dist}. {_install_hint(dist)}"
            if dist
            else " Check the module path and that its distribution is installed."
        )
        raise BackendImportError(f"cannot import backend class {spec!r}: {exc}.{hint}") from exc
    return _check_backend_class(obj, repr(spec))


def _install_hint(dist: str) -> str:
    """What to do about a backend of ``dist`` that fails to import: install it, or repair it when installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(dist)
    except PackageNotFoundError:
        return f"Install it: pip install {dist}"
    return f"{dist} {installed} is installed but broken; reinstall it: pip install --force-reinstall {dist}"


def _same_path(a: str, b: str) -> bool:
    return a.replace(":", ".") == b.replace(":", ".")


def _path_entry_finder(entry: str) -> Any:
    """The finder ``sys.path_hooks`` gives for one path entry (FileFinder, zipimporter), or None."""
    cached = sys.path_importer_cache.get(entry)
    if cached is not None:
        return cached
    for hook in sys.path_hooks:
        try:
            return hook(entry)
        except ImportError:
            continue
    return None


def _find(prefix: str, search: list[str]) -> tuple[bool, list[str] | None]:
    """Whether ``prefix`` exists in ``search``, and its submodule locations (None for a plain module).

    Namespace portions are collected by hand: the import system's own namespace path object
    would look the parent package up in ``sys.modules`` and so need it imported.
    """
    portions: list[str] = []
    for entry in search:
        finder = _path_entry_finder(entry)
        spec = finder.find_spec(prefix) if finder is not None and hasattr(finder, "find_spec") else None
        if spec is None:
            continue
        if spec.loader is not None:
            locations = spec.submodule_search_locations
            return True, None if locations is None else list(locations)
        portions.extend(spec.submodule_search_locations or [])
    if portions:
        return True, portions
    if "." not in prefix:  # builtins and import hooks outside sys.path (e.g. setuptools editable installs)
        for finder in sys.meta_path:
            if finder is importlib.machinery.PathFinder or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(prefix, None)
            if spec is not None:
                locations = spec.submodule_search_locations
                return True, None if locations is None else list(locations)
    return False, None


def _locate(name: str) -> bool:
    """Whether module ``name`` exists, asking the path finders without importing it or its parents.

    (``importlib.util.find_spec("google.cloud.storage")`` would import ``google`` and ``google.cloud``.)
    """
    parts = name.split(".")
    search: list[str] = list(sys.path)
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        module = sys.modules.get(prefix)
        if module is not None:
            locations = getattr(module, "__path__", None)
            found, locations = True, None if locations is None else list(locations)
        else:
            found, locations = _find(prefix, search)
        if not found:
            return False
        if depth < len(parts):
            if locations is None:
                return False
            search = locations
    return True


def _importable(spec: BackendSpec) -> str | None:
    """Why ``spec`` would fail to import (a missing module), or None; imports nothing of the backend."""
    for name in (*spec.requires, _split(spec.class_path)[0]):
        try:
            found = _locate(name)
        except Exception as exc:  # noqa: BLE001 - a finder failing is a reason, not a crash of the listing
            return f"cannot find {name}: {exc}"
        if not found:
            return f"missing module {name!r}. {_install_hint(spec.distribution or '?')}"
    return None


def available_backends() -> list[BackendInfo]:
    """Every installed backend with roles, description, distribution, version and importability.

    Imports no backend and none of their dependencies. Broken plugins are reported as
    ``PluginWarning`` (one per plugin) and left out; duplicate names are listed with a problem.
    """
    reg = registry()
    for failure in reg.failures:
        warnings.warn(failure.describe(), PluginWarning, stacklevel=2)
    rows = []
    for name in reg.installed_names():
        specs = reg.specs[name]
        for spec in specs:
            problem = _importable(spec)
            if len(specs) > 1:
                others = ", ".join(s.distribution or "?" for s in specs if s is not spec)
                problem = f"name also registered by {others}"
            rows.append(
                BackendInfo(
                    name=name,
                    roles=tuple(sorted(spec.roles)),
                    description=spec.description,
                    distribution=spec.distribution or "?",
                    version=spec.version or "?",
                    class_path=spec.class_path,
                    importable=problem is None,
                    problem=problem,
                )
            )
    return rows
