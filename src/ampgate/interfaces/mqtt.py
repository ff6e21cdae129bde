"""The MQTT publisher: the snapshot store's state, events and Home Assistant discovery on a
broker, as an asyncio task of its own.

It reads only the :class:`~ampgate.interfaces.store.SnapshotStore`: :meth:`~SnapshotStore.latest`
when it (re)connects, then its bounded :class:`~ampgate.interfaces.store.Subscription` (a
snapshot after each cycle, each event as it happens). A slow or absent broker therefore never
slows the control loop: the subscription drops its oldest items, and the gateway never waits on
this task. On connect it publishes ``online`` on the retained ``<prefix>/status`` (the broker's
last will there is ``offline``, so the topic says ``offline`` when ampgate dies or loses the
broker), the discovery configs and every value; then only what changes
(:class:`~ampgate.interfaces.mqtt_changes.ChangeTracker`). A lost or refused connection is
retried with exponential backoff (1 s doubling to 60 s); :meth:`MqttPublisher.stop` publishes
``offline`` and disconnects cleanly. Topics and payloads: ``docs/integration.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Sequence

import aiomqtt

from ampgate.config.mqtt_rules import read_password, site_relative_path
from ampgate.config.schema import MqttConfig, SiteConfig
from ampgate.interfaces.control import (
    ControlChannel,
    LimitRejected,
    limit_from_body,
    takes_limits,
)
from ampgate.interfaces.homeassistant import discovery_messages
from ampgate.interfaces.mqtt_changes import ChangeTracker, Discovery
from ampgate.interfaces.mqtt_payloads import (
    OFFLINE,
    ONLINE,
    Message,
    Subject,
    event_message,
    status_topic,
)
from ampgate.interfaces.snapshot import DaemonSnapshot, Event
from ampgate.interfaces.store import SnapshotStore, Subscription
from ampgate.logging import get_logger

BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0
PUBLISH_TIMEOUT_SECONDS = 5.0
"""How long one publish may wait for the broker before the connection is given up."""
GOODBYE_TIMEOUT_SECONDS = 2.0
"""How long :meth:`MqttPublisher.stop` waits to say ``offline`` before it disconnects."""
QUEUE_ITEMS = 64
"""Snapshots and events kept for a publisher that falls behind (the oldest are dropped)."""
CONCURRENT_PUBLISHES = 256
"""Publishes in flight at once (a first publish of a big site is sent in chunks of this)."""


def limit_topic(prefix: str, group: str, leaf: str) -> str:
    """``<prefix>/group/<group>/limit/<leaf>``: ``set`` (an energy manager writes), ``result``."""
    return f"{prefix}/group/{group}/limit/{leaf}"


def _problem(group: BaseExceptionGroup) -> str:
    """The first exception of a (nested) group, in words."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return str(first) or type(first).__name__


class MqttPublisher:
    """Publishes a site's snapshots on MQTT until stopped; reconnects on its own."""

    def __init__(
        self,
        config: MqttConfig,
        store: SnapshotStore,
        *,
        site: str,
        source: str = "",
        backoff: tuple[float, float] = (BACKOFF_FIRST_SECONDS, BACKOFF_MAX_SECONDS),
        limits: tuple[SiteConfig, ControlChannel] | None = None,
    ) -> None:
        """Publish ``store`` as ``config`` says for the site named ``site`` (its file at
        ``source``: relative file names are taken from its folder).

        ``limits``: the site file and the channel to the gateway, to take external limits
        from ``<prefix>/group/<group>/limit/set`` for the groups that list ``"mqtt"``.
        """
        self.config, self.store, self.site, self.source = config, store, site, source
        self.limits = limits
        self.prefix = config.effective_topic_prefix(site)
        self.client_id = config.effective_client_id(site)
        self.backoff = backoff
        discovery: Discovery | None = None
        if config.homeassistant_discovery:
            discovery = self._discovery
        self.tracker = ChangeTracker(self.prefix, config.measurement_interval_seconds, discovery)
        self.connected = False
        self.connections = 0
        """How many times a connection was made (reconnects included)."""
        self.published = 0
        self.last_problem: str | None = None
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.log = get_logger("ampgate.mqtt")

    def _discovery(self, subject: Subject) -> list[Message]:
        return discovery_messages(
            subject,
            site=self.site,
            prefix=self.prefix,
            discovery_prefix=self.config.discovery_prefix,
            qos=self.config.qos,
        )

    @property
    def dropped(self) -> int:
        """Snapshots and events lost because the broker was slower than the site."""
        return self._subscription.dropped if self._subscription is not None else 0

    def start(self) -> None:
        """Subscribe to the store and start the publishing task (in the running loop)."""
        if self._task is not None:
            return
        self._stopping = False
        self._subscription = self.store.subscribe(QUEUE_ITEMS)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt-publisher")

    async def stop(self, timeout: float = 5.0) -> None:
        """Publish ``offline``, disconnect and end the task (within about ``timeout`` s)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        task.cancel()
        await asyncio.wait([task], timeout=timeout)
        if self._subscription is not None:
            self._subscription.close()
        self.log.info("mqtt_stopped", broker=self._broker())

    def _broker(self) -> str:
        return f"{self.config.host}:{self.config.effective_port()}"

    def _client(self) -> aiomqtt.Client:
        """A client for one connection attempt (the password file is read again each time)."""
        tls = None
        if self.config.tls:
            cafile = self.config.ca_file
            tls = ssl.create_default_context(
                cafile=str(site_relative_path(self.source, cafile)) if cafile else None
            )
        client = aiomqtt.Client(
            self.config.host,
            self.config.effective_port(),
            username=self.config.username,
            password=read_password(self.config, self.source),
            identifier=self.client_id,
            will=aiomqtt.Will(status_topic(self.prefix), OFFLINE, self.config.qos, retain=True),
            tls_context=tls,
            timeout=PUBLISH_TIMEOUT_SECONDS,
            keepalive=30,
        )
        client.pending_calls_threshold = CONCURRENT_PUBLISHES + 16  # chunks are expected
        return client

    async def _run(self) -> None:
        delay = self.backoff[0]
        while True:
            try:
                client = self._client()
                async with client:
                    self.connected = True
                    self.connections += 1
                    delay = self.backoff[0]
                    self.log.info(
                        "mqtt_connected",
                        broker=self._broker(),
                        client_id=self.client_id,
                        prefix=self.prefix,
                    )
                    await self._session(client)
            except* (aiomqtt.MqttError, OSError) as group:
                self.last_problem = _problem(group)
            except* Exception as group:  # a fault of ours: said, and tried again like a loss
                self.last_problem = _problem(group)
                self.log.error("mqtt_publisher_failed", problem=self.last_problem, exc_info=group)
            context = {"broker": self._broker(), "problem": self.last_problem}
            if self.connected:
                self.log.warning("mqtt_disconnected", **context, retry_in_seconds=delay)
            else:
                self.log.warning("mqtt_connect_failed", **context, retry_in_seconds=delay)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff[1])

    async def _session(self, client: aiomqtt.Client) -> None:
        """Announce and publish until the connection is lost (MqttError) or the task is
        cancelled (then say ``offline`` first when stopping)."""
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._watch(client))
                tasks.create_task(self._publish(client))
        except asyncio.CancelledError:
            if self._stopping:
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await client.publish(
                        status_topic(self.prefix),
                        OFFLINE,
                        self.config.qos,
                        retain=True,
                        timeout=GOODBYE_TIMEOUT_SECONDS,
                    )
            raise

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Raise MqttError as soon as the broker connection is lost (never returns).

        With discovery on, it listens to Home Assistant's birth message
        (``<discovery_prefix>/status`` = ``online``, sent when Home Assistant starts) and then
        publishes everything again, discovery included, with the next snapshot.
        """
        birth = f"{self.config.discovery_prefix}/status"
        if self.config.homeassistant_discovery:
            await client.subscribe(birth, qos=self.config.qos)
        limit_set = limit_topic(self.prefix, "+", "set")
        if self._takes_limits():
            await client.subscribe(limit_set, qos=self.config.qos)
        async for message in client.messages:  # ends only when the connection is lost
            if message.topic.matches(birth) and message.payload in (b"online", "online"):
                self.tracker.reset()
                self.log.info("mqtt_homeassistant_online", topic=birth)
            elif message.topic.matches(limit_set):
                group = message.topic.value.split("/")[-3]
                await self._take_limit(client, group, message.payload)
        raise aiomqtt.MqttError("the broker closed the connection")

    def _takes_limits(self) -> bool:
        return self.limits is not None and takes_limits(self.limits[0], "mqtt")

    async def _take_limit(self, client: aiomqtt.Client, group: str, payload: object) -> None:
        """Validate one ``limit/set`` payload and queue it for the gateway; the outcome goes
        to ``<prefix>/group/<group>/limit/result`` (not retained)."""
        assert self.limits is not None
        config, channel = self.limits
        try:
            text = payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)
            body = json.loads(text) if text.strip() else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            result: dict[str, object] = {
                "ok": False, "status": 422, "field": "body", "problem": f"not JSON: {exc}",
            }  # fmt: skip
        else:
            try:
                channel.submit(limit_from_body(config, group, "mqtt", body))
                result = {"ok": True}
            except LimitRejected as exc:
                result = {"ok": False, "status": exc.status, "field": exc.field}
                result["problem"] = str(exc)
        if not result["ok"]:
            self.log.warning("mqtt_limit_refused", group=group, problem=result["problem"])
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(
                limit_topic(self.prefix, group, "result"), json.dumps(result), self.config.qos
            )

    async def _publish(self, client: aiomqtt.Client) -> None:
        assert self._subscription is not None
        self.tracker.reset()
        await self._send(client, [Message(status_topic(self.prefix), ONLINE, True)])
        await self._send(client, self.tracker.messages(self.store.latest(), time.monotonic()))
        while True:
            item = await self._subscription.get()
            if isinstance(item, Event):
                await self._send(client, [event_message(self.prefix, item)])
            elif isinstance(item, DaemonSnapshot) and item is self.store.latest():
                # an older snapshot is skipped: a newer one is queued behind it
                await self._send(client, self.tracker.messages(item, time.monotonic()))

    async def _send(self, client: aiomqtt.Client, messages: Sequence[Message]) -> None:
        qos = self.config.qos
        for start in range(0, len(messages), CONCURRENT_PUBLISHES):
            async with asyncio.TaskGroup() as tasks:
                for m in messages[start : start + CONCURRENT_PUBLISHES]:
                    tasks.create_task(
                        client.publish(m.topic, m.payload.encode(), qos, retain=m.retain)
                    )
            self.published += min(CONCURRENT_PUBLISHES, len(messages) - start)
