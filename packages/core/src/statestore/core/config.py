"""Configuration: an ``airflow.cfg``-style INI file, ``STATESTORE__<SECTION>__<KEY>`` overrides, or Airflow's own.

Lookup order outside Airflow: environment variable, then the file (``$STATESTORE_CONFIG``, else
``$STATESTORE_HOME/statestore.cfg``), then the built-in default. Inside a running Airflow process
(Airflow's configuration module already imported) every value comes from Airflow's configuration,
so ``airflow.cfg`` and ``AIRFLOW__<SECTION>__<KEY>`` configure statestore and its plugins.
Every value remembers where it came from, so errors and ``state-store config`` can say so.
"""

from __future__ import annotations

import configparser
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statestore.core.errors import ConfigurationError
from statestore.core.settings import SettingSpec, checked

__all__ = [
    "CORE_SETTINGS",
    "MAX_RETENTION_DAYS",
    "PLUGIN_SECTION_PREFIX",
    "Config",
    "ConfigurationWarning",
    "Setting",
    "declared_settings",
    "load_config",
    "mask_secret",
    "statestore_home",
    "unknown_settings",
    "warn_unknown_settings",
]

MAX_RETENTION_DAYS = 36525
"""Longest retention (100 years), for ``default_retention_days`` and ``retention=``; longer is an error."""

CORE_SETTINGS: dict[str, tuple[SettingSpec, ...]] = {
    "state_store": (
        SettingSpec(
            "backend", str, "metastore", "server-side backend: a short name (state-store backends) or a class path"
        ),
        SettingSpec(
            "sql_alchemy_conn",
            str,
            None,
            "database of the metastore backend (SQLAlchemy URL); default: statestore.db in STATESTORE_HOME",
            url=True,
        ),
        SettingSpec(
            "default_retention_days",
            int,
            30,
            f"task values expire after this many days; 0 = never; at most {MAX_RETENTION_DAYS} (100 years)",
            minimum=0,
            maximum=MAX_RETENTION_DAYS,
        ),
        SettingSpec("clear_on_success", bool, False, "clear a task's store when its attempt succeeds"),
        SettingSpec(
            "state_cleanup_batch_size", int, 0, "rows per delete batch in cleanup; 0 = one statement", minimum=0
        ),
        SettingSpec(
            "max_value_storage_bytes", int, 65535, "inline values above this are refused; 0 = no limit", minimum=0
        ),
        SettingSpec(
            "sqlite_synchronous",
            str,
            "full",
            "SQLite metastore file: full syncs every commit (survives power loss), normal only at checkpoints",
            choices=("full", "normal"),
            rule="must be full or normal",
        ),
    ),
    "workers": (
        SettingSpec("state_backend", str, "", "worker-side backend (alias: state_store_backend, Airflow's name)"),
    ),
}
"""The core's own sections: ``[state_store]`` and ``[workers]``."""
# Airflow's default server backend is its own metastore; for statestore that means "our default".
_AIRFLOW_OWN_DEFAULT = ("state_store", "backend", "airflow.state.metastore.MetastoreBackend")
PLUGIN_SECTION_PREFIX = "statestore_"
"""Plugins read the section ``statestore_<plugin>`` (env-var friendly: no dots)."""
_ALIASES = {("workers", "state_store_backend"): ("workers", "state_backend")}
_SECRET_KEY = re.compile(
    r"password|passwd|pwd|passphrase|secret|token|credential|private_key|access_key|api_?key", re.I
)
# The password of a URL's user-info runs from the first ':' after the user name to the *last* '@'
# of the whitespace-free run, so one holding '@', ':', '/' or '%' is hidden whole (drivers split
# user-info at its last '@' too). Over-masking an odd URL is preferred to showing a password.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s:/]*:)\S*@")
# A query parameter whose name mentions a credential: its value up to the next '&', '#' or space.
_QUERY_SECRET = re.compile(r"([?&;][\w.\-]*?(?:pass|pwd|secret|token|key|sig|credential|auth)[\w.\-]*=)[^&#\s]*", re.I)


