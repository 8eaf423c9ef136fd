"""Every fenced block of README.md and packages/*/README.md runs as written, or is checked where it cannot run.

* ``python``: the blocks of one README run in order in one namespace, as a reader pasting them into one
  session would, each in a fresh ``STATESTORE_HOME`` and working directory with no ``STATESTORE__``
  or ``AIRFLOW__`` variables (so on the embedded defaults).
* ``ini`` and ``dotenv`` (``STATESTORE__``/``AIRFLOW__`` variables): no value carries an inline comment,
  and ``state-store config --check`` on the block says ``configuration ok`` with no warning (it loads
  the block through statestore's configuration loader and builds the backends it names).
  ``tests/airflow/test_airflow_readmes.py`` also reads them with Airflow's own parser.
* ``sh``: ``state-store`` commands run (against moto or fake-gcs-server in the S3 and GCS READMEs),
  ``python -m``/``-c`` commands run; ``pip install`` must name existing package paths and extras,
  core first; ``nox``, ``pytest`` and benchmark commands must name existing sessions and paths (they are
  the suite itself and are not run here); ``state-store --airflow`` commands are parsed here and run
  by the Airflow test.
* ``text`` (untagged): every ``state-store`` synopsis names real commands and options.
* ``json``, ``toml``: parse; ``crontab``: five schedule fields and a ``state-store`` command that parses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from statestore.core.cli import build_parser, main

from .gcs.conftest import gcs_bucket, gcs_emulator  # noqa: F401 - fixtures, used by name
from .readmes import ROOT, Block, as_ini, blocks, blocks_of, inline_comments, settings
from .s3.conftest import aws_environment, bucket, moto_endpoint, s3_client  # noqa: F401 - fixtures, used by name

LANGUAGES = {"python", "ini", "dotenv", "sh", "text", "json", "toml", "crontab"}
_NOX_SESSIONS = set(re.findall(r"@nox\.session\s*\ndef (\w+)\(", (ROOT / "noxfile.py").read_text()))


def _ids(selected: list[Block]) -> list[Any]:
    return [pytest.param(block, id=block.id) for block in selected]


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh STATESTORE_HOME, working and temporary directory; no STATESTORE__/AIRFLOW__ variables.

    Returns the directory. What blocks leave in the temporary directory (``state-store demo`` keeps its
    run for inspection) goes with pytest's own.
    """
    for variable in list(os.environ):
        if variable.startswith(("STATESTORE", "AIRFLOW")):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("STATESTORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def services(request: pytest.FixtureRequest) -> Callable[[Block], dict[str, str]]:
    """``services(block)``: the settings a package README's ``state-store`` commands assume (S3 or GCS emulator)."""

    def settings_for(block: Block) -> dict[str, str]:
        package = block.readme.parent.name
        if package == "backend-s3":
            return {
                "STATESTORE__STATESTORE_S3__BUCKET": request.getfixturevalue("bucket"),
                "STATESTORE__STATESTORE_S3__ENDPOINT_URL": request.getfixturevalue("moto_endpoint"),
            }
        if package == "backend-gcs":
            return {
                "STORAGE_EMULATOR_HOST": request.getfixturevalue("gcs_emulator").url,
                "STATESTORE__STATESTORE_GCS__BUCKET": request.getfixturevalue("gcs_bucket"),
            }
        return {}

    return settings_for


def test_every_block_has_a_language_this_test_knows() -> None:
    unknown = [f"{b.id}: ```{b.language}" for b in blocks() if b.language not in LANGUAGES]
    # text is for layouts and synopses; anything a reader would run or paste has its language, so it is tested
    assert not unknown, f"tag each block with one of {sorted(LANGUAGES)} (or teach this test the new one): {unknown}"


def test_blocks_are_found_with_their_language_indent_and_skip_reason(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "text\n```ini\n[a]\nb = 1\n```\n* item:\n  ```sh\n  echo hi\n  ```\n"
        "<!-- readme-test: skip needs a real bucket -->\n````\n```\n````\n",
        encoding="utf-8",
    )
    found = [(b.line, b.language, b.text, b.skip) for b in blocks_of(readme)]
    assert found == [
        (2, "ini", "[a]\nb = 1\n", None),
        (7, "sh", "echo hi\n", None),
        (11, "", "```\n", "needs a real bucket"),
    ]


# -- python ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _ids(blocks("python")))
def test_python_block_runs(block: Block, clean_env: Path) -> None:
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    namespace: dict[str, Any] = {"__name__": "readme"}
    earlier = [b for b in blocks("python") if b.readme == block.readme and b.line < block.line and not b.skip]
    for previous in earlier:
        try:
            _run_python(previous, namespace)
        except Exception as exc:
            pytest.fail(f"an earlier block of the same README, {previous.id}, fails: {exc!r}", pytrace=False)
    _run_python(block, namespace)


def _run_python(block: Block, namespace: dict[str, Any]) -> None:
    """Run ``block`` with the README's own file name and line numbers, so a traceback points into the README."""
    exec(compile("\n" * block.line + block.text, str(block.readme), "exec"), namespace)


# -- configuration --------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", _ids(blocks("ini", "dotenv")))
def test_configuration_block_loads_without_warnings(
    block: Block, clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    values = settings(block)
    assert values, f"{block.id} sets nothing"
    assert not inline_comments(values), (
        f"{block.id}: neither statestore's parser nor Airflow's strips a comment after a value; put it on a line "
        f"of its own: {inline_comments(values)}"
    )
    path = clean_env / "statestore.cfg"
    path.write_text(block.text if block.language == "ini" else as_ini(values), encoding="utf-8")
    monkeypatch.setenv("STATESTORE_CONFIG", str(path))
    status = main(["config", "--check"])
    out, err = capsys.readouterr()
    assert (status, out, err) == (0, "configuration ok\n", ""), f"{block.id}: state-store config --check:\n{out}{err}"


# -- shell ----------------------------------------------------------------------------------------------


def _commands(text: str) -> Iterator[list[str]]:
    """Each command of a shell block as words (``&&`` splits; ``#`` comments and ``\\`` continuations handled)."""
    for line in text.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word != "&&":
                command.append(word)
            elif command:
                yield command
                command = []


def _split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words[0].partition("=")
        env[name] = value
        words = words[1:]
    return env, words


def _check_pip(args: list[str]) -> None:
    """``pip install`` names existing package directories (with extras they declare), core first, or a name."""
    assert args[:1] == ["install"], f"only `pip install` is known here, got pip {shlex.join(args)}"
    targets = [a for a in args[1:] if not a.startswith("-")]
    assert targets, "pip install of nothing"
    local: list[str] = []
    for target in targets:
        if not target.startswith(("./", "/", "packages/")):
            requirement = Requirement(target)  # a released distribution (PyPI), or a tool such as nox
            if requirement.name.startswith("statestore-"):
                packages = {p.parent.name: p for p in ROOT.glob("packages/*/pyproject.toml")}
                names = {_project(p)["name"] for p in packages.values()}
                assert requirement.name in names, f"{target}: no package of this repository is called that"
            continue
        path, _, extras = target.partition("[")
        pyproject = ROOT / path / "pyproject.toml"
        assert pyproject.is_file(), f"{target}: {path} is not a package directory of this repository"
        declared = set(_project(pyproject).get("optional-dependencies", {}))
        missing = {e for e in extras.rstrip("]").split(",") if e} - declared
        assert not missing, f"{target}: {path} declares no extra {sorted(missing)} (it has {sorted(declared)})"
        project = _project(pyproject)
        needs_core = any(Requirement(d).name == "statestore-core" for d in project.get("dependencies", []))
        if needs_core:
            assert "statestore-core" in local, (
                f"{target}: needs statestore-core, which is not on PyPI yet: install ./packages/core in the same "
                f"command, before it"
            )
        local.append(project["name"])


def _project(pyproject: Path) -> dict[str, Any]:
    import tomllib

    project: dict[str, Any] = tomllib.loads(pyproject.read_text())["project"]
    return project


def _check_nox(args: list[str]) -> None:
    """``nox``, ``nox -s NAME [-- ...]``: the sessions exist; ``bench -- NAME`` names a benchmark."""
    own, _, posargs = " ".join(args).partition("--")
    words = own.split()
    sessions = [words[i + 1] for i, word in enumerate(words) if word in ("-s", "--session") and i + 1 < len(words)]
    assert set(sessions) <= _NOX_SESSIONS, f"nox has no session {sorted(set(sessions) - _NOX_SESSIONS)}"
    if sessions == ["bench"]:
        name = posargs.split()[0]
        assert (ROOT / "benchmarks" / f"bench_{name}.py").is_file(), f"no benchmark benchmarks/bench_{name}.py"


def _parse_state_store(args: list[str]) -> None:
    """The words of a ``state-store`` command are a valid command line (parsed, not run)."""
    try:
        build_parser().parse_args(args)
    except SystemExit as exit_:
        pytest.fail(f"state-store {shlex.join(args)} does not parse (exit {exit_.code})", pytrace=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_paths(args: list[str]) -> None:
    missing = [a for a in args if not a.startswith("-") and not (ROOT / a).exists()]
    assert not missing, f"no such path {missing}"


# The suite's own tools: checked here, not run (they are what runs this test).
_CHECKED: dict[str, Callable[[list[str]], None]] = {"pip": _check_pip, "nox": _check_nox, "pytest": _check_paths}


@pytest.mark.parametrize("block", _ids(blocks("sh")))
def test_shell_block_runs(
    block: Block,
    services: Callable[[Block], dict[str, str]],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if block.skip:
        pytest.skip(f"{block.id}: {block.skip}")
    text = block.text
    if "statestore.gcs.testing" in text:  # its fixed port would collide with other runs on this machine
        text = text.replace("4443", str(_free_port()))
    started: list[int] = []
    try:
        for words in _commands(text):
            env, (program, *args) = _split_env(words)
            where = f"{block.id}: {shlex.join(words)}"
            if program in _CHECKED:
                _CHECKED[program](args)
            elif program == "state-store" and "--airflow" in args:
                _parse_state_store(args)  # run by tests/airflow/test_airflow_readmes.py
            elif program == "state-store":
                with monkeypatch.context() as patch:
                    for name, value in {**services(block), **env}.items():
                        patch.setenv(name, value)
                    status = main(args)
                out, err = capsys.readouterr()
                assert status == 0, f"{where} exited {status}:\n{out}{err}"
            elif program == "python" and args[:1] in (["-m"], ["-c"]):
                out = _python_command(args, env, where)
                started += [int(pid) for pid in re.findall(r"stop it with: kill (\d+)", out)]
            elif program == "python":
                _check_paths(args[:1])  # a benchmark script: checked, not run
            else:
                pytest.fail(f"{where}: no rule for {program!r}; teach this test, or mark the block skipped")
    finally:
        for pid in started:  # a server the block started in the background
            os.kill(pid, signal.SIGTERM)


def _python_command(args: list[str], env: dict[str, str], where: str) -> str:
    """Run ``python ARGS`` in a fresh interpreter with ``env`` added; return its stdout."""
    result = subprocess.run(
        [sys.executable, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{where}:\n{result.stdout}{result.stderr}"
    return result.stdout


# -- the rest -------------------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("block", _ids(blocks("text")))
def test_command_synopses_name_real_commands_and_options(block: Block) -> None:
    root = build_parser()
    for line in block.text.splitlines():
        words = line.partition("#")[0].split()
        if words[:1] != ["state-store"]:
            continue
        parsers = [root]
        for word in (w for w in words[1:] if not w.startswith(("-", "[")) and w != w.upper()):
            choices = [_subcommands(p) for p in parsers]
            if not all(choices):
                break
            names = word.split("|")
            unknown = [n for n in names for c in choices if n not in c]
            assert not unknown, f"{block.id}: {line.strip()!r}: no command {unknown}"
            parsers = [c[n] for n in names for c in choices]
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line.partition("#")[0]):
            refusing = [p.prog for p in parsers if flag not in _options(p) | _options(root)]
            assert not refusing, f"{block.id}: {line.strip()!r}: {', '.join(refusing)} has no option {flag}"


@pytest.mark.parametrize("block", _ids(blocks("json")))
def test_json_block_parses(block: Block) -> None:
    json.loads(block.text)


@pytest.mark.parametrize("block", _ids(blocks("toml")))
def test_toml_block_parses(block: Block) -> None:
    import tomllib

    tomllib.loads(block.text)


@pytest.mark.parametrize("block", _ids(blocks("crontab")))
def test_crontab_block_parses(block: Block) -> None:
    for line in block.text.splitlines():
        fields = line.split(None, 5)
        assert len(fields) == 6, f"{block.id}: {line!r}: five schedule fields and a command"
        assert all(re.fullmatch(r"[\d*/,-]+", f) for f in fields[:5]), f"{block.id}: schedule {fields[:5]}"
        _, words = _split_env(shlex.split(fields[5]))
        words = words[: next((i for i, w in enumerate(words) if ">" in w), len(words))]  # up to a redirection
        assert Path(words[0]).name == "state-store", f"{block.id}: {words[0]} is not state-store"
        _parse_state_store(words[1:])
