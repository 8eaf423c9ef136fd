"""statestore-gcs: task and asset state on Google Cloud Storage, as a server-side store or a worker-side backend.

This module stays light: ``GCSStoreBackend`` is imported on first attribute access, so plugin
discovery never imports google-cloud-storage, while ``statestore.gcs.GCSStoreBackend`` still
resolves (Airflow's ``import_string`` does ``getattr`` on this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.core import airflow_compat

if TYPE_CHECKING:
    from statestore.gcs.backend import GCSStoreBackend

__all__ = ["GCSStoreBackend"]


def __getattr__(name: str) -> Any:
    if name == "GCSStoreBackend":
        airflow_compat.register_with_airflow()  # Airflow imports this class path (statestore.core.airflow_compat)
        from statestore.gcs.backend import GCSStoreBackend

        return GCSStoreBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
