"""One exception family for everything a user can see.

Every message names the file, field or device, the bad value and what is allowed, so the CLI can
print it as one line.
"""

from __future__ import annotations


class AmpgateError(Exception):
    """Base of every error ampgate raises on purpose."""


class MapError(AmpgateError):
    """A register map file is invalid, or a field/model that does not exist was asked for."""

    def __init__(self, problem: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.problem = problem
        where = []
        if file:
            where.append(file)
        if field:
            where.append(f"field {field!r}")
        prefix = ": ".join(where)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)


class EncodeError(AmpgateError, ValueError):
    """A value cannot be written to a field: read-only, wrong kind, or outside the allowed range."""

    def __init__(self, problem: str, *, model: str | None = None, field: str | None = None):
        self.model = model
        self.field = field
        self.problem = problem
        where = "/".join(p for p in (model, field) if p)
        super().__init__(f"{where}: {problem}" if where else problem)


class DecodeError(AmpgateError, ValueError):
    """Words given to the decoder do not fit the field (wrong count, out of 16-bit range)."""


class ConfigError(AmpgateError):
    """The site configuration is invalid. `problems` lists every problem found."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = problems or [message]
        super().__init__(message)


class TransportError(AmpgateError):
    """Talking to a device failed (timeout, exception response, CRC, connection)."""


class DeviceError(AmpgateError):
    """A device answered but is not what the configuration says (identity, settings)."""
