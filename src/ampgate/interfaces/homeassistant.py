"""Home Assistant MQTT discovery: one device per charger and per meter, under the site's device.

For every value of :mod:`.mqtt_payloads` that has an entity name, a retained config on
``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` (Home Assistant's discovery
topic; ``node_id`` is ``ampgate_<site>``, ``object_id`` ``<kind>_<name>_<key>``). The entity
reads the value's own topic, is available while ``<prefix>/status`` says ``online``, and has a
stable ``unique_id`` made of the site, the device and the key. Chargers and meters are devices
named as in the site file, connected via the site's device, which carries the groups' entities
("main L1 measured"). Pure: no I/O.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from ampgate import __version__
from ampgate.codec import load_map
from ampgate.config.schema import topic_slug
from ampgate.errors import MapError
from ampgate.interfaces.mqtt_payloads import (
    OFFLINE,
    ONLINE,
    Message,
    Subject,
    ValueSpec,
    status_topic,
    subject_topic,
)

ORIGIN = {"name": "ampgate", "sw_version": __version__}
"""Who published the discovery configs (Home Assistant logs it with each discovered entity)."""
BINARY_PAYLOADS = {"payload_on": "true", "payload_off": "false"}
"""How a flag's own topic says on and off (``value_text``)."""


def node_id(site: str) -> str:
    """The discovery topic's node id of a site: ``ampgate_<site>`` (letters, digits, _ and -)."""
    return f"ampgate_{topic_slug(site)}"


def site_device(site: str) -> dict[str, Any]:
    """The Home Assistant device of the ampgate site itself (the chargers' ``via_device``)."""
    return {
        "identifiers": [node_id(site)],
        "name": f"ampgate {site}",
        "manufacturer": "ampgate",
        "model": "EV charging gateway",
        "sw_version": __version__,
    }


def _model_names(model: str) -> tuple[str, str]:
    """(manufacturer, model name) of a register map id, from the map; the id when unknown."""
    try:
        info = load_map(model).model
    except MapError:
        return "unknown", model or "unknown"
    return info.vendor, info.name


def subject_device(site: str, subject: Subject) -> dict[str, Any]:
    """The Home Assistant device of a charger or meter (a group's is the site's device)."""
    if subject.kind == "group":
        return site_device(site)
    manufacturer, model = _model_names(subject.model)
    return {
        "identifiers": [f"{node_id(site)}_{subject.kind}_{subject.name}"],
        "name": subject.name,
        "manufacturer": manufacturer,
        "model": model,
        "model_id": subject.model,
        "via_device": node_id(site),
        **({"suggested_area": subject.group} if subject.group else {}),
    }


def entity_config(
    site: str, prefix: str, qos: int, subject: Subject, spec: ValueSpec
) -> dict[str, Any]:
    """The discovery payload of one value of one subject."""
    assert spec.name is not None
    node = node_id(site)
    config: dict[str, Any] = {
        "name": f"{subject.name} {spec.name}" if subject.kind == "group" else spec.name,
        "unique_id": f"{node}_{subject.kind}_{subject.name}_{spec.key}",
        "state_topic": subject_topic(prefix, subject.kind, subject.name, spec.key),
        "availability_topic": status_topic(prefix),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "qos": qos,
        "device": subject_device(site, subject),
        "origin": ORIGIN,
    }
    if spec.device_class is not None:
        config["device_class"] = spec.device_class
    if spec.state_class is not None:
        config["state_class"] = spec.state_class
    if spec.unit is not None:
        config["unit_of_measurement"] = spec.unit
    if spec.options is not None:
        config["options"] = list(spec.options)
    if spec.component == "binary_sensor":
        config.update(BINARY_PAYLOADS)
    return config


def _id_part(name: str) -> str:
    """``name`` as part of a discovery object id (letters, digits, ``_`` and ``-`` only; a name
    with other characters gets a checksum so two such names never share an id)."""
    slug = topic_slug(name)
    return slug if slug == name else f"{slug}_{zlib.crc32(name.encode()):08x}"


def discovery_topic(discovery_prefix: str, site: str, subject: Subject, spec: ValueSpec) -> str:
    """``<discovery_prefix>/<component>/ampgate_<site>/<kind>_<name>_<key>/config``."""
    object_id = f"{subject.kind}_{_id_part(subject.name)}_{spec.key}"
    return f"{discovery_prefix}/{spec.component}/{node_id(site)}/{object_id}/config"


def discovery_messages(
    subject: Subject, *, site: str, prefix: str, discovery_prefix: str, qos: int
) -> list[Message]:
    """The retained discovery config of every named value of ``subject``."""
    return [
        Message(
            discovery_topic(discovery_prefix, site, subject, spec),
            json.dumps(entity_config(site, prefix, qos, subject, spec), ensure_ascii=False),
            True,
        )
        for spec in subject.specs
        if spec.name is not None
    ]
