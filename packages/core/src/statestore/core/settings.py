"""Settings as a schema: each backend declares its settings once, and everything else reads that.

A :class:`SettingSpec` names one key of a section, its type, default, whether it is a secret and a
one-line doc. A backend keeps a tuple of them (``settings`` on the class and on its ``BackendSpec``);
from that one tuple come the constructor's values (:func:`resolve`: keyword argument, else
configuration, else default, then checked), ``state-store config``'s defaults, the warnings
about unknown keys and the Airflow provider metadata (:func:`provider_info`). This module imports
nothing heavy, so plugin modules and Airflow's provider discovery can use it freely.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statestore.core.errors import ConfigurationError

if TYPE_CHECKING:
    from statestore.core.config import Config

__all__ = ["COMPRESSIONS", "SettingSpec", "checked", "object_store_settings", "provider_info", "resolve"]

COMPRESSIONS = ("none", "gzip")
"""Encodings an object store can write (``[statestore_<name>] compression``)."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_AIRFLOW_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean"}
_TYPE_RULES = {
    str: "must be a string",
    int: "must be an integer",
    float: "must be a number",
    bool: "must be true or false",
}


@dataclass(frozen=True)
class SettingSpec:
    """One setting a backend reads from its section: name, type, default, secrecy and what it means.

    ``type`` is ``str``, ``int``, ``float`` or ``bool``; ``default`` None means "unset" (and, with
    ``required``, an error naming where to set it). Checks beyond the type: ``minimum`` and
    ``maximum`` for numbers, ``choices`` (lower-case) for strings, or ``check`` with the ``rule``
    its failure prints (``"must be a positive number of seconds"``). ``secret`` values are never
    shown (Airflow treats them as sensitive); ``url`` marks a URL that may carry a password, which
    Airflow then treats as sensitive too (hidden, masked in its logs, readable from ``…_CMD`` and
    ``…_SECRET``), while statestore shows it with only the password masked.
    """

    name: str
    type: type = str
    default: str | int | float | bool | None = None
    doc: str = ""
    secret: bool = False
    url: bool = False
    required: bool = False
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[str, ...] = ()
    check: Callable[[Any], bool] | None = None
    rule: str = ""

    def __post_init__(self) -> None:
        if self.type not in _TYPE_RULES:
            raise TypeError(f"setting {self.name!r}: type must be str, int, float or bool, got {self.type!r}")
        if self.check is not None and not self.rule:
            raise TypeError(f"setting {self.name!r}: a check needs the rule its failure prints")

    @property
    def text_default(self) -> str | None:
        """The default as configuration text (``False``, ``5``, ``0.05``), None when there is none."""
        if self.default is None:
            return None
        return str(self.default)

    @property
    def describe_rule(self) -> str:
        """What a valid value looks like, as the end of ``[section] key …`` (for errors and docs)."""
        if self.rule:
            return self.rule
        if self.choices:
            return f"must be one of {', '.join(self.choices)}"
        return _TYPE_RULES[self.type]

    def parse(self, text: str) -> Any:
        """Configuration text as this setting's type; ``ValueError`` when it is not one."""
        if self.type is str:
            if self.secret:
                return text
            return text.strip().lower() if self.choices else text.strip()
        value = text.strip()
        if self.type is bool:
            if value.lower() in _TRUE:
                return True
            if value.lower() in _FALSE:
                return False
            raise ValueError(value)
        return self.type(value)

    def coerce(self, given: Any) -> Any:
        """A keyword argument as this setting's type (text is parsed); ``ValueError`` when it is not one."""
        if isinstance(given, str):
            return self.parse(given)
        if self.type is float and isinstance(given, (int, float)) and not isinstance(given, bool):
            return float(given)
        if isinstance(given, self.type) and (self.type is bool or not isinstance(given, bool)):
            return given
        raise ValueError(given)

    def problem(self, value: Any) -> str | None:
        """What is wrong with a parsed ``value`` (the end of ``[section] key …``), or None."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return self.describe_rule
        if self.minimum is not None and value < self.minimum:
            return f"must be >= {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be <= {self.maximum}"
        if self.check is not None and not self.check(value):
            return self.rule
        return None


def object_store_settings(location: SettingSpec) -> tuple[SettingSpec, ...]:
    """``location`` (the bucket, or the local backend's ``path``) and the settings every object store shares."""
    return (
        location,
        SettingSpec("prefix", str, "", "'/'-separated prefix of every object name"),
        SettingSpec(
            "threshold",
            int,
            0,
            "worker role: values under this many UTF-8 bytes stay inline in the server row (0 = always offload)",
            minimum=0,
        ),
        SettingSpec(
            "compression",
            str,
            "none",
            "gzip compresses new objects; each object records its encoding, so changing it never breaks reads",
            choices=COMPRESSIONS,
        ),
    )


def resolve(
    config: Config, section: str, settings: Sequence[SettingSpec], given: Mapping[str, Any], *, owner: str
) -> dict[str, Any]:
    """Every setting's value: the keyword argument in ``given`` unless None, else ``[section]``, else the default.

    Each value is parsed to its type and checked; a bad one raises ``ConfigurationError`` saying
    which setting, what was wrong and where it came from (``owner`` names the class for keyword
    arguments and missing required settings). Secrets are never shown. Configured text that is
    empty means the default for numbers, flags and choices, and None for text without a default
    (an empty ``prefix`` stays an empty prefix).
    """
    unknown = sorted(set(given) - {spec.name for spec in settings})
    if unknown:
        raise TypeError(f"{owner} got keyword arguments it does not declare as settings: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for spec in settings:
        argument = given.get(spec.name)
        if argument is not None:
            values[spec.name] = checked(spec, argument, None, f"{owner}: {spec.name}", spec.coerce)
            continue
        found = config.setting(section, spec.name, spec.text_default)
        text = None if found is None else found.value
        if text is not None and text.strip() == "" and (spec.type is not str or spec.choices):
            text = spec.text_default  # an empty number, flag or choice means the default
        if text is None or (text.strip() == "" and spec.default is None):
            if spec.required:
                raise ConfigurationError(
                    f"{owner} needs a {spec.name}: pass {spec.name}=... or set "
                    f"{config.describe_sources(section, spec.name)}"
                )
            values[spec.name] = None
            continue
        source = None if found is None or found.source == "default" else found.source
        values[spec.name] = checked(spec, text, source, f"[{section}] {spec.name}", spec.parse)
    return values


def checked(spec: SettingSpec, raw: Any, source: str | None, label: str, convert: Callable[[Any], Any]) -> Any:
    """``convert(raw)`` checked against ``spec``; ``ConfigurationError`` naming ``label`` and ``source``."""
    where = "" if source is None else f" (from {source})"
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigurationError(f"{label} {_TYPE_RULES[spec.type]}, got {_shown(spec, raw)!r}{where}") from None
    problem = spec.problem(value)
    if problem is not None:
        raise ConfigurationError(f"{label} {problem}, got {_shown(spec, value)!r}{where}")
    return value


def _shown(spec: SettingSpec, value: Any) -> Any:
    """``value`` as an error may show it: secrets hidden, URL passwords masked."""
    from statestore.core.config import mask_secret

    if spec.secret:
        return "***"
    return mask_secret(spec.name, value) if isinstance(value, str) else value


# -- Airflow provider metadata -----------------------------------------------------------------------------


def provider_info(
    distribution: str, name: str, description: str, sections: Mapping[str, tuple[str, Sequence[SettingSpec]]]
) -> dict[str, Any]:
    """The dict an ``apache_airflow_provider`` entry point returns (Airflow's ``provider_info.schema.json``).

    ``sections`` maps an Airflow section name to its description and settings; each setting
    becomes an option with its type, default (as text), doc and ``sensitive`` flag, so
    ``airflow config list --defaults`` shows them. Reads only this distribution's metadata.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = [version(distribution)]
    except PackageNotFoundError:
        versions = []
    return {
        "package-name": distribution,
        "name": name,
        "description": description,
        "versions": versions,
        "config": {
            section: {"description": text, "options": {spec.name: _airflow_option(spec) for spec in specs}}
            for section, (text, specs) in sections.items()
        },
    }


def _airflow_option(spec: SettingSpec) -> dict[str, Any]:
    """One option of Airflow's configuration description (``config.yml`` shape)."""
    doc = spec.doc
    if spec.choices:
        doc = f"{doc} ({', '.join(spec.choices)})"
    return {
        "description": doc,
        "version_added": None,
        "type": _AIRFLOW_TYPES[spec.type],
        "example": None,
        "default": spec.text_default,
        "sensitive": spec.secret or spec.url,
    }
