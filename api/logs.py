"""Log records written by a background thread, not by the event loop.

A handler writing to stderr makes a system call per record, and a system call releases
the GIL: on a busy server the event loop then waits for it behind the group-commit
writer and the projection threads, and every request pays. Behind a ``QueueHandler``
the event loop only appends to a queue; a ``QueueListener`` thread does the writing,
in order, and flushes what is queued when the server stops.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import QueueHandler, QueueListener

# The access log writes one record per request; the others are rare.
QUEUED_LOGGERS = ("uvicorn.access",)


class _PassRecords(QueueHandler):
    """Queues each record as it is: the listener's handlers format it.

    The stock ``prepare`` formats the message here and drops ``args``, which
    uvicorn's access formatter needs (it reads the client, method and path from them).
    """

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


@contextmanager
def queued_handlers(*names: str) -> Iterator[None]:
    """Moves the handlers of the named loggers behind one queue while inside."""
    loggers = [logging.getLogger(name) for name in names]
    moved = {logger.name: list(logger.handlers) for logger in loggers}
    handlers = [handler for logger in loggers for handler in logger.handlers]
    if not handlers:
        yield
        return
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, *handlers, respect_handler_level=True)
    for logger in loggers:
        for handler in moved[logger.name]:
            logger.removeHandler(handler)
        if moved[logger.name]:
            logger.addHandler(_PassRecords(records))
    listener.start()
    try:
        yield
    finally:
        for logger in loggers:
            for handler in list(logger.handlers):
                if isinstance(handler, _PassRecords):
                    logger.removeHandler(handler)
            for handler in moved[logger.name]:
                logger.addHandler(handler)
        listener.stop()
