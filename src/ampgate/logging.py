"""The one place logging is configured: structlog, JSON lines when not a TTY, console when it is.

Events are snake_case names with key/value context (``log.info("device_offline", device="c1")``),
never prose with values spliced in, so they can be filtered and counted. Standard-library
``logging`` records (pymodbus) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO, cast

import structlog

LogFormat = Literal["auto", "json", "console"]
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class LossyStream:
    """The log stream, whose write failures drop the line instead of raising.

    A log line that cannot be written (stderr on a full disk, a read-only file, a closed pipe)
    must never stop the control loop: the chargers would drop to their failsafe current and the
    daemon would exit on its first event. ``dropped`` counts the lines lost.
    """

    def __init__(self, stream: TextIO) -> None:
        """Write to ``stream``."""
        self.stream = stream
        self.dropped = 0

    def write(self, text: str) -> int:
        """Write ``text``; 0 when it could not be written."""
        try:
            return self.stream.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.dropped += 1
            return 0

    def flush(self) -> None:
        """Flush; a failure drops what was buffered."""
        try:
            self.stream.flush()
        except (OSError, ValueError):
            self.dropped += 1

    def isatty(self) -> bool:
        """Whether the stream is a terminal (False when that cannot be asked)."""
        try:
            return bool(self.stream.isatty())
        except (OSError, ValueError, AttributeError):
            return False


def _renderer(fmt: LogFormat, stream: TextIO) -> structlog.typing.Processor:
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if fmt == "console" or (fmt == "auto" and is_tty):
        return structlog.dev.ConsoleRenderer(colors=is_tty)
    return structlog.processors.JSONRenderer()


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging for the process (call once, again on reload).

    ``fmt``: ``json`` (one JSON object per line), ``console`` (human layout) or ``auto`` (JSON
    unless ``stream`` is a TTY). ``level``: debug, info, warning or error. ``stream`` defaults to
    stderr.
    """
    raw = stream if stream is not None else sys.stderr
    lossy = raw if isinstance(raw, LossyStream) else LossyStream(raw)
    stream = cast(TextIO, lossy)
    numeric = LEVELS.get(level.lower(), logging.INFO)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _renderer(fmt, stream),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _renderer(fmt, stream),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # pymodbus logs every retry at warning/error; the daemon reports device health as events.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL if numeric > logging.DEBUG else numeric)


def get_logger(name: str | None = None, **context: object) -> structlog.typing.FilteringBoundLogger:
    """Return a structlog logger bound with ``context``."""
    log = structlog.get_logger(name) if name else structlog.get_logger()
    return log.bind(**context) if context else log
