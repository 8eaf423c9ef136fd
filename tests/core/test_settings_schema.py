"""Settings as a schema: declared once per backend, and read by constructors, ``state-store config`` and typo checks."""

from __future__ import annotations

import inspect
import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest

from statestore.core import Config, ConfigurationError
from statestore.core.config import ConfigurationWarning, declared_settings, load_config
from statestore.core.plugins import load_backend, registry
from statestore.core.settings import SettingSpec, resolve

SPECS = (
    SettingSpec("count", int, 3, "how many", minimum=1, maximum=9),
    SettingSpec("ratio", float, 0.5, "a fraction"),
    SettingSpec("flag", bool, False, "a flag"),
    SettingSpec("target", str, None, "where", required=True),
    SettingSpec("mode", str, "fast", "how", choices=("fast", "safe")),
    SettingSpec("label", str, "x", "kept as written, even empty"),
    SettingSpec("token", str, None, "a secret", secret=True),
)


def settings(section: dict[str, str], **given: Any) -> dict[str, Any]:
    return resolve(Config.from_dict({"statestore_t": section}), "statestore_t", SPECS, given, owner="T")


def test_keyword_beats_configuration_beats_default() -> None:
    values = settings({"target": " t ", "count": "4", "flag": "yes", "mode": "SAFE"}, count=7)
    assert values == {
        "count": 7,
        "ratio": 0.5,
        "flag": True,
        "target": "t",
        "mode": "safe",
        "label": "x",
        "token": None,
    }
    values = settings({"target": "t"}, ratio=2, flag=True, target="kw")
    assert (values["ratio"], values["flag"], values["target"]) == (2.0, True, "kw")


def test_empty_text_means_the_default_except_for_plain_text() -> None:
    values = settings({"target": "t", "count": "", "flag": " ", "mode": "", "label": "", "token": ""})
    assert (values["count"], values["flag"], values["mode"], values["label"], values["token"]) == (
        3,
        False,
        "fast",
        "",
        None,
    )


@pytest.mark.parametrize(
    ("section", "given", "message"),
    [
        (
            {"target": ""},
            {},
            r"T needs a target: pass target=\.\.\. or set the environment variable STATESTORE__STATESTORE_T__TARGET",
        ),
        ({"count": "many"}, {}, r"^\[statestore_t\] count must be an integer, got 'many' \(from code\)$"),
        ({"count": "0"}, {}, r"^\[statestore_t\] count must be >= 1, got 0 \(from code\)$"),
        ({"count": "10"}, {}, r"^\[statestore_t\] count must be <= 9, got 10 \(from code\)$"),
        ({"ratio": "half"}, {}, r"^\[statestore_t\] ratio must be a number, got 'half'"),
        ({"flag": "maybe"}, {}, r"^\[statestore_t\] flag must be true or false, got 'maybe'"),
        ({"mode": "slow"}, {}, r"^\[statestore_t\] mode must be one of fast, safe, got 'slow'"),
        ({}, {"count": 0}, r"^T: count must be >= 1, got 0$"),
        ({}, {"count": True}, r"^T: count must be an integer, got True$"),
        ({}, {"count": 2.5}, r"^T: count must be an integer, got 2\.5$"),
        ({}, {"target": 5}, r"^T: target must be a string, got 5$"),
        ({}, {"mode": "Slow"}, r"^T: mode must be one of fast, safe, got 'slow'$"),
    ],
)
def test_bad_values_say_which_setting_what_and_where(
    section: dict[str, str], given: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        settings({"target": "t", **section}, **given)


def test_secrets_never_appear_in_errors() -> None:
    spec = SettingSpec("pin", int, None, "a secret number", secret=True)
    with pytest.raises(ConfigurationError) as info:
        resolve(Config.from_dict({"s": {"pin": "hunter2"}}), "s", (spec,), {}, owner="T")
    assert str(info.value) == "[s] pin must be an integer, got '***' (from code)"


def test_undeclared_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="T got keyword arguments it does not declare as settings: colour"):
        settings({"target": "t"}, colour="red")


def test_a_check_needs_the_rule_it_prints() -> None:
    with pytest.raises(TypeError, match="a check needs the rule"):
        SettingSpec("n", int, 1, check=lambda n: n > 0)
    with pytest.raises(TypeError, match="type must be str, int, float or bool"):
        SettingSpec("n", list)


@pytest.mark.parametrize(
    ("name", "location"), [("s3", "bucket"), ("gcs", "bucket"), ("redis", None), ("local", "path")]
)
def test_each_backend_declares_its_settings_once(name: str, location: str | None) -> None:
    """The class resolves the very tuple its plugin announces, and every constructor keyword is declared in it."""
    backend_class = load_backend(name)
    (spec,) = registry().specs[name]
    assert backend_class.settings is spec.settings  # type: ignore[attr-defined]
    names = [s.name for s in spec.settings or ()]
    assert len(names) == len(set(names))
    keywords = set(inspect.signature(backend_class.__init__).parameters) - {"self", "config"}
    assert keywords <= set(names), keywords - set(names)
    if location:
        assert names[0] == location
    assert all(s.doc and "\n" not in s.doc for s in spec.settings or ()), "every setting has a one-line doc"


