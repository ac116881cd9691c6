"""Logging setup: plain text or one JSON object per line, with room and
participant ids attached to every record logged while serving a client."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time

_CONTEXT: contextvars.ContextVar[dict] = contextvars.ContextVar("pysfu_log_context", default={})


def bind_log_context(**fields: str) -> None:
    """Attach fields (room, participant) to records logged from this task on."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (``record.room`` ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


#: ICE credentials in an SDP: aiortc logs whole SDPs at debug level, and a
#: password lets whoever reads the log answer the connectivity checks.
_ICE_CREDENTIAL = re.compile(r"(a=ice-(?:pwd|ufrag):)\S+")


class RedactFilter(logging.Filter):
    """Replaces ICE passwords and ufrags in a record's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "a=ice-" in message:
            record.msg, record.args = _ICE_CREDENTIAL.sub(r"\1[redacted]", message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context."""

    FIELDS = ("room", "participant")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            if hasattr(record, field):
                entry[field] = getattr(record, field)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{f}={getattr(record, f)}" for f in JsonFormatter.FIELDS if hasattr(record, f))
        return f"{text} [{context}]" if context else text


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger for `pysfu serve`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
