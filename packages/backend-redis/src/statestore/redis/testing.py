"""Helpers to run the Redis backend against real servers (tests and benchmarks).

:class:`LocalServer`, :class:`LocalCluster` and :class:`LocalSentinel` start ``redis-server``
processes (a single node, a three-primary Redis Cluster, a primary with a replica and three
sentinels) on free loopback ports, no docker needed.

:class:`CommandCounter` watches ``MONITOR`` on its own connection and counts the commands that
clients with a given ``CLIENT SETNAME`` send, as the server saw them, apart from the commands their
scripts run inside one ``EVALSHA`` (counted separately: that is the server-side cost). A client
that sends one unpipelined command per operation makes one round trip per operation.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.cluster import RedisCluster

__all__ = ["CommandCounter", "Commands", "LocalCluster", "LocalSentinel", "LocalServer", "free_port", "wait_for"]


@dataclass
class Commands:
    """Commands by lower-case name: ``sent`` by the client (each a round trip), ``scripted`` by its scripts."""

    sent: Counter[str] = field(default_factory=Counter)
    scripted: Counter[str] = field(default_factory=Counter)


class CommandCounter:
    """Counts, by command name, what clients named ``client_name`` send while the counter is open.

    Use as a context manager; call :meth:`take` to collect the commands seen since the last call.
    MONITOR slows the server down, so open a counter only around the operations being counted.
    """

    def __init__(self, url: str, client_name: str) -> None:
        self.client_name = client_name
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._monitor_client = redis.Redis.from_url(url)
        self._monitor = self._monitor_client.monitor()  # type: ignore[no-untyped-call]

    def __enter__(self) -> CommandCounter:
        self._monitor.__enter__()
        self.take()  # start from a synchronised stream
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._monitor.__exit__(exc_type, exc, tb)
        self._monitor_client.close()
        self._client.close()

    def _addresses(self) -> set[str]:
        return {c["addr"] for c in self._client.client_list() if c.get("name") == self.client_name}

    def take(self) -> Commands:
        """What the named clients sent, and what their scripts ran, since the previous call."""
        marker = f"statestore-counter-{secrets.token_hex(8)}"
        self._client.echo(marker)
        seen: list[tuple[str, str]] = []
        while True:
            event = self._monitor.next_command()
            command = str(event["command"])
            if marker in command:
                break
            address = "lua" if event["client_type"] == "lua" else f"{event['client_address']}:{event['client_port']}"
            seen.append((address, command.split(" ", 1)[0].lower()))
        ours = self._addresses()
        commands = Commands()
        sender_is_ours = False
        for address, name in seen:
            if address != "lua":
                sender_is_ours = address in ours
                if sender_is_ours:
                    commands.sent[name] += 1
            elif sender_is_ours:  # MONITOR lists a script's commands right after the EVALSHA that ran them
                commands.scripted[name] += 1
        return commands


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20) -> None:
    """Poll ``condition`` until it is true; ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def _replicating(client: redis.Redis) -> bool:
    return bool(client.info("replication").get("master_link_status") == "up")


def _cluster_ok(client: redis.Redis) -> bool:
    return bool(client.cluster("info")["cluster_state"] == "ok")


class LocalServer:
    """A ``redis-server`` (or sentinel) on a free loopback port, without persistence; ``stop()`` ends it.

    ``directory`` is its own working directory (cluster nodes and sentinels rewrite files there).
    """

    def __init__(self, directory: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        if sentinel:  # Sentinel needs a writable configuration file of its own
            config = directory / "sentinel.conf"
            config.write_text("\n".join(args) + "\n")
            self._command = ["redis-server", str(config), "--sentinel", "--port", str(self.port)]
        else:
            self._command = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no", *args]
        self._command += ["--bind", "127.0.0.1", "--dir", str(directory)]
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start the process and wait until it accepts connections."""
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH; install Redis >= 7.0 (e.g. apt-get install redis-server)")
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.client().ping(), f"redis-server listening on 127.0.0.1:{self.port}", 10)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client on this server (responses decoded)."""
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, **kwargs)

    def stop(self) -> None:
        """Stop the process (SIGTERM) and wait for it."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


class LocalCluster:
    """A Redis Cluster of three primaries (and ``replicas`` replicas of the first) on loopback ports.

    Created with ``redis-cli --cluster create``; replicas join with ``CLUSTER MEET``/``REPLICATE``.
    ``url`` names one primary, from which a cluster client discovers the others.
    """

    def __init__(self, directory: Path, replicas: int = 0) -> None:
        self.nodes: list[LocalServer] = []
        self.bus_port = free_port()  # of the first node (MEET needs it: it is not port + 10000)
        try:
            for i in range(3 + replicas):
                self.nodes.append(
                    LocalServer(
                        directory / f"node{i}",
                        *("--cluster-enabled", "yes", "--cluster-port", str(self.bus_port if i == 0 else free_port())),
                        *("--cluster-node-timeout", "2000", "--cluster-config-file", "nodes.conf"),
                    )
                )
            primaries = [f"127.0.0.1:{node.port}" for node in self.nodes[:3]]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *primaries, "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=60,
            )
            with self.nodes[0].client() as first:
                first_id = str(first.cluster("myid"))
            for replica in self.nodes[3:]:
                self._replicate(replica, first_id)
            for node in self.nodes:
                with node.client() as client:
                    wait_for(partial(_cluster_ok, client), "cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        self.url = self.nodes[0].url

    def _replicate(self, replica: LocalServer, primary_id: str) -> None:
        with replica.client() as client:
            client.cluster("meet", "127.0.0.1", str(self.nodes[0].port), str(self.bus_port))
            wait_for(lambda: primary_id in str(client.cluster("nodes")), "CLUSTER MEET")
            client.cluster("replicate", primary_id)
            wait_for(partial(_replicating, client), "replication")

    def client(self, **kwargs: Any) -> RedisCluster:
        """A plain redis-py cluster client (responses decoded)."""
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True, **kwargs)

    def node_of(self, key: str) -> LocalServer:
        """The node currently serving ``key``'s slot as a primary."""
        with self.client() as client:
            node = client.get_node_from_key(key)
        return next(server for server in self.nodes if server.port == int(node.port))

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


class LocalSentinel:
    """A primary, one replica and three sentinels (quorum 2) watching it as ``service_name``, on loopback."""

    service_name = "statestore-test"

    def __init__(self, directory: Path) -> None:
        self.servers: list[LocalServer] = []
        try:
            self.primary = LocalServer(directory / "primary")
            self.servers.append(self.primary)
            self.replica = LocalServer(directory / "replica", "--replicaof", "127.0.0.1", str(self.primary.port))
            self.servers.append(self.replica)
            with self.replica.client() as client:
                wait_for(partial(_replicating, client), "replication")
            for i in range(3):
                self.servers.append(
                    LocalServer(
                        directory / f"sentinel{i}",
                        f"sentinel monitor {self.service_name} 127.0.0.1 {self.primary.port} 2",
                        f"sentinel down-after-milliseconds {self.service_name} 1000",
                        f"sentinel failover-timeout {self.service_name} 4000",
                        sentinel=True,
                    )
                )
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    wait_for(partial(self._ready, client), "sentinels seeing the replica and each other")
        except BaseException:
            self.stop()
            raise

    def _ready(self, client: redis.Redis) -> bool:
        primary: Any = client.sentinel_master(self.service_name)
        return bool(client.sentinel_slaves(self.service_name)) and int(primary["num-other-sentinels"]) == 2

    @property
    def sentinels(self) -> list[LocalServer]:
        """The three sentinel processes."""
        return self.servers[2:]

    @property
    def addresses(self) -> str:
        """The ``sentinels`` setting naming the three sentinels."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def primary_port(self) -> int:
        """The port of the current primary, as the first sentinel sees it."""
        with self.sentinels[0].client() as client:
            return int(client.sentinel_get_master_addr_by_name(self.service_name)[1])

    def stop(self) -> None:
        """Stop every process."""
        for server in self.servers:
            server.stop()