def test_every_declared_key_is_known_and_a_typo_of_each_is_named(tmp_path: Path) -> None:
    plugin_sections = {s: specs for s, specs in declared_settings().items() if s.startswith("statestore_") and specs}
    assert {"statestore_s3", "statestore_redis", "statestore_gcs", "statestore_local"} <= set(plugin_sections)
    lines = [f"[{section}]\n" + "".join(f"{key} = 1\n" for key in specs) for section, specs in plugin_sections.items()]
    path = tmp_path / "statestore.cfg"
    path.write_text("".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigurationWarning)
        load_config(path, environ={})
    path.write_text("[statestore_redis]\nsentinel_pasword = x\n[statestore_s3]\nendpoint = x\n")
    with pytest.warns(ConfigurationWarning) as caught:
        load_config(path, environ={})
    assert sorted(str(w.message) for w in caught) == [
        f"unknown key [statestore_redis] sentinel_pasword in {path}; "
        "did you mean [statestore_redis] sentinel_password?",
        f"unknown key [statestore_s3] endpoint in {path}; did you mean [statestore_s3] endpoint_url?",
    ]


def test_config_lists_plugin_defaults_and_the_effective_metastore_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from statestore.core.cli import main

    monkeypatch.setenv("STATESTORE_HOME", str(tmp_path))
    monkeypatch.delenv("STATESTORE_CONFIG", raising=False)
    for name in [n for n in os.environ if n.startswith("STATESTORE__")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STATESTORE__STATESTORE_REDIS__PASSWORD", "hunter2")
    monkeypatch.setenv("STATESTORE__STATESTORE_S3__AWS_SECRET_ACCESS_KEY", "hunter3")
    assert main(["config", "--json"]) == 0
    rows = {(r["section"], r["key"]): r for r in json.loads(capsys.readouterr().out)["settings"]}
    assert rows["state_store", "sql_alchemy_conn"] == {
        "section": "state_store",
        "key": "sql_alchemy_conn",
        "value": f"sqlite:///{tmp_path / 'statestore.db'}",
        "source": "default",
    }
    assert rows["statestore_redis", "url"]["value"] == "redis://127.0.0.1:6379/0"
    assert rows["statestore_s3", "max_attempts"] == {
        "section": "statestore_s3",
        "key": "max_attempts",
        "value": "5",
        "source": "default",
    }
    assert rows["statestore_gcs", "timeout"]["value"] == "60.0"
    assert rows["statestore_local", "compression"]["value"] == "none"
    assert rows["statestore_redis", "password"]["value"] == "***"
    assert rows["statestore_s3", "aws_secret_access_key"]["value"] == "***"
    assert ("statestore_s3", "bucket") not in rows, "a setting with no value and no default is not listed"
    assert [k for s, k in rows if s == "statestore_redis"][:3] == ["url", "key_prefix", "password"]

    monkeypatch.setenv("STATESTORE__STATE_STORE__SQL_ALCHEMY_CONN", "postgresql+psycopg://u:hunter4@db/state")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "postgresql+psycopg://u:***@db/state" in out
    assert "hunter" not in out


def test_a_declared_secret_is_masked_whatever_its_name() -> None:
    config = Config.from_dict({"statestore_s3": {"aws_access_key_id": "AKIDEXAMPLE"}})
    assert config.section("statestore_s3")["aws_access_key_id"].display_value == "***"
    assert config.setting("statestore_s3", "aws_access_key_id").secret  # type: ignore[union-attr]
    assert not config.setting("statestore_s3", "bucket", "b").secret  # type: ignore[union-attr]


def test_inside_airflow_defaults_are_defaults_and_cmd_variants_are_known() -> None:
    """Airflow hands back our provider defaults and its own empty defaults: both are shown as ``default``;
    ``<key>_CMD``/``_SECRET`` of a sensitive setting (Airflow's indirections) are not typos."""
    import configparser

    from statestore.core.config import unknown_settings

    class AirflowLikeConf(configparser.ConfigParser):
        def getsection(self, section: str) -> dict[str, str] | None:
            return dict(self[section]) if self.has_section(section) else None

    conf = AirflowLikeConf(interpolation=None)
    conf.read_string(
        "[workers]\nstate_store_backend = \n[statestore_redis]\nurl = redis://127.0.0.1:6379/0\npassword_cmd = x\n"
        "[statestore_s3]\nbucket_cmd = x\n"
    )
    environ = {"AIRFLOW__STATESTORE_REDIS__PASSWORD_SECRET": "k", "AIRFLOW__STATESTORE_REDIS__URL_CMD": "x"}
    config = Config(airflow_conf=conf, environ=environ)
    assert config.setting("statestore_redis", "url").source == "default"  # type: ignore[union-attr]
    assert config.setting("workers", "state_backend").source == "default"  # type: ignore[union-attr]
    assert "password_cmd" not in config.section("statestore_redis")
    assert unknown_settings(config) == [
        "unknown key [statestore_s3] bucket_cmd in the Airflow configuration; did you mean [statestore_s3] bucket?"
    ]
