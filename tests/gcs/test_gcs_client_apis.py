"""The backend reaches GCS through public APIs only, and the one process-wide opt-out it relies on still works.

A change of google-cloud-storage that breaks an assumption here fails with the installed version in the message.
"""

from __future__ import annotations

import ast
import os
import time
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

import statestore.gcs
from statestore.core import TaskScope
from statestore.core.errors import StorageError
from statestore.gcs.testing import CountingProxy, RecordedRequest

from .conftest import MakeBackend

SCOPE = TaskScope("d", "r", "t")
NO_BUCKET_PROBE = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"
VERSION = f"google-cloud-storage {storage.__version__}"


def _google_names(tree: ast.Module) -> set[str]:
    """The names a module's imports of google libraries bind."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("google"):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("google")}
    return names


def _google_modules() -> list[Path]:
    """The modules of statestore.gcs that import a google library (found by their imports, so new ones count)."""
    package = Path(statestore.gcs.__file__).parent
    modules = [path for path in sorted(package.glob("*.py")) if _google_names(ast.parse(path.read_text("utf-8")))]
    assert modules, "no module of statestore.gcs imports google: this test looks in the wrong place"
    return modules


@pytest.mark.parametrize("path", _google_modules(), ids=lambda path: path.name)
def test_no_private_name_of_another_library_is_used(path: Path) -> None:
    """No ``x._name`` but our own ``self._name``, no private google module or name, no subclass of a google class."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    google_names = _google_names(tree)
    private = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    private += [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("google")
        and any(part.startswith("_") for part in [*(node.module or "").split("."), *(a.name for a in node.names)])
    ]
    subclasses = [
        f"line {node.lineno}: class {node.name}({ast.unparse(base)})"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for base in node.bases
        if next((n.id for n in ast.walk(base) if isinstance(n, ast.Name)), None) in google_names
    ]
    assert not private + subclasses, f"{path.name} uses private names of another library: {private + subclasses}"


def test_a_damaged_download_is_refused(make_backend: MakeBackend, proxy: CountingProxy) -> None:
    backend = make_backend(via_proxy=True)
    backend.set(SCOPE, "k", '"value"')
    proxy.corrupt(1, path_contains="/download/")
    with pytest.raises(StorageError, match=r"do not match the object's MD5 \(X-Goog-Hash: .*md5=.*\), so nothing"):
        backend.get(SCOPE, "k")
    assert backend.get(SCOPE, "k") == '"value"'


def _bucket_gets(requests: list[RecordedRequest], bucket: str) -> list[RecordedRequest]:
    return [r for r in requests if r.method == "GET" and r.path.split("?")[0] == f"/storage/v1/b/{bucket}"]


def test_the_client_fetches_no_bucket_metadata(
    make_backend: MakeBackend, proxy: CountingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-cloud-storage >= 3.11 GETs the bucket in a background thread to label tracing spans, unless told not to.

    The backend tells it not to with the variable its maintainers name; the control client shows the
    probe exists (and so that this test would see it), then the backend's operations must not cause one.
    """
    monkeypatch.setenv(NO_BUCKET_PROBE, "restored after the test")
    monkeypatch.delenv(NO_BUCKET_PROBE)
    backend = make_backend(via_proxy=True)
    if tuple(int(part) for part in storage.__version__.split(".")[:2]) >= (3, 11):
        control = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": proxy.url}
        )
        control.bucket(backend.bucket).blob("control").upload_from_string(b"1")
        deadline = time.monotonic() + 10
        seen: list[RecordedRequest] = []
        while not _bucket_gets(seen, backend.bucket) and time.monotonic() < deadline:
            seen += proxy.take()
            time.sleep(0.01)
        assert _bucket_gets(seen, backend.bucket), (
            f"{VERSION} no longer fetches bucket metadata in the background: "
            f"the {NO_BUCKET_PROBE} opt-out in statestore/gcs/backend.py may go"
        )
        control.close()

    backend.set(SCOPE, "k", "1")
    assert backend.get(SCOPE, "k") == "1"
    backend.delete(SCOPE, "k")
    backend.clear(SCOPE)
    assert backend.keys(SCOPE) == []
    assert not _bucket_gets(proxy.take(), backend.bucket), (
        f"{VERSION} fetched the bucket's metadata despite {NO_BUCKET_PROBE}=true: find its new opt-out "
        "and use it in statestore/gcs/backend.py (the backend must need no storage.buckets.get)"
    )


def test_an_explicit_probe_setting_is_left_alone(make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_BUCKET_PROBE, "false")
    make_backend().client  # noqa: B018 - connects
    assert os.environ[NO_BUCKET_PROBE] == "false"
