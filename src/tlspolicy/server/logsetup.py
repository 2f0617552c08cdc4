"""Logging to stderr, as plain text or one JSON object per line (``server.log_format``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Fields a log call may pass with ``extra=`` (service/service.py ``log_fields``): JSON lines
# carry them as their own keys, so Loki and Elasticsearch filter by domain or answer without
# parsing the message. The text format keeps only the message, which already says them.
EXTRA_FIELDS = ("domain", "map", "answer", "source", "duration_ms", "reason")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EXTRA_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format shows the caller's file and line or a thread or process: not collecting
    # them (a stack walk per record) makes the log line of each lookup about a quarter
    # cheaper (the logging HOWTO, "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    # asyncpg logs every background reconnect attempt of its pool during an outage; the
    # cache logs the outage once itself, so a dead database does not flood the log.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
