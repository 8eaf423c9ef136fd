"""Each package README's settings table lists exactly the declared settings, with the declared defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from statestore.core.config import CORE_SETTINGS
from statestore.core.settings import SettingSpec

ROOT = Path(__file__).resolve().parents[2]
_ROW = re.compile(r"^\| (?P<names>`[^|]+`) \| (?P<defaults>[^|]+) \|", re.MULTILINE)


def documented(readme: Path, heading: str) -> dict[str, str]:
    """``name -> default cell`` from the first table after ``heading`` (rows like ``| `a`, `b` | `1`, `2` | …``)."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(heading)
    table = text[text.index("\n|", start) + 1 :]
    table = table[: table.find("\n\n")]
    rows: dict[str, str] = {}
    for match in _ROW.finditer(table):
        names = [n.strip().strip("`").split("] ")[-1] for n in match["names"].split(",")]
        cells = [c.strip() for c in match["defaults"].split(",")] if len(names) > 1 else [match["defaults"].strip()]
        cells = cells if len(cells) == len(names) else cells[:1] * len(names)
        rows.update(zip(names, cells, strict=True))
    return rows


def check_default(spec: SettingSpec, cell: str) -> None:
    """A backticked default equals the declared one; prose means "none" or "(required)"."""
    literal = re.fullmatch(r"`([^`]*)`(?: \(.*\))?", cell)
    if spec.required:
        assert cell == "(required)", f"{spec.name}: documented default {cell!r}, declared required"
    elif literal:
        assert spec.default is not None, f"{spec.name}: documented default {cell!r}, declared none"
        assert spec.parse(literal[1]) == spec.parse(str(spec.default)), f"{spec.name}: {cell!r} != {spec.default!r}"
    elif cell == "empty":
        assert spec.default == "", f"{spec.name}: documented empty, declared {spec.default!r}"
    else:
        assert spec.default in (None, ""), f"{spec.name}: documented {cell!r}, declared {spec.default!r}"


def _plugin(module: str) -> tuple[SettingSpec, ...]:
    import importlib

    settings: tuple[SettingSpec, ...] = importlib.import_module(module).SETTINGS
    return settings


@pytest.mark.parametrize(
    ("readme", "heading", "settings"),
    [
        ("packages/backend-s3/README.md", "## Configuration", "statestore.s3.plugin"),
        ("packages/backend-redis/README.md", "## Configuration", "statestore.redis.plugin"),
        ("packages/backend-gcs/README.md", "## Configuration", "statestore.gcs.plugin"),
        ("packages/core/README.md", "[statestore_local]` settings", "statestore.core.builtin_plugins:LOCAL"),
        ("packages/core/README.md", "## Configuration", "core"),
    ],
)
def test_readme_settings_table_matches_the_schema(readme: str, heading: str, settings: str) -> None:
    if settings == "core":
        specs = tuple(spec for group in CORE_SETTINGS.values() for spec in group)
    elif settings.endswith(":LOCAL"):
        from statestore.core.builtin_plugins import LOCAL_SETTINGS

        specs = LOCAL_SETTINGS
    else:
        specs = _plugin(settings)
    rows = documented(ROOT / readme, heading)
    assert list(rows) == [spec.name for spec in specs], "the table lists every declared setting, in declared order"
    for spec in specs:
        check_default(spec, rows[spec.name])
