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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from statestore.core.errors import ConfigurationError

__all__ = ["DEFAULTS", "Config", "Setting", "load_config", "mask_secret", "statestore_home"]

DEFAULTS: dict[str, dict[str, str]] = {
    "state_store": {
        "backend": "metastore",
        "sql_alchemy_conn": "",
        "default_retention_days": "30",
        "clear_on_success": "False",
        "state_cleanup_batch_size": "0",
        "max_value_storage_bytes": "65535",
    },
    "workers": {"state_backend": ""},
}
# Airflow's default server backend is its own metastore; for statestore that means "our default".
_AIRFLOW_OWN_DEFAULT = ("state_store", "backend", "airflow.state.metastore.MetastoreBackend")
_ALIASES = {("workers", "state_store_backend"): ("workers", "state_backend")}
_SECRET_KEY = re.compile(r"password|passwd|secret|token|credential|private_key|access_key|api_key", re.I)
_URL_PASSWORD = re.compile(r"(//[^/:@\s]*:)([^@/\s]+)(@)")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def statestore_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$STATESTORE_HOME``, default ``~/.statestore``."""
    env = os.environ if environ is None else environ
    return Path(env.get("STATESTORE_HOME") or Path.home() / ".statestore").expanduser()


def mask_secret(key: str, value: str) -> str:
    """Hide a secret setting entirely, and the password inside any URL-valued setting."""
    if value and _SECRET_KEY.search(key):
        return "***"
    return _URL_PASSWORD.sub(r"\1***\3", value)


@dataclass(frozen=True)
class Setting:
    """One effective setting and where it came from (``env STATESTORE__X__Y``, ``/path/file``, ``default``)."""

    section: str
    key: str
    value: str
    source: str

    @property
    def display_value(self) -> str:
        """The value with secrets masked, safe to print or log."""
        return mask_secret(self.key, self.value)


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
        """The effective setting for ``section.key`` with its source, or None when unset and no default."""
        section, key = section.lower(), key.lower()
        for sec, k in ((section, key), *[a for a, target in _ALIASES.items() if target == (section, key)]):
            found = self._lookup(sec, k)
            if found is not None:
                return Setting(section, key, *found)
        default = DEFAULTS.get(section, {}).get(key, fallback)
        return None if default is None else Setting(section, key, default, "default")

    def _lookup(self, section: str, key: str) -> tuple[str, str] | None:
        if section in self._explicit and key in self._explicit[section]:
            return self._explicit[section][key], "code"
        if self._airflow is not None:
            value = self._airflow.get(section, key, fallback=None)
            if value is None or (section, key, value) == _AIRFLOW_OWN_DEFAULT:
                return None
            return str(value), f"airflow configuration [{section}] {key}"
        env = _env_name(section, key)
        if env in self._environ:
            return self._environ[env], f"environment variable {env}"
        if self._file.has_option(section, key):
            return self._file.get(section, key), f"{self.path} [{section}] {key}"
        return None

    def get(self, section: str, key: str, fallback: str | None = None) -> str | None:
        """The string value of ``section.key`` (None when unset and no fallback)."""
        found = self.setting(section, key, fallback)
        return None if found is None else found.value

    def getint(self, section: str, key: str, fallback: int | None = None, *, minimum: int | None = None) -> int:
        """An integer setting; a non-integer or one below ``minimum`` raises ``ConfigurationError``."""
        found = self.setting(section, key, None if fallback is None else str(fallback))
        if found is None:
            raise ConfigurationError(f"[{section}] {key} is not set; set it in {self.describe_sources(section, key)}")
        try:
            number = int(found.value.strip())
        except ValueError:
            raise ConfigurationError(
                f"[{section}] {key} must be an integer, got {found.display_value!r} (from {found.source})"
            ) from None
        if minimum is not None and number < minimum:
            raise ConfigurationError(f"[{section}] {key} must be >= {minimum}, got {number} (from {found.source})")
        return number

    def getfloat(self, section: str, key: str, fallback: float | None = None) -> float:
        """A float setting; anything else raises ``ConfigurationError``."""
        found = self.setting(section, key, None if fallback is None else str(fallback))
        if found is None:
            raise ConfigurationError(f"[{section}] {key} is not set; set it in {self.describe_sources(section, key)}")
        try:
            return float(found.value.strip())
        except ValueError:
            raise ConfigurationError(
                f"[{section}] {key} must be a number, got {found.display_value!r} (from {found.source})"
            ) from None

    def getbool(self, section: str, key: str, fallback: bool | None = None) -> bool:
        """A boolean setting (true/false, yes/no, on/off, 1/0); anything else raises ``ConfigurationError``."""
        found = self.setting(section, key, None if fallback is None else str(fallback))
        if found is None:
            raise ConfigurationError(f"[{section}] {key} is not set; set it in {self.describe_sources(section, key)}")
        text = found.value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigurationError(
            f"[{section}] {key} must be true or false, got {found.display_value!r} (from {found.source})"
        )

    def section(self, section: str) -> dict[str, Setting]:
        """Every setting known for ``section`` (defaults, file, environment, Airflow), by key."""
        section = section.lower()
        keys = set(DEFAULTS.get(section, {})) | set(self._explicit.get(section, {}))
        if self._file.has_section(section):
            keys |= set(self._file.options(section))
        prefix = f"STATESTORE__{section.upper()}__"
        keys |= {name[len(prefix) :].lower() for name in self._environ if name.startswith(prefix)}
        if self._airflow is not None and self._airflow.has_section(section):
            keys |= {k.lower() for k in self._airflow.getsection(section) or {}}
        settings = {k: self.setting(section, k) for k in sorted(keys)}
        return {k: s for k, s in settings.items() if s is not None}

    def sections(self) -> list[str]:
        """Names of every section with at least one setting from any source."""
        names = set(DEFAULTS) | set(self._explicit) | set(self._file.sections())
        names |= {
            n.split("__")[1].lower() for n in self._environ if n.startswith("STATESTORE__") and n.count("__") >= 2
        }
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

    @property
    def default_retention_days(self) -> int:
        """``[state_store] default_retention_days`` (0 = never expire)."""
        return self.getint("state_store", "default_retention_days", minimum=0)

    @property
    def clear_on_success(self) -> bool:
        """``[state_store] clear_on_success``."""
        return self.getbool("state_store", "clear_on_success")

    @property
    def cleanup_batch_size(self) -> int:
        """``[state_store] state_cleanup_batch_size`` (0 = one statement)."""
        return self.getint("state_store", "state_cleanup_batch_size", minimum=0)

    @property
    def max_value_storage_bytes(self) -> int:
        """``[state_store] max_value_storage_bytes`` (0 = no limit)."""
        return self.getint("state_store", "max_value_storage_bytes", minimum=0)

    def _validate(self) -> None:
        self.default_retention_days  # noqa: B018 - each property validates its setting
        self.clear_on_success  # noqa: B018
        self.cleanup_batch_size  # noqa: B018
        self.max_value_storage_bytes  # noqa: B018


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the effective configuration (Airflow's inside Airflow; else file + environment)."""
    env = os.environ if environ is None else environ
    airflow = _airflow_conf() if path is None and environ is None else None
    if airflow is not None:
        return Config(airflow_conf=airflow, environ=env)
    config_path = Path(path or env.get("STATESTORE_CONFIG") or statestore_home(env) / "statestore.cfg").expanduser()
    return Config(path=config_path, environ=env)
