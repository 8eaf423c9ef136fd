"""Configuration: file, environment, aliases, validation, typed getters, masking and Airflow's configuration."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest

from statestore.core.config import Config, load_config, mask_secret
from statestore.core.errors import ConfigurationError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "statestore.cfg"
    path.write_text(text)
    return path


class AirflowLikeConf(configparser.ConfigParser):
    """The slice of Airflow's ``conf`` API statestore uses, backed by a real ConfigParser."""

    def getsection(self, section: str) -> dict[str, str] | None:
        return dict(self[section]) if self.has_section(section) else None


def airflow_conf(text: str) -> AirflowLikeConf:
    conf = AirflowLikeConf(interpolation=None)
    conf.read_string(text)
    return conf


def test_file_values_and_their_source(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[state_store]\nbackend = memory\ndefault_retention_days = 7\n[statestore_s3]\nbucket = b1\n"
    )
    config = load_config(path, environ={})
    assert (config.backend, config.default_retention_days, config.clear_on_success) == ("memory", 7, False)
    assert config.setting("state_store", "backend").source == f"{path} [state_store] backend"  # type: ignore[union-attr]
    assert config.setting("state_store", "clear_on_success").source == "default"  # type: ignore[union-attr]
    assert config.get("statestore_s3", "bucket") == "b1"
    assert config.file_exists
    assert not config.from_airflow


def test_default_locations_follow_statestore_home(tmp_path: Path) -> None:
    config = load_config(environ={"STATESTORE_HOME": str(tmp_path)})
    assert config.path == tmp_path / "statestore.cfg"
    assert not config.file_exists
    assert config.sql_alchemy_conn == f"sqlite:///{tmp_path / 'statestore.db'}"
    write(tmp_path, "[state_store]\nbackend = local\n")
    assert load_config(environ={"STATESTORE_HOME": str(tmp_path)}).backend == "local"
    other = tmp_path / "other.cfg"
    other.write_text("[state_store]\nbackend = memory\n")
    assert load_config(environ={"STATESTORE_HOME": str(tmp_path), "STATESTORE_CONFIG": str(other)}).backend == "memory"


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[state_store]\nbackend = memory\nclear_on_success = false\n")
    config = load_config(
        path, environ={"STATESTORE__STATE_STORE__BACKEND": "local", "STATESTORE__STATESTORE_S3__BUCKET": "b"}
    )
    assert config.backend == "local"
    assert config.setting("state_store", "backend").source == "environment variable STATESTORE__STATE_STORE__BACKEND"  # type: ignore[union-attr]
    assert config.clear_on_success is False
    assert config.section("statestore_s3")["bucket"].value == "b"
    assert "statestore_s3" in config.sections()


def test_worker_backend_alias(tmp_path: Path) -> None:
    path = write(tmp_path, "[workers]\nstate_store_backend = local\n")
    config = load_config(path, environ={})
    assert config.worker_backend == "local"
    assert list(config.section("workers")) == ["state_backend"], "the alias is shown under its canonical name"
    both = write(tmp_path, "[workers]\nstate_store_backend = local\nstate_backend = memory\n")
    assert load_config(both, environ={}).worker_backend == "memory", "the canonical name wins within one source"
    env = {"STATESTORE__WORKERS__STATE_STORE_BACKEND": "s3"}
    assert load_config(both, environ=env).worker_backend == "s3", "an alias in the environment beats the file"
    assert load_config(tmp_path / "missing.cfg", environ={}).worker_backend is None


@pytest.mark.parametrize(
    ("file_text", "environ", "where"),
    [
        ("[state_store]\ndefault_retention_days = -1\n", {}, "(from {path} [state_store] default_retention_days)"),
        (
            "",
            {"STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS": "-3"},
            "(from environment variable STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS)",
        ),
    ],
    ids=["file", "environment"],
)
def test_negative_retention_is_rejected_at_load(
    tmp_path: Path, file_text: str, environ: dict[str, str], where: str
) -> None:
    path = write(tmp_path, file_text)
    with pytest.raises(ConfigurationError) as info:
        load_config(path, environ=environ)
    message = str(info.value)
    assert message.startswith("[state_store] default_retention_days must be >= 0, got -")
    assert message.endswith(where.format(path=path))


@pytest.mark.parametrize("days", ["36526", "4000000"])
def test_retention_beyond_100_years_is_rejected_at_load(days: str) -> None:
    with pytest.raises(ConfigurationError, match=f"default_retention_days must be <= 36525, got {days}"):
        Config.from_dict({"state_store": {"default_retention_days": days}})
    assert Config.from_dict({"state_store": {"default_retention_days": "36525"}}).default_retention_days == 36525


