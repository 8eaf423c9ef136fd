"""Settings, credentials, plugin discovery and the light package import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from statestore.core import Config, TaskScope
from statestore.core.config import load_config
from statestore.core.errors import ConfigurationError
from statestore.core.plugins import load_backend
from statestore.gcs import GCSStoreBackend

SECTION = "statestore_gcs"


def test_no_argument_constructor_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATESTORE_CONFIG", "/nonexistent/statestore.cfg")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__BUCKET", "my-state-bucket")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__PREFIX", "/airflow/state/")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__KMS_KEY_NAME", "projects/p/locations/l/keyRings/r/cryptoKeys/k")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__RETRY_DEADLINE", "30")
    monkeypatch.setenv("STATESTORE__STATESTORE_GCS__COMPRESSION", "gzip")
    backend = GCSStoreBackend()
    assert (backend.bucket, backend.prefix, backend.compression) == ("my-state-bucket", "airflow/state", "gzip")
    assert backend.kms_key_name == "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    assert (backend.retry_deadline, backend.timeout) == (30.0, 60.0)
    assert repr(backend) == "GCSStoreBackend('gs://my-state-bucket/airflow/state/')"
    override = GCSStoreBackend("other-bucket", "p", retry_deadline=5, config=load_config())
    assert (override.bucket, override.prefix, override.retry_deadline) == ("other-bucket", "p", 5.0)


def test_missing_bucket_says_where_to_set_it() -> None:
    with pytest.raises(ConfigurationError, match="STATESTORE__STATESTORE_GCS__BUCKET"):
        GCSStoreBackend(config=Config.from_dict({}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"bucket": "Upper_Case"}, "invalid bucket name 'Upper_Case'"),
        ({"bucket": "ab"}, "invalid bucket name 'ab'"),
        ({"bucket": "x" * 64}, "3-63 characters"),
        ({"bucket": "a..b"}, "invalid bucket name 'a..b'"),
        ({"bucket": "ok-bucket", "retry_deadline": "0"}, r"\[statestore_gcs\] retry_deadline must be a positive"),
        ({"bucket": "ok-bucket", "timeout": "soon"}, r"\[statestore_gcs\] timeout must be a number, got 'soon'"),
        ({"bucket": "ok-bucket", "compression": "zstd"}, "compression must be one of none, gzip"),
        ({"bucket": "ok-bucket", "prefix": "../up"}, "invalid prefix '../up'"),
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        GCSStoreBackend(config=Config.from_dict({SECTION: settings}))


def test_long_dotted_bucket_names_are_accepted() -> None:
    name = "state." + "a" * 60 + ".example.com"
    assert GCSStoreBackend(name, config=Config.from_dict({})).bucket == name


def _service_account_key(path: Path) -> str:
    """Write a service-account key for project ``project-from-file`` to ``path``; return its private key (PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "project-from-file",
                "private_key_id": "1",
                "private_key": pem.decode(),
                "client_email": "statestore@project-from-file.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return pem.decode()


def test_credentials_file_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    path = tmp_path / "sa.json"
    pem = _service_account_key(path)
    backend = GCSStoreBackend("bkt", config=Config.from_dict({SECTION: {"credentials_file": str(path)}}))
    assert backend.client.project == "project-from-file"  # no request made: tokens are fetched on first use
    assert pem[40:80] not in repr(backend)


def test_application_default_credentials_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "adc.json"))
    backend = GCSStoreBackend("bkt", config=Config.from_dict({}))
    with pytest.raises(ConfigurationError, match=r"no Google credentials\. .* credentials_file\. Cause: .*adc\.json"):
        backend.client  # noqa: B018 - connects
    _service_account_key(tmp_path / "adc.json")
    assert backend.client.project == "project-from-file"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        ("{not json", "Expecting property name"),
        ('{"type": "authorized_user"}', "is not a service-account key"),
        ('{"type": "service_account"}', "missing fields"),
    ],
)
def test_unusable_credentials_file_names_the_setting(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_text(content)
    backend = GCSStoreBackend("bkt", credentials_file=str(path), config=Config.from_dict({}))
    with pytest.raises(
        ConfigurationError, match=rf"\[statestore_gcs\] credentials_file '{path}' cannot be used: .*{reason}"
    ):
        backend.get(TaskScope("d", "r", "t"), "k")


def test_plugin_is_found_by_name_and_class_path() -> None:
    assert load_backend("gcs") is GCSStoreBackend
    assert load_backend("statestore.gcs.GCSStoreBackend") is GCSStoreBackend
    assert load_backend("statestore.gcs.backend:GCSStoreBackend") is GCSStoreBackend


def test_discovery_and_package_import_stay_light() -> None:
    code = (
        "import sys\n"
        "from statestore.core.plugins import available_backends\n"
        "rows = {r.name: r for r in available_backends()}\n"
        "assert rows['gcs'].importable and rows['gcs'].distribution == 'statestore-gcs', rows['gcs']\n"
        "import statestore.gcs, statestore.gcs.plugin\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('google.cloud.storage', 'google.auth', 'requests')))\n"
        "assert not heavy, heavy\n"
        "statestore.gcs.GCSStoreBackend\n"
        "assert 'google.cloud.storage' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
