"""Site-file rules of the ``[mqtt]`` section that reach beyond one key: the files it names must
be readable, a password needs a user name, a CA file needs TLS.

Each problem names its key and what is allowed, in the wording of :mod:`ampgate.config.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ampgate.config.schema import MqttConfig


def site_relative_path(source: str, path: str) -> Path:
    """``path`` as the site file means it: absolute as written, relative from the folder of the
    site file ``source`` (the working directory when there is no file)."""
    given = Path(path).expanduser()
    if given.is_absolute() or not source or source.startswith("<"):
        return given
    return Path(source).parent / given


def read_password(mqtt: MqttConfig, source: str) -> str | None:
    """The password in ``password_file`` (its first line, without the line end), or None when
    no file is set; OSError when it cannot be read."""
    if mqtt.password_file is None:
        return None
    text = site_relative_path(source, mqtt.password_file).read_text(encoding="utf-8")
    return text.splitlines()[0] if text else ""


def _unreadable(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def mqtt_problems(valid: Mapping[str, Any], source: str) -> list[str]:
    """Problems of the ``[mqtt]`` section that validated (``valid["mqtt"]``), if present."""
    mqtt: MqttConfig | None = valid.get("mqtt")
    if mqtt is None:
        return []
    problems: list[str] = []
    if mqtt.password_file is not None:
        path = site_relative_path(source, mqtt.password_file)
        if (why := _unreadable(path)) is not None:
            problems.append(
                f"mqtt.password_file: cannot read {str(path)!r} ({why}); allowed: a readable "
                "file whose first line is the password"
            )
        elif not read_password(mqtt, source):
            problems.append(
                f"mqtt.password_file: {str(path)!r} is empty; allowed: a file whose first "
                "line is the password"
            )
        if mqtt.username is None:
            problems.append(
                "mqtt.password_file: set without mqtt.username (MQTT sends no password "
                "without a user name); allowed: set username too, or no password_file"
            )
    if mqtt.ca_file is not None:
        path = site_relative_path(source, mqtt.ca_file)
        if (why := _unreadable(path)) is not None:
            problems.append(
                f"mqtt.ca_file: cannot read {str(path)!r} ({why}); allowed: a readable PEM file"
            )
        if not mqtt.tls:
            problems.append(
                "mqtt.ca_file: set while mqtt.tls is false; allowed: tls = true, or no ca_file"
            )
    return problems