def test_typed_getter_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "[statestore_x]\ncount = many\nflag = maybe\nratio = half\n")
    config = load_config(path, environ={})
    with pytest.raises(ConfigurationError) as info:
        config.getint("statestore_x", "count")
    assert str(info.value) == f"[statestore_x] count must be an integer, got 'many' (from {path} [statestore_x] count)"
    with pytest.raises(ConfigurationError, match=r"\[statestore_x\] flag must be true or false, got 'maybe'"):
        config.getbool("statestore_x", "flag")
    with pytest.raises(ConfigurationError, match=r"\[statestore_x\] ratio must be a number, got 'half'"):
        config.getfloat("statestore_x", "ratio")
    with pytest.raises(ConfigurationError) as info:
        config.getint("statestore_x", "absent")
    assert str(info.value) == (
        f"[statestore_x] absent is not set; set it in {path} [statestore_x] absent "
        "or the environment variable STATESTORE__STATESTORE_X__ABSENT"
    )
    assert config.getint("statestore_x", "absent", 5) == 5
    assert config.getbool("statestore_x", "absent", True) is True
    assert config.getfloat("statestore_x", "absent", 0.5) == 0.5


def test_invalid_core_settings_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="clear_on_success must be true or false, got 'sometimes'"):
        load_config(write(tmp_path, "[state_store]\nclear_on_success = sometimes\n"), environ={})
    with pytest.raises(ConfigurationError, match="cannot parse configuration file"):
        load_config(write(tmp_path, "no section header\n"), environ={})


def test_secrets_are_masked(tmp_path: Path) -> None:
    assert mask_secret("secret_access_key", "AKIAXYZ") == "***"
    assert mask_secret("password", "hunter2") == "***"
    assert mask_secret("url", "redis://:hunter2@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert mask_secret("sql_alchemy_conn", "postgresql://u:hunter2@h/db") == "postgresql://u:***@h/db"
    assert mask_secret("endpoint", "https://h/x?sig=hunter2&a=1") == "https://h/x?sig=***&a=1"
    assert mask_secret("bucket", "plain") == "plain"
    path = write(tmp_path, "[statestore_x]\napi_token = hunter2\nport = hunter2\n")
    config = load_config(path, environ={})
    assert config.section("statestore_x")["api_token"].display_value == "***"
    assert config.section("statestore_x")["api_token"].value == "hunter2"
    with pytest.raises(ConfigurationError) as info:
        config.getint("statestore_x", "api_token")
    assert "hunter2" not in str(info.value)
    assert "'***'" in str(info.value)


SECRET = "p@ss:w/rd%40x"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:hunter@2SecretTail@host:6379/0", "redis://:***@host:6379/0"),
        (f"redis://user:{SECRET}@host/0", "redis://user:***@host/0"),
        (f"rediss://:{SECRET}@h:6380", "rediss://:***@h:6380"),
        (
            f"Error 111 connecting to redis://:{SECRET}@127.0.0.1:1/0. Refused.",
            "Error 111 connecting to redis://:***@1",
        ),
        (
            "postgresql+psycopg://u@h/db?password=q1&sslmode=require",
            "postgresql+psycopg://u@h/db?password=***&sslmode=require",
        ),
        (
            "https://h/o?X-Amz-Security-Token=t1&X-Amz-Signature=s1&sslpassword=p1&api_key=k1&auth_token=a1&x=1",
            "https://h/o?X-Amz-Security-Token=***&X-Amz-Signature=***&sslpassword=***&api_key=***&auth_token=***&x=1",
        ),
        ("redis://127.0.0.1:6379/0 key_prefix=statestore:", "redis://127.0.0.1:6379/0 key_prefix=statestore:"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("s3://bucket/prefix/", "s3://bucket/prefix/"),
    ],
)
def test_url_passwords_and_credential_parameters_are_masked_in_any_text(text: str, shown: str) -> None:
    assert mask_secret("url", text).startswith(shown)
    assert "SecretTail" not in mask_secret("url", text)
    assert SECRET.partition("@")[2] not in mask_secret("url", text)


@pytest.mark.parametrize(
    "key", ["password", "aws_secret_access_key", "aws_session_token", "api_key", "credentials", "sslpassword"]
)
def test_credential_settings_are_hidden_whole(key: str) -> None:
    assert mask_secret(key, "https://anything") == "***"


def test_from_dict_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE__STATE_STORE__BACKEND", "local")
    config = Config.from_dict({"state_store": {"backend": "memory", "default_retention_days": 0}})
    assert (config.backend, config.default_retention_days) == ("memory", 0)
    assert config.setting("state_store", "backend").source == "code"  # type: ignore[union-attr]
    assert Config.from_dict({}).backend == "metastore"


