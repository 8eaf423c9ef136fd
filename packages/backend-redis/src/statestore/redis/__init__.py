"""statestore-redis: task and asset state on Redis, as a server-side store or a worker-side backend.

This module stays light: ``RedisStoreBackend`` is imported on first attribute access, so plugin
discovery never imports redis-py, while ``statestore.redis.RedisStoreBackend`` still resolves
(Airflow's ``import_string`` does ``getattr`` on this package).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from statestore.core import airflow_compat

if TYPE_CHECKING:
    from statestore.redis.backend import RedisStoreBackend

__all__ = ["RedisStoreBackend"]


def __getattr__(name: str) -> Any:
    if name == "RedisStoreBackend":
        airflow_compat.register_with_airflow()  # Airflow imports this class path (statestore.core.airflow_compat)
        from statestore.redis.backend import RedisStoreBackend

        return RedisStoreBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
