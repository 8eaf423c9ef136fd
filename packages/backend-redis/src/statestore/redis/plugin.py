"""The ``statestore.plugins`` entry point of statestore-redis: announces the ``redis`` backend without importing it.

Also declares the ``[statestore_redis]`` settings, once, for the backend, ``state-store config`` and
the Airflow provider metadata (``get_provider_info``, the ``apache_airflow_provider`` entry point).
"""

from __future__ import annotations

from typing import Any

from statestore.core.plugins import BackendSpec, hookimpl
from statestore.core.settings import SettingSpec, provider_info

SECTION = "statestore_redis"
SETTINGS = (
    SettingSpec(
        "url",
        str,
        "redis://127.0.0.1:6379/0",
        "redis://, rediss:// (TLS) or unix:// URL; with cluster = True any node, with sentinels the primary's db, "
        "credentials and TLS",
        url=True,
    ),
    SettingSpec("key_prefix", str, "statestore:", "prefix of every key written; must not contain { or }"),
    SettingSpec("username", str, None, "user name, for URLs without one (credentials in the URL win)"),
    SettingSpec("password", str, None, "password, for URLs without one (credentials in the URL win)", secret=True),
    SettingSpec("client_name", str, "statestore", "CLIENT SETNAME, to find the connections in CLIENT LIST"),
    SettingSpec("socket_timeout", float, 5.0, "seconds a command may take", minimum=0),
    SettingSpec("socket_connect_timeout", float, 5.0, "seconds a connection may take", minimum=0),
    SettingSpec(
        "retry_attempts", int, 3, "retries after connection errors and timeouts (operations are idempotent)", minimum=0
    ),
    SettingSpec("retry_backoff_base", float, 0.05, "first backoff between retries, seconds (exponential)", minimum=0),
    SettingSpec("retry_backoff_cap", float, 2.0, "longest backoff between retries, seconds", minimum=0),
    SettingSpec(
        "max_connections",
        int,
        0,
        "connections per process (per node in a cluster); 0 = no limit; on a single node, more operations wait",
        minimum=0,
    ),
    SettingSpec("cluster", bool, False, "True: Redis Cluster"),
    SettingSpec("sentinels", str, "", "host:port,host:port: the Sentinel processes watching the primary"),
    SettingSpec("service_name", str, "", "the primary's name in Sentinel; required with sentinels"),
    SettingSpec("sentinel_password", str, None, "password of the sentinels themselves", secret=True),
    SettingSpec(
        "wait_replicas",
        int,
        0,
        "after every write, WAIT for this many replicas (single node and Sentinel only)",
        minimum=0,
    ),
    SettingSpec("wait_timeout", float, 1.0, "seconds WAIT may take", minimum=0),
)
"""``[statestore_redis]``: every setting of ``RedisStoreBackend``, declared once."""


@hookimpl
def statestore_backends() -> list[BackendSpec]:
    """Announce ``redis`` (server-side store and worker-side backend)."""
    return [
        BackendSpec(
            name="redis",
            class_path="statestore.redis.backend:RedisStoreBackend",
            description="Redis strings with native expiry and per-scope indexes; single node, Cluster or Sentinel",
            requires=("redis",),
            settings=SETTINGS,
        )
    ]


def get_provider_info() -> dict[str, Any]:
    """The ``apache_airflow_provider`` entry point: ``airflow providers list`` and ``[statestore_redis]`` defaults."""
    return provider_info(
        "statestore-redis",
        "statestore Redis",
        "Redis task-state and asset-state store (server-side and worker-side): single node, Cluster or Sentinel.",
        {SECTION: ("statestore's Redis backend (statestore.redis.RedisStoreBackend).", SETTINGS)},
    )