def test_airflow_configuration_is_used_instead_of_file_and_environment() -> None:
    conf = airflow_conf(
        "[state_store]\nbackend = airflow.state.metastore.MetastoreBackend\ndefault_retention_days = 3\n"
        "[workers]\nstate_store_backend = statestore.s3.S3StoreBackend\nconcurrency = 16\n"
        "[statestore_s3]\nbucket = from-airflow\nsecret_access_key = hunter2\n"
    )
    environ: dict[str, Any] = {
        "STATESTORE__STATE_STORE__DEFAULT_RETENTION_DAYS": "9",
        "AIRFLOW__STATESTORE_GCS__BUCKET": "g",
    }
    config = Config(airflow_conf=conf, environ=environ)
    assert config.from_airflow
    assert config.backend == "metastore", "Airflow's own default backend means statestore's default"
    assert config.default_retention_days == 3
    assert config.setting("state_store", "default_retention_days").source == (  # type: ignore[union-attr]
        "airflow configuration [state_store] default_retention_days"
    )
    assert config.worker_backend == "statestore.s3.S3StoreBackend"
    assert config.get("statestore_s3", "bucket") == "from-airflow"
    assert config.section("statestore_s3")["secret_access_key"].display_value == "***"
    assert list(config.section("workers")) == ["state_backend"], "Airflow's unrelated worker settings are not ours"
    assert {"state_store", "workers", "statestore_s3", "statestore_gcs"} <= set(config.sections())
    assert config.describe_sources("statestore_s3", "prefix") == (
        "airflow.cfg [statestore_s3] prefix or AIRFLOW__STATESTORE_S3__PREFIX"
    )


def test_airflow_configuration_is_validated() -> None:
    with pytest.raises(ConfigurationError) as info:
        Config(airflow_conf=airflow_conf("[state_store]\ndefault_retention_days = -1\n"))
    assert str(info.value) == (
        "[state_store] default_retention_days must be >= 0, got -1 "
        "(from airflow configuration [state_store] default_retention_days)"
    )


# -- typos: unknown sections, keys and variables -------------------------------------------------------


def test_typos_are_warned_with_the_closest_name(tmp_path: Path) -> None:
    from statestore.core.config import ConfigurationWarning

    path = write(
        tmp_path,
        "[state_stor]\nbackend = memory\n[state_store]\ndefault_retension_days = 3\n"
        "[statestore_redis]\nurll = redis://x\n[statestore_s3]\nbucket = b\n",
    )
    environ = {"STATESTORE__STATE_STORE__BACKEDN": "memory", "STATESTORE__NOSECTION": "x", "STATESTORE_HOME": "/h"}
    with pytest.warns(ConfigurationWarning) as caught:
        load_config(path, environ=environ)
    assert sorted(str(w.message) for w in caught) == sorted(
        [
            f"unknown section [state_stor] in {path}; did you mean [state_store]?",
            f"unknown key [state_store] default_retension_days in {path}; did you mean "
            "[state_store] default_retention_days?",
            f"unknown key [statestore_redis] urll in {path}; did you mean [statestore_redis] url?",
            "unknown key STATESTORE__STATE_STORE__BACKEDN in the environment; did you mean "
            "STATESTORE__STATE_STORE__BACKEND?",
            "environment variable STATESTORE__NOSECTION is not of the form STATESTORE__<SECTION>__<KEY>",
        ]
    )


def test_known_names_and_undeclared_plugin_sections_are_quiet(tmp_path: Path) -> None:
    import warnings

    path = write(tmp_path, "[state_store]\nbackend = memory\n[workers]\nstate_store_backend = local\n")
    environ = {"STATESTORE__STATESTORE_LOCAL__PATH": "/x", "STATESTORE__WORKERS__STATE_BACKEND": "local"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(path, environ=environ)


def test_airflow_side_checks_only_our_plugin_sections() -> None:
    from statestore.core.config import unknown_settings

    conf = airflow_conf("[state_store]\nanything = 1\n[statestore_s3]\nbuckett = b\n[core]\nx = 1\n")
    environ = {"AIRFLOW__STATESTORE_GCS__PREFX": "p", "AIRFLOW__CORE__WHATEVER": "1"}
    config = Config(airflow_conf=conf, environ=environ)
    assert unknown_settings(config) == [
        "unknown key [statestore_s3] buckett in the Airflow configuration; did you mean [statestore_s3] bucket?",
        "unknown key AIRFLOW__STATESTORE_GCS__PREFX in the environment; did you mean AIRFLOW__STATESTORE_GCS__PREFIX?",
    ]


def test_config_check_fails_on_typos_and_invalid_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from statestore.core.cli import main

    environ = {"STATESTORE_HOME": str(tmp_path), "STATESTORE_CONFIG": str(tmp_path / "statestore.cfg")}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in environ.items():
            mp.setenv(name, value)
        write(tmp_path, "[state_store]\nbackend = memory\n")
        assert main(["config", "--check"]) == 0
        assert capsys.readouterr().out == "configuration ok\n"
        write(tmp_path, "[state_store]\nbackend = memory\nbakend = x\n")
        assert main(["config", "--check"]) == 1
        err = capsys.readouterr().err.splitlines()
        assert err[0].startswith("state-store: warning: unknown key [state_store] bakend")
        assert err[-1] == "configuration check failed: 1 problem(s)"
        write(
            tmp_path,
            "[state_store]\nbackend = memory\n[workers]\nstate_backend = local\n[statestore_local]\nthreshold = x\n",
        )
        assert main(["config", "--check"]) == 1
        assert "[statestore_local] threshold must be an integer" in capsys.readouterr().err
        write(tmp_path, "[state_store]\ndefault_retention_days = 30         # 0 = never expire\n")
        assert main(["config", "--check"]) == 2
        assert "default_retention_days must be an integer" in capsys.readouterr().err
