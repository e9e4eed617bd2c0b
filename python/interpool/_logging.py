"""Log records from workers reach the main interpreter's logging configuration.

Each interpreter has its own ``logging`` module, so logging configured in the main
interpreter does not apply in workers: a worker's ``log.warning("x")`` would print a bare
``x`` and its INFO and DEBUG records would vanish. When the main interpreter has configured
logging (handlers or levels) at the time a pool is created, interpool does for the user what
the multiprocessing logging cookbook describes (QueueHandler / QueueListener):

* in each worker, a handler that forwards records through an interpool Queue becomes
  ``logging.lastResort``: it handles the records of a worker that has not configured logging
  itself (a worker that configures its own handlers keeps them), and the worker's root level
  lets through what some logger of the main interpreter would accept;
* in the main interpreter, a listener thread rebuilds each record and hands it to the logger
  of the same name, so the main interpreter's levels, filters, handlers and formatters apply.
  Records carry the worker's name as their ``threadName``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._errors import QueueClosed
from ._interpool import Queue


def _configured() -> bool:
    root = logging.getLogger()
    if root.handlers or root.level != logging.WARNING:
        return True
    loggers = logging.Logger.manager.loggerDict.values()
    return any(isinstance(lg, logging.Logger) and (lg.handlers or lg.level) for lg in loggers)


def _lowest_level() -> int:
    """The lowest level any logger of this interpreter accepts (workers need not create
    records that nothing here would handle)."""
    levels = [logging.getLogger().getEffectiveLevel()]
    for lg in logging.Logger.manager.loggerDict.values():
        if isinstance(lg, logging.Logger) and lg.level:
            levels.append(lg.level)
    return min(levels)


# Reports a record that this interpreter's logging failed on (`Handler.handleError`: the
# traceback and the record on stderr, unless `logging.raiseExceptions` is off).
_REPORTER = logging.Handler()


class Listener:
    """Main-interpreter side: hands forwarded records to this interpreter's loggers."""

    def __init__(self, name: str) -> None:
        self.queue: Queue[dict[str, Any]] = Queue()
        self.thread = threading.Thread(target=self._run, name=f"{name}_logging", daemon=False)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                fields = self.queue.get()
            except QueueClosed:
                return
            record = logging.makeLogRecord(fields)
            try:
                logger = logging.getLogger(record.name)
                if logger.isEnabledFor(record.levelno):
                    logger.handle(record)
            except Exception:
                # A filter or handler here failed on this record: report it as logging
                # reports an error in a handler, and go on with the next record (one failure
                # used to end this thread, and every later record was dropped silently).
                _REPORTER.handleError(record)

    def close(self) -> None:
        """Idempotent; from any thread."""
        self.queue.close()  # the listener drains what is queued, then ends
        if self.thread is not threading.current_thread():
            self.thread.join()


def start(name: str) -> tuple[Listener | None, dict[str, Any] | None]:
    """If logging is configured here: a listener, and the settings workers forward with."""
    if not _configured():
        return None, None
    listener = Listener(name)
    return listener, {"queue": listener.queue, "level": _lowest_level()}


class _Forwarder(logging.Handler):
    """Worker side: sends each record to the main interpreter."""

    def __init__(self, queue: Queue[dict[str, Any]], worker: str) -> None:
        super().__init__(logging.NOTSET)
        self.queue = queue
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = dict(vars(record))
            fields["msg"] = record.getMessage()
            fields["args"] = None
            if record.exc_info:
                fields["exc_text"] = record.exc_text or logging.Formatter().formatException(record.exc_info)
            fields["exc_info"] = None
            fields["threadName"] = self.worker
            # Attributes a filter or adapter added may not be sendable: send their text.
            for key, value in fields.items():
                if not isinstance(value, (str, int, float, bool, type(None))):
                    fields[key] = repr(value)
            self.queue.put(fields)
        except QueueClosed:
            # The pool is done (a record logged while the worker shuts down): print it here.
            logging._StderrHandler(logging.NOTSET).handle(record)  # type: ignore[attr-defined]
        except Exception:
            self.handleError(record)


def install(settings: dict[str, Any], worker: str) -> None:
    """In a worker: forward records, unless the worker configures logging itself."""
    logging.lastResort = _Forwarder(settings["queue"], worker)
    logging.getLogger().setLevel(settings["level"])
