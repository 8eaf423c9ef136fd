"""statestore-s3: task and asset state on Amazon S3 and S3-compatible stores.

``S3StoreBackend`` is exported lazily so that plugin discovery (which imports
``statestore.s3.plugin``) never imports boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.core import airflow_compat

if TYPE_CHECKING:
    from statestore.s3.backend import S3StoreBackend

__all__ = ["S3StoreBackend"]


def __getattr__(name: str) -> Any:
    if name == "S3StoreBackend":
        airflow_compat.register_with_airflow()  # Airflow imports this class path (statestore.core.airflow_compat)
        from statestore.s3.backend import S3StoreBackend

        return S3StoreBackend
    raise AttributeError(f"module 'statestore.s3' has no attribute {name!r}")
