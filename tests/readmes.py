"""The fenced code blocks of the repository's READMEs, for the tests that run them.

``tests/test_readmes.py`` runs or checks every block; ``tests/airflow/test_airflow_readmes.py`` reads
the configuration blocks with Airflow's own parser. An HTML comment on the line right before a block,
``<!-- readme-test: skip REASON -->``, makes the tests report REASON instead of running the block.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted(ROOT.glob("packages/*/README.md"))]

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<language>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*skip\s+(?P<reason>.+?)\s*-->\s*$")
# A value that keeps a comment: neither statestore's parser nor Airflow's strips "  # ..." after a value.
_INLINE_COMMENT = re.compile(r"\s[#;]")
_VARIABLE = re.compile(r"^(?P<prefix>STATESTORE|AIRFLOW)__(?P<section>[A-Z0-9_]+?)__(?P<key>[A-Z0-9_]+)=(?P<value>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language (empty when untagged) and its text (fence indent removed)."""

    readme: Path
    line: int
    language: str
    text: str
    skip: str | None

    @property
    def id(self) -> str:
        """``path:line`` of the opening fence, relative to the repository (a pytest id a reader can open)."""
        return f"{self.readme.relative_to(ROOT)}:{self.line}"


def blocks_of(readme: Path) -> list[Block]:
    """The fenced blocks of one Markdown file (fences may be indented, as inside a list item)."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        end = index + 1
        while end < len(lines) and not re.match(rf"^ *{fence[0]}{{{len(fence)},}}\s*$", lines[end]):
            end += 1
        if end == len(lines):
            raise ValueError(f"{readme}:{index + 1}: code block is never closed")
        marker = _MARKER.match(lines[index - 1]) if index else None
        body = "".join(line[indent:] + "\n" for line in lines[index + 1 : end])
        found.append(Block(readme, index + 1, opening["language"], body, marker["reason"] if marker else None))
        index = end + 1
    return found


def blocks(*languages: str) -> list[Block]:
    """Every block of every README (of these languages, if given), in reading order."""
    every = [block for readme in READMES for block in blocks_of(readme)]
    return [block for block in every if not languages or block.language in languages]


def settings(block: Block) -> dict[str, dict[str, str]]:
    """The ``{section: {key: value}}`` an ``ini`` block (or a ``dotenv`` block of ``*__SECTION__KEY=``) sets."""
    if block.language == "dotenv":
        values: dict[str, dict[str, str]] = {}
        for line in block.text.splitlines():
            variable = _VARIABLE.match(line.strip())
            if variable is None:
                raise ValueError(f"{block.id}: {line!r} is not STATESTORE__SECTION__KEY=value or AIRFLOW__...")
            values.setdefault(variable["section"].lower(), {})[variable["key"].lower()] = variable["value"]
        return values
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str.lower  # type: ignore[assignment,method-assign]
    parser.read_string(block.text, source=block.id)
    return {section: dict(parser.items(section, raw=True)) for section in parser.sections()}


def inline_comments(values: dict[str, dict[str, str]]) -> list[str]:
    """``[section] key = value`` for every value that carries a comment after it."""
    return [
        f"[{section}] {key} = {value}"
        for section, keys in values.items()
        for key, value in keys.items()
        if _INLINE_COMMENT.search(value)
    ]


def as_ini(values: dict[str, dict[str, str]]) -> str:
    """``values`` written back as an INI file."""
    return "".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
        for section, keys in values.items()
    )
