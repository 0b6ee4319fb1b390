"""Log lines for people (text) or for log shippers (one JSON object a line), redacted.

One handler on the root logger serves every process of the service (`tryon worker` and
its pool, `tryon web`): Celery is told not to configure logging (its `setup_logging`
signal has a receiver, see `worker.app`), so its own lines (`... ready.`, task
received/succeeded) come through the same formatter.

Whatever a line holds, the final text passes `kolors_tryon.kling.redact` (tokens,
JWTs, `sk-` keys, Base64 runs, signed URL queries), because a message can quote an API
answer, an exception or a URL that carries them. It runs on the formatted line, so
arguments, tracebacks and JSON fields are all covered.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from kolors_tryon.config import Settings
from kolors_tryon.kling import redact
from kolors_tryon.observe.context import JOB_FIELDS, current_job

__all__ = ["JsonFormatter", "RedactingFormatter", "capture_stdout", "configure_logging"]

TEXT_FORMAT: Final = "[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s%(job)s"
# LogRecord's own attributes: everything else on a record came in through `extra`.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "job"}


class RedactingFormatter(logging.Formatter):
    """Text lines with the job's ids appended, redacted after formatting."""

    def format(self, record: logging.LogRecord) -> str:
        job = {**current_job(), **_extras(record)}
        message = record.getMessage()
        # Ids the message does not already show, so that every line can be grepped by them.
        shown = [
            f"{k}={job[k]}"
            for k in JOB_FIELDS
            if k != "attempt" and job.get(k) and str(job[k]) not in message
        ]
        record.job = f" [{' '.join(shown)}]" if shown else ""
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, process, message, job ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
        }
        data.update(current_job())
        data.update({k: v for k, v in _extras(record).items() if v is not None})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        # Redacted as a whole: the markers it leaves are plain text, so the JSON holds.
        return redact(json.dumps(data, default=str, ensure_ascii=False))


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def configure_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """Give the root logger one handler in the configured format and level.

    Replaces the root logger's handlers (so that a second call, or Celery, does not
    double every line) and lets libraries' loggers propagate to it.

    Returns:
        The handler installed.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter
    if settings.log_format == "json":
        formatter = JsonFormatter()
    else:
        formatter = RedactingFormatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    for name in ("celery", "celery.task", "celery.redirected", "kolors_tryon", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("kolors_tryon").setLevel(settings.log_level)
    # Python warnings (Celery's "running as root") become lines of the same format.
    logging.captureWarnings(True)
    return handler


def capture_stdout(logger_name: str = "stdout") -> None:
    """Turn whatever is written to file descriptor 1 into log lines (JSON mode).

    Celery prints a few lines straight to the terminal, bypassing logging (e.g.
    "worker: Warm shutdown (MainProcess)", written with `os.write`): in JSON mode each
    would be the one line a log shipper cannot parse. File descriptor 1 becomes a pipe
    that a thread reads, line by line, into INFO records of `logger_name`; the handler
    writes to stderr, so nothing loops. Forked pool processes inherit the pipe.
    """
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    os.dup2(write_end, 1)
    os.close(write_end)
    log = logging.getLogger(logger_name)

    def pump() -> None:
        with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    log.info("%s", line.rstrip("\n"))

    threading.Thread(target=pump, name="tryon-stdout", daemon=True).start()
