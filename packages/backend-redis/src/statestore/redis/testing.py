"""Helpers to verify the Redis backend's round trips against a real server (tests and benchmarks).

:class:`CommandCounter` watches ``MONITOR`` on its own connection and counts the commands that
clients with a given ``CLIENT SETNAME`` send, as the server saw them, apart from the commands their
scripts run inside one ``EVALSHA`` (counted separately: that is the server-side cost). A client
that sends one unpipelined command per operation makes one round trip per operation.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import redis

__all__ = ["CommandCounter", "Commands"]


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
