"""The one place logging is configured: structlog, JSON lines when not a TTY, console when it is.

Events are snake_case names with key/value context (``log.info("device_offline", device="c1")``),
never prose with values spliced in, so they can be filtered and counted. Standard-library
``logging`` records (pymodbus) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "json", "console"]
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


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
    stream = stream if stream is not None else sys.stderr
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
