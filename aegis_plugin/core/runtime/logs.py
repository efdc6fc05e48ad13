"""JSON logs on stdout: one object per line, for the container runtime's log collector."""
from __future__ import annotations

import datetime
import io
import json
import logging
import sys
import threading
import traceback
from typing import Any, Dict

log = logging.getLogger("aegis")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, message, then the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry: Dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        if record.name != "aegis":
            entry["logger"] = record.name
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[0] is not None:
            entry["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str)


class _LogStream(io.TextIOBase):
    """sys.stdout/sys.stderr while serving: whatever the handler or its libraries print becomes JSON log lines."""

    encoding = "utf-8"
    errors = "strict"
    _reentry = threading.local()

    def __init__(self, stream_name: str, level: int, original: Any) -> None:
        super().__init__()
        self._stream_name = stream_name
        self._level = level
        self._original = original
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            self._buffer += text
            lines = self._buffer.split("\n")
            self._buffer = lines.pop()
            if len(self._buffer) > 65536:
                lines.append(self._buffer)
                self._buffer = ""
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._buffer = self._buffer, ""
        self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip() or getattr(self._reentry, "active", False):
            return
        self._reentry.active = True
        try:
            logging.getLogger("aegis.handler").log(self._level, line, extra={"fields": {"stream": self._stream_name}})
        finally:
            self._reentry.active = False


def configure_logging(stream: Any) -> None:
    """JSON lines on `stream` for everything: our logs, the handler's logs, warnings, prints, uncaught errors."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.raiseExceptions = False  # a failing log call must not print to stderr
    logging.captureWarnings(True)
    sys.stdout = _LogStream("stdout", logging.INFO, sys.__stdout__ or stream)
    sys.stderr = _LogStream("stderr", logging.WARNING, sys.__stderr__ or stream)

    def thread_hook(args: Any) -> None:
        if args.exc_type is not SystemExit:
            log.error(
                f"uncaught exception in thread {args.thread.name if args.thread else '?'}",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    def main_hook(exc_type: Any, exc_value: Any, exc_traceback: Any) -> None:
        log.critical("uncaught exception", exc_info=(exc_type, exc_value, exc_traceback))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook
