"""A real MQTT broker for the tests: mosquitto (Debian package, installed by scripts/setup) on a
free loopback port, with a generated minimal config, and a subscriber that records what it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    """A TCP port nobody listens on at 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Broker:
    """One mosquitto process listening on 127.0.0.1:``port`` only."""

    folder: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    """User name -> password; empty: anonymous clients allowed."""
    process: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "user root",  # the tests run as root; mosquitto would drop to a user without access
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.users:
            passwords = self.folder / "mosquitto.passwd"
            passwords.unlink(missing_ok=True)
            for user, password in self.users.items():
                assert MOSQUITTO_PASSWD is not None
                flags = ["-b", "-c"] if not passwords.exists() else ["-b"]
                subprocess.run(
                    [MOSQUITTO_PASSWD, *flags, str(passwords), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> None:
        """Start mosquitto and wait until it accepts connections (5 s at most)."""
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self._config())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 5
        while not _accepts(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            assert time.monotonic() < deadline, "mosquitto did not start listening"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL) and wait for it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(3)


def needs_mosquitto() -> None:
    """Skip the calling test when mosquitto is not installed (scripts/setup installs it)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto, or scripts/setup)")


@dataclass(frozen=True)
class Received:
    """One message as a subscriber got it."""

    topic: str
    payload: str
    retain: bool
    at: float


class Recorder:
    """Subscribes to a topic filter and keeps every message, in order."""

    def __init__(self, port: int, topic: str, **login: str) -> None:
        """Record ``topic`` (a filter like ``ampgate/#``) from the broker on ``port``."""
        self.port, self.topic, self.login = port, topic, login
        self.messages: list[Received] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, **self.login) as client:  # type: ignore[arg-type]
            await client.subscribe(self.topic, qos=1)
            self._subscribed.set()
            async for message in client.messages:
                payload = message.payload
                text = payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)
                self.messages.append(
                    Received(str(message.topic), text, bool(message.retain), time.monotonic())
                )

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._run())
        done, _ = await asyncio.wait(
            [self._task, asyncio.create_task(self._subscribed.wait())],
            timeout=5,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._task in done:
            self._task.result()  # raises why it could not subscribe
        assert self._subscribed.is_set(), "the recorder could not subscribe"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    def latest(self, topic: str) -> Received | None:
        """The last message on ``topic``."""
        for message in reversed(self.messages):
            if message.topic == topic:
                return message
        return None

    def on(self, topic: str) -> list[Received]:
        """Every message on ``topic``, oldest first."""
        return [m for m in self.messages if m.topic == topic]

    async def until(
        self, predicate: Callable[[Recorder], bool], timeout: float = 5, what: str = ""
    ) -> None:
        """Wait until ``predicate(self)`` holds; fail naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def recording(port: int, topic: str, **login: str) -> AsyncIterator[Recorder]:
    """``async with recording(port, "ampgate/#") as rec:`` records until the block ends."""
    async with Recorder(port, topic, **login) as recorder:
        yield recorder