def statestore_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$STATESTORE_HOME``, default ``~/.statestore``."""
    env = os.environ if environ is None else environ
    return Path(env.get("STATESTORE_HOME") or Path.home() / ".statestore").expanduser()


def mask_secret(key: str, value: str) -> str:
    """Hide a secret setting entirely, and URL passwords and credential query parameters in any text.

    ``key`` is the setting's name (``password``, ``aws_secret_access_key``, ``api_token`` … hide the
    whole value); ``value`` may be a setting, a URL or an error message with URLs in it. This is the
    one masking rule: every ``repr``, ``location``, error and log line of statestore goes through it.
    """
    if value and _SECRET_KEY.search(key):
        return "***"
    return _QUERY_SECRET.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", value))


@dataclass(frozen=True)
class Setting:
    """One effective setting and where it came from (``env STATESTORE__X__Y``, ``/path/file``, ``default``)."""

    section: str
    key: str
    value: str
    source: str
    secret: bool = False
    """Declared secret (:class:`~statestore.core.settings.SettingSpec`): never shown."""

    @property
    def display_value(self) -> str:
        """The value with secrets masked, safe to print or log."""
        return "***" if self.secret and self.value else mask_secret(self.key, self.value)


def _env_name(section: str, key: str) -> str:
    return f"STATESTORE__{section.upper()}__{key.upper()}"


def _airflow_conf() -> Any | None:
    """Airflow's configuration object when this process is running Airflow, else None (never imports it)."""
    for module_name in ("airflow.sdk.configuration", "airflow.configuration"):
        module = sys.modules.get(module_name)
        if module is not None:
            try:
                return module.conf
            except AttributeError:
                continue
    return None


