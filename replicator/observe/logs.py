"""Structured logs: one JSON object per line with the record's ``extra`` fields.

Callers log tags, ids, counts and durations only; no call site passes
plaintext, tokens or keys, and this formatter adds nothing but what it is given.
"""

from __future__ import annotations

import json
import logging
import sys

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    # A request logs a line: the time's text is made once a second, not per line (one attribute,
    # so a thread never pairs one second with another's text).
    _stamp: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        second, text = self._stamp
        if int(record.created) != second:
            text = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._stamp = (int(record.created), text)
        entry = {
            "time": text,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # our middleware logs each request
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs request headers at INFO
