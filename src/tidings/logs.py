"""Structured logs: each record written while a message is handled names that message.

:class:`ContextFilter` adds these attributes to every record that goes through the handler it is
attached to, read from :func:`tidings.current` (and the current OpenTelemetry span):

==================  ==================================================================
``message_id``      the id of the message being handled
``correlation_id``  the conversation it belongs to (its own id when it started one)
``causation_id``    the message whose handler published it, if any
``trace_id``        32 hex digits of the current span's trace, when a tracer provider is
``span_id``         set (the ``process`` span, or a span the handler started inside it)
``topic``           the topic the message was published to
``route``           the route's name (the handler's qualified name unless named)
``group``           the route's consumer group
``attempt``         1 for the first delivery to the group, 2 for the first retry…
``worker_id``       the process's number among ``tidings run --workers N`` (any record)
==================  ==================================================================

That holds wherever the record is written: in a handler or a middleware, sync or async, in a
consume loop's worker, in ``publish_and_wait``, in Tasks a handler started. Outside handling the
attributes are None. An attribute the record already has (``extra={"topic": …}``) is kept.

:class:`JsonFormatter` writes one JSON object per line, :class:`TextFormatter` a line for
people; ``tidings.logs.configure("json", "info")`` sets both up on the root logger in one line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from tidings.context import current
from tidings.message import CAUSATION_ID, CORRELATION_ID
from tidings.workers import worker_id

try:
    from opentelemetry.trace import get_current_span
except ImportError:  # tracing is optional: records then carry no trace ids
    get_current_span = None  # type: ignore[assignment]

__all__ = [
    "FIELDS",
    "FORMATS",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "configure",
]

FIELDS = (
    "message_id",
    "correlation_id",
    "causation_id",
    "trace_id",
    "span_id",
    "topic",
    "route",
    "group",
    "attempt",
    "worker_id",
)
"""The attributes :class:`ContextFilter` adds to each record, in the order they are written."""

FORMATS = ("text", "json")
"""What :func:`configure` writes."""

_OUTSIDE = dict.fromkeys(FIELDS)
# What a record has besides the caller's `extra`: its own attributes, those formatting adds, ours.
_NOT_EXTRA = {
    *logging.LogRecord("", 0, "", 0, "", None, None).__dict__,
    "message",
    "asctime",
    *FIELDS,
}


class ContextFilter(logging.Filter):
    """Adds :data:`FIELDS` to each record: the message being handled where it was written.

    Attach it to a handler (not a logger: a logger's filters skip records of its children). It
    never drops a record. The worker's number is read when the filter is made.
    """

    def __init__(self) -> None:
        super().__init__()
        self._worker_id = worker_id()

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        fields.setdefault("worker_id", self._worker_id)
        here = current()
        if here is None:
            for name, value in _OUTSIDE.items():
                fields.setdefault(name, value)
            return True
        message = here.message
        headers = message.headers
        trace_id = span_id = None
        if get_current_span is not None:
            span = get_current_span().get_span_context()
            if span.is_valid:
                trace_id, span_id = f"{span.trace_id:032x}", f"{span.span_id:016x}"
        for name, value in (
            ("message_id", message.id),
            ("correlation_id", headers.get(CORRELATION_ID) or message.id),
            ("causation_id", headers.get(CAUSATION_ID)),
            ("trace_id", trace_id),
            ("span_id", span_id),
            ("topic", here.topic),
            ("route", here.route or None),
            ("group", here.group or None),
            ("attempt", here.attempt),
        ):
            fields.setdefault(name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``exception`` and ``stack`` (when there is one), the :data:`FIELDS`
    that are not None, then the caller's ``extra`` attributes (as text when JSON has no type
    for them)."""

    def format(self, record: logging.LogRecord) -> str:
        written: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            written["exception"] = record.exc_text
        if record.stack_info:
            written["stack"] = self.formatStack(record.stack_info)
        fields = record.__dict__
        for name in FIELDS:
            if (value := fields.get(name)) is not None:
                written[name] = value
        for name, value in fields.items():
            if name not in _NOT_EXTRA:
                written[name] = value
        return msgspec.json.encode(written, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """``fmt`` (by default time, level, logger and message), then ``[topic route attempt
    message id]`` while a message is handled: what a person reading along needs to tell
    messages apart; :class:`JsonFormatter` writes every field."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:  # before any traceback
        text = super().formatMessage(record)
        message_id = getattr(record, "message_id", None)
        if message_id is None:
            return text
        topic, route, attempt = (getattr(record, n, None) for n in ("topic", "route", "attempt"))
        return f"{text} [{topic} {route or '-'} attempt {attempt} message {message_id}]"


def configure(
    format: Literal["text", "json"] = "text",
    level: int | str = "INFO",
    *,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Send the root logger's records at ``level`` and above to ``handler`` (default: a
    StreamHandler on stderr), written as ``format``, each with the :data:`FIELDS` of the
    message being handled. Returns the handler.

    Replaces the root logger's handlers, like ``logging.basicConfig(force=True)``, so calling
    it again changes the format. A ``handler`` that has a formatter of its own keeps it. Raises
    ValueError for an unknown format or level.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r}: choose one of {', '.join(FORMATS)}")
    if isinstance(level, str):
        level = level.upper()
        if level not in logging.getLevelNamesMapping():
            raise ValueError(f"unknown log level {level.lower()!r}")
    handler = handler or logging.StreamHandler()
    if handler.formatter is None:
        handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
