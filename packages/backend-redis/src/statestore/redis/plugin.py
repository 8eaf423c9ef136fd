"""The ``statestore.plugins`` entry point of statestore-redis: announces the ``redis`` backend without importing it."""

from __future__ import annotations

from statestore.core.plugins import BackendSpec, hookimpl


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``redis`` (server-side store and worker-side backend)."""
    return [
        BackendSpec(
            name="redis",
            class_path="statestore.redis.backend:RedisStoreBackend",
            description="Redis strings with native expiry and per-scope indexes; single node, Cluster or Sentinel",
            requires=("redis",),
            settings=(
                "url",
                "key_prefix",
                "username",
                "password",
                "client_name",
                "socket_timeout",
                "socket_connect_timeout",
                "retry_attempts",
                "retry_backoff_base",
                "retry_backoff_cap",
                "max_connections",
                "cluster",
                "sentinels",
                "service_name",
                "sentinel_password",
                "wait_replicas",
                "wait_timeout",
            ),
        )
    ]
