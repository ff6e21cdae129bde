"""Only what changed: successive snapshots as the MQTT messages that bring the broker up to date.

States (online, vehicle state, setpoint, reason) are sent the cycle they change, measurements
(currents, power, energy) when they changed, at most every ``measurement_interval`` seconds per
subject; a subject that leaves the site has its retained topics cleared. The work per snapshot
is one pass over its devices and groups. Pure: no I/O, time is an argument.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ampgate.interfaces.mqtt_payloads import (
    Message,
    Subject,
    Value,
    state_payload,
    subject_topic,
    subjects,
    value_text,
)
from ampgate.interfaces.snapshot import DaemonSnapshot

Discovery = Callable[[Subject], list[Message]]
"""Makes a subject's Home Assistant discovery messages (:mod:`.homeassistant`)."""


class ChangeTracker:
    """What was last published per topic: turns each snapshot into the messages that changed.

    ``discovery`` (optional) gives a subject's retained discovery messages, sent once per
    subject. A subject that leaves the site (a reload removed it) has every retained topic it
    had cleared. :meth:`reset` forgets everything (after a reconnect all is sent again).
    """

    def __init__(
        self, prefix: str, measurement_interval: float, discovery: Discovery | None = None
    ) -> None:
        """Publish under ``prefix``; measurements at most every ``measurement_interval`` s."""
        self.prefix = prefix
        self.measurement_interval = measurement_interval
        self.discovery = discovery
        self._sent: dict[str, str] = {}
        self._sent_at: dict[str, float] = {}
        self._state: dict[tuple[str, str], tuple[float, Mapping[str, Value]]] = {}
        self._topics: dict[tuple[str, str], set[str]] = {}

    def reset(self) -> None:
        """Forget what was published: the next snapshot is sent in full."""
        self._sent.clear()
        self._sent_at.clear()
        self._state.clear()
        self._topics.clear()

    def _due(self, topic: str, now: float) -> bool:
        last = self._sent_at.get(topic)
        return last is None or now - last >= self.measurement_interval

    def _subject_messages(self, subject: Subject, now: float) -> list[Message]:
        key = (subject.kind, subject.name)
        topics = self._topics.get(key)
        out: list[Message] = []
        if topics is None:
            topics = self._topics[key] = set()
            for message in self.discovery(subject) if self.discovery else ():
                topics.add(message.topic)
                out.append(message)
        state_changed = measured_changed = False
        previous = self._state.get(key)
        for spec in subject.specs:
            value = subject.values.get(spec.key)
            if previous is not None and previous[1].get(spec.key) != value:
                measured_changed |= spec.measurement
                state_changed |= not spec.measurement
            topic = subject_topic(self.prefix, subject.kind, subject.name, spec.key)
            text = value_text(value)
            if self._sent.get(topic) == text or (spec.measurement and not self._due(topic, now)):
                continue
            self._sent[topic], self._sent_at[topic] = text, now
            topics.add(topic)
            out.append(Message(topic, text, True))
        due = previous is None or now - previous[0] >= self.measurement_interval
        if previous is None or state_changed or (measured_changed and due):
            topic = subject_topic(self.prefix, subject.kind, subject.name, "state")
            self._state[key] = (now, dict(subject.values))
            topics.add(topic)
            out.append(Message(topic, state_payload(subject), True))
        return out

    def messages(self, snapshot: DaemonSnapshot, now: float) -> list[Message]:
        """The messages that bring the broker's retained topics to ``snapshot`` at ``now``."""
        current = subjects(snapshot)
        out: list[Message] = []
        for subject in current:
            out += self._subject_messages(subject, now)
        present = {(s.kind, s.name) for s in current}
        # a snapshot without devices (before the first) or without groups (before the first
        # allocation) says nothing about who left
        known = {"charger", "meter"} if snapshot.devices else set()
        known |= {"group"} if snapshot.dlm.groups else set()
        for key in [k for k in self._topics if k[0] in known and k not in present]:
            for topic in sorted(self._topics.pop(key)):
                self._sent.pop(topic, None)
                self._sent_at.pop(topic, None)
                out.append(Message(topic, "", True))
            self._state.pop(key, None)
        return out