class Config:
    """Effective settings with typed getters; see the module docstring for the lookup order."""

    def __init__(
        self,
        values: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        path: Path | None = None,
        environ: Mapping[str, str] | None = None,
        airflow_conf: Any | None = None,
    ) -> None:
        self.path = path
        self._environ = dict(os.environ if environ is None else environ)
        self._airflow = airflow_conf
        self._file = configparser.ConfigParser(interpolation=None)
        self._file.optionxform = str.lower  # type: ignore[assignment,method-assign]
        if path is not None and path.is_file():
            try:
                self._file.read(path, encoding="utf-8")
            except configparser.Error as exc:
                raise ConfigurationError(f"cannot parse configuration file {path}: {exc}") from exc
        self._explicit = {s.lower(): {k.lower(): str(v) for k, v in kv.items()} for s, kv in (values or {}).items()}
        self._validate()

    @classmethod
    def from_dict(cls, values: Mapping[str, Mapping[str, Any]], *, environ: Mapping[str, str] | None = None) -> Config:
        """Settings given in code (tests, embedding); environment variables are ignored unless passed."""
        return cls(values, environ=environ or {})

    def setting(self, section: str, key: str, fallback: str | None = None) -> Setting | None:
        """The effective setting for ``section.key`` with its source, or None when unset and no default.

        Sources are tried in order (code, Airflow, environment, file); within each, the canonical
        name before its aliases, so ``STATESTORE__WORKERS__STATE_STORE_BACKEND`` beats the file.
        """
        section, key = section.lower(), key.lower()
        spec = _declared(section, key)
        secret = spec is not None and spec.secret
        names = [(section, key), *[alias for alias, target in _ALIASES.items() if target == (section, key)]]
        for source in (self._from_code, self._from_airflow, self._from_env, self._from_file):
            for sec, k in names:
                found = source(sec, k)
                if found is not None:
                    return Setting(section, key, *found, secret=secret)
        default = fallback if spec is None or spec.default is None else spec.text_default
        if (section, key) == ("state_store", "sql_alchemy_conn") and not default:
            default = f"sqlite:///{self.home / 'statestore.db'}"
        return None if default is None else Setting(section, key, default, "default", secret=secret)

    def _from_code(self, section: str, key: str) -> tuple[str, str] | None:
        value = self._explicit.get(section, {}).get(key)
        return None if value is None else (value, "code")

    def _from_airflow(self, section: str, key: str) -> tuple[str, str] | None:
        if self._airflow is None:
            return None
        value = self._airflow.get(section, key, fallback=None)
        if value is None or (section, key, value) == _AIRFLOW_OWN_DEFAULT:
            return None
        spec = _declared(*_ALIASES.get((section, key), (section, key)))
        if spec is not None and str(value) == spec.text_default:
            return None  # the default our provider metadata gave Airflow: say "default", not Airflow

        return str(value), f"airflow configuration [{section}] {key}"

    def _from_env(self, section: str, key: str) -> tuple[str, str] | None:
        env = _env_name(section, key)
        if self._airflow is not None or env not in self._environ:
            return None
        return self._environ[env], f"environment variable {env}"

    def _from_file(self, section: str, key: str) -> tuple[str, str] | None:
        if self._airflow is not None or not self._file.has_option(section, key):
            return None
        return self._file.get(section, key), f"{self.path} [{section}] {key}"

    @property
    def from_airflow(self) -> bool:
        """True when settings come from Airflow's configuration (inside an Airflow process)."""
        return self._airflow is not None

    @property
    def file_exists(self) -> bool:
        """True when a configuration file was found and read."""
        return self.path is not None and self.path.is_file()

    def get(self, section: str, key: str, fallback: str | None = None) -> str | None:
        """The string value of ``section.key`` (None when unset and no fallback)."""
        found = self.setting(section, key, fallback)
        return None if found is None else found.value

    def _required(self, section: str, key: str, fallback: object) -> Setting:
        found = self.setting(section, key, None if fallback is None else str(fallback))
        if found is None:
            raise ConfigurationError(f"[{section}] {key} is not set; set it in {self.describe_sources(section, key)}")
        return found

    def typed(self, section: str, spec: SettingSpec) -> Any:
        """``[section] spec.name`` parsed and checked against ``spec`` (``ConfigurationError`` naming the source)."""
        found = self._required(section, spec.name, spec.default)
        return checked(spec, found.value, found.source, f"[{section}] {spec.name}", spec.parse)

    def getint(
        self,
        section: str,
        key: str,
        fallback: int | None = None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int:
        """An integer setting; a non-integer or one outside ``minimum``..``maximum`` raises ``ConfigurationError``."""
        return int(self.typed(section, SettingSpec(key, int, fallback, minimum=minimum, maximum=maximum)))

    def getfloat(self, section: str, key: str, fallback: float | None = None) -> float:
        """A float setting; anything else raises ``ConfigurationError``."""
        return float(self.typed(section, SettingSpec(key, float, fallback)))

    def getbool(self, section: str, key: str, fallback: bool | None = None) -> bool:
        """A boolean setting (true/false, yes/no, on/off, 1/0); anything else raises ``ConfigurationError``."""
        return bool(self.typed(section, SettingSpec(key, bool, fallback)))

    def section(self, section: str) -> dict[str, Setting]:
        """Every setting known for ``section`` (defaults, code, file, environment, Airflow), by canonical key."""
        section = section.lower()
        keys = set(declared_settings().get(section, {})) | set(self._explicit.get(section, {}))
        if self._airflow is not None:
            if section.startswith(PLUGIN_SECTION_PREFIX) and self._airflow.has_section(section):
                keys |= {k.lower() for k in self._airflow.getsection(section) or {}}
            keys |= self._env_keys("AIRFLOW", section)
            keys = {_airflow_key(section, k) for k in keys}
        else:
            if self._file.has_section(section):
                keys |= set(self._file.options(section))
            keys |= self._env_keys("STATESTORE", section)
        canonical = {_ALIASES.get((section, k), (section, k))[1] for k in keys}
        declared = list(declared_settings().get(section, {}))  # in declaration order, then the rest
        ordered = [k for k in declared if k in canonical] + sorted(canonical.difference(declared))
        settings = {k: self.setting(section, k) for k in ordered}
        return {k: s for k, s in settings.items() if s is not None}

    def _env_keys(self, prefix: str, section: str) -> set[str]:
        head = f"{prefix}__{section.upper()}__"
        return {name[len(head) :].lower() for name in self._environ if name.startswith(head)}

    def sections(self) -> list[str]:
        """Names of every section with at least one setting from any source (plugin sections included)."""
        names = {name for name, specs in declared_settings().items() if specs} | set(self._explicit)
        if self._airflow is not None:
            names |= {n.lower() for n in self._airflow.sections() if n.lower().startswith(PLUGIN_SECTION_PREFIX)}
            env_prefix = f"AIRFLOW__{PLUGIN_SECTION_PREFIX.upper()}"
        else:
            names |= {n.lower() for n in self._file.sections()}
            env_prefix = "STATESTORE__"
        names |= {n.split("__")[1].lower() for n in self._environ if n.startswith(env_prefix) and n.count("__") >= 2}
        return sorted(names)

    def __iter__(self) -> Iterator[Setting]:
        for name in self.sections():
            yield from self.section(name).values()

    def describe_sources(self, section: str, key: str) -> str:
        """Where a user can set ``section.key`` (for error messages)."""
        if self._airflow is not None:
            return f"airflow.cfg [{section}] {key} or AIRFLOW__{section.upper()}__{key.upper()}"
        where = f"{self.path} [{section}] {key} or " if self.path else ""
        return f"{where}the environment variable {_env_name(section, key)}"

    # -- the core's own settings -------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """``STATESTORE_HOME`` as seen by this configuration."""
        return statestore_home(self._environ)

    @property
    def backend(self) -> str:
        """``[state_store] backend``: short plugin name or class path of the server-side backend."""
        return (self.get("state_store", "backend") or "metastore").strip()

    @property
    def worker_backend(self) -> str | None:
        """``[workers] state_backend`` (alias ``state_store_backend``), or None when unset."""
        return (self.get("workers", "state_backend") or "").strip() or None

    @property
    def sql_alchemy_conn(self) -> str:
        """``[state_store] sql_alchemy_conn``, default an SQLite file in ``STATESTORE_HOME``."""
        return (self.get("state_store", "sql_alchemy_conn") or "").strip() or f"sqlite:///{self.home / 'statestore.db'}"

    def _core(self, section: str, key: str) -> Any:
        return self.typed(section, _CORE[section][key])

    @property
    def default_retention_days(self) -> int:
        """``[state_store] default_retention_days`` (0 = never expire; at most :data:`MAX_RETENTION_DAYS`)."""
        return int(self._core("state_store", "default_retention_days"))

    @property
    def clear_on_success(self) -> bool:
        """``[state_store] clear_on_success``."""
        return bool(self._core("state_store", "clear_on_success"))

    @property
    def cleanup_batch_size(self) -> int:
        """``[state_store] state_cleanup_batch_size`` (0 = one statement)."""
        return int(self._core("state_store", "state_cleanup_batch_size"))

    @property
    def max_value_storage_bytes(self) -> int:
        """``[state_store] max_value_storage_bytes`` (0 = no limit)."""
        return int(self._core("state_store", "max_value_storage_bytes"))

    @property
    def sqlite_synchronous(self) -> str:
        """``[state_store] sqlite_synchronous``: ``full`` (default) or ``normal``, for an SQLite metastore file.

        ``full`` syncs the WAL at every commit, so an acknowledged write survives a power loss or
        an OS crash; ``normal`` syncs only at checkpoints (faster; such a crash may drop the last
        commits, though never corrupts the database).
        """
        return str(self._core("state_store", "sqlite_synchronous"))

    def _validate(self) -> None:
        """Parse and check every core setting now, so a bad value fails at load naming its source."""
        for section, specs in CORE_SETTINGS.items():
            for spec in specs:
                self.typed(section, spec)


_CORE = {section: {spec.name: spec for spec in specs} for section, specs in CORE_SETTINGS.items()}


def _declared(section: str, key: str) -> SettingSpec | None:
    """The declared setting ``[section] key``; plugin sections are looked up only when asked for."""
    if section in _CORE:
        return _CORE[section].get(key)
    if not section.startswith(PLUGIN_SECTION_PREFIX):
        return None
    return declared_settings().get(section, {}).get(key)


def _airflow_key(section: str, key: str) -> str:
    """``password`` for Airflow's ``password_cmd``/``password_secret`` of a sensitive setting; else ``key``.

    Airflow reads a sensitive option from a command or a secrets backend under those names.
    """
    base, _, suffix = key.rpartition("_")
    spec = _declared(section, base) if suffix in ("cmd", "secret") else None
    return base if spec is not None and (spec.secret or spec.url) else key


def declared_settings() -> dict[str, dict[str, SettingSpec]]:
    """Every section statestore knows -> its declared settings by name: the core's and each installed plugin's.

    A plugin's section is ``statestore_<name>``. Two distributions announcing one name contribute
    both their settings; a plugin that declares none (``settings=None``) has an empty entry here
    (see :func:`_known_settings` for how its keys are checked).
    """
    from statestore.core.plugins import registry

    declared: dict[str, dict[str, SettingSpec]] = {s: dict(_CORE[s]) for s in _CORE}
    for name, specs in registry().specs.items():
        section = declared.setdefault(PLUGIN_SECTION_PREFIX + name, {})
        for spec in specs:
            section.update({setting.name: setting for setting in spec.settings or ()})
    return declared


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration (Airflow's inside Airflow; else file + environment).

    Unknown sections, keys and variables of ours are warned about (``ConfigurationWarning``) with the
    closest known name; invalid values raise ``ConfigurationError``.
    """
    env = os.environ if environ is None else environ
    airflow = _airflow_conf() if path is None and environ is None else None
    if airflow is not None:
        config = Config(airflow_conf=airflow, environ=env)
    else:
        config_path = Path(path or env.get("STATESTORE_CONFIG") or statestore_home(env) / "statestore.cfg")
        config = Config(path=config_path.expanduser(), environ=env)
    warn_unknown_settings(config)
    return config


# -- unknown sections, keys and variables (typos) ------------------------------------------------------


class ConfigurationWarning(UserWarning):
    """A section, key or ``STATESTORE__`` variable statestore does not know; the message names the closest."""


_Namer = Callable[[str, "str | None"], str]
"""Spells ``(section, key)`` the way the user wrote it: ``[section] key`` or ``STATESTORE__SECTION__KEY``."""


def _known_settings() -> dict[str, frozenset[str] | None]:
    """Section -> its known keys (None: a plugin that declares none, so its keys are not checked)."""
    from statestore.core.plugins import KNOWN_BACKENDS, registry

    known: dict[str, frozenset[str] | None] = {
        section: frozenset(keys) | {k for (s, k) in _ALIASES if s == section}
        for section, keys in declared_settings().items()
    }
    for name, specs in registry().specs.items():
        if any(spec.settings is None for spec in specs):
            known[PLUGIN_SECTION_PREFIX + name] = None
    for name in KNOWN_BACKENDS:  # a first-party plugin that is not installed: its section is still ours
        known.setdefault(PLUGIN_SECTION_PREFIX + name, None)
    return known


def _closest(name: str, candidates: list[str], show: Callable[[str], str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {show(close[0])}?" if close else ""


def _check_entry(
    known: Mapping[str, frozenset[str] | None], section: str, key: str | None, where: str, name: _Namer
) -> str | None:
    """The problem with ``[section] key`` read from ``where`` (``name(section, key)`` spells a name), or None."""
    if section not in known:
        suggestion = _closest(section, list(known), lambda s: name(s, key))
        return f"unknown section {name(section, key)} in {where}{suggestion}"
    keys = known[section]
    if key is None or keys is None or key in keys:
        return None
    return f"unknown key {name(section, key)} in {where}{_closest(key, list(keys), lambda k: name(section, k))}"


def unknown_settings(config: Config) -> list[str]:
    """One message per section, key or environment variable of ours that statestore does not know.

    Outside Airflow: the file's sections and keys and every ``STATESTORE__`` variable. Inside
    Airflow: the ``[statestore_*]`` plugin sections (Airflow owns ``[state_store]`` and ``[workers]``)
    and ``AIRFLOW__STATESTORE_*`` variables. Each message names the closest known name.
    """
    known = _known_settings()
    problems: list[str] = []

    def ini(section: str, key: str | None) -> str:
        return f"[{section}]" if key is None else f"[{section}] {key}"

    def env(prefix: str) -> _Namer:
        return lambda section, key: f"{prefix}__{section.upper()}__{(key or 'KEY').upper()}"

    if config._airflow is not None:
        conf = config._airflow
        for section in (s.lower() for s in conf.sections() if s.lower().startswith(PLUGIN_SECTION_PREFIX)):
            for key in sorted({_airflow_key(section, k.lower()) for k in conf.getsection(section) or {}}):
                problems.append(_check_entry(known, section, key, "the Airflow configuration", ini) or "")
        prefix, only_plugins = "AIRFLOW", True
    else:
        for section in (s.lower() for s in config._file.sections()):
            unknown = _check_entry(known, section, None, str(config.path), ini)
            keys = [] if unknown else config._file.options(section)
            problems += [unknown or "", *(_check_entry(known, section, k, str(config.path), ini) or "" for k in keys)]
        prefix, only_plugins = "STATESTORE", False
    for variable in sorted(v for v in config._environ if v.startswith(f"{prefix}__")):
        parts = variable.split("__")
        section = parts[1].lower() if len(parts) > 1 else ""
        if only_plugins and not section.startswith(PLUGIN_SECTION_PREFIX):
            continue
        if len(parts) != 3 or not all(parts[1:]):
            problems.append(f"environment variable {variable} is not of the form {prefix}__<SECTION>__<KEY>")
            continue
        key = _airflow_key(section, parts[2].lower()) if only_plugins else parts[2].lower()
        problems.append(_check_entry(known, section, key, "the environment", env(prefix)) or "")
    return list(dict.fromkeys(p for p in problems if p))


def warn_unknown_settings(config: Config) -> None:
    """Issue a ``ConfigurationWarning`` for each of :func:`unknown_settings` (shown once per process each)."""
    import warnings

    for problem in unknown_settings(config):
        warnings.warn(problem, ConfigurationWarning, stacklevel=3)
