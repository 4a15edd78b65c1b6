"""The access log goes through a queue: same lines, written by another thread, in order."""

from __future__ import annotations

import io
import logging
import threading

from uvicorn.logging import AccessFormatter

from api.logs import queued_handlers


def test_access_lines_are_written_by_a_listener_thread_in_order() -> None:
    logger = logging.getLogger("test.access")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stream = io.StringIO()
    writers: list[str] = []

    class Recording(logging.StreamHandler):  # type: ignore[type-arg]
        def emit(self, record: logging.LogRecord) -> None:
            writers.append(threading.current_thread().name)
            super().emit(record)

    handler = Recording(stream)
    handler.setFormatter(AccessFormatter('%(client_addr)s "%(request_line)s" %(status_code)s'))
    logger.addHandler(handler)
    try:
        with queued_handlers("test.access"):
            assert handler not in logger.handlers
            for number in range(50):
                # uvicorn's access record: (client, method, path, http version, status)
                logger.info(
                    '%s - "%s %s HTTP/%s" %d',
                    "127.0.0.1:5000", "POST", f"/v1/transfers/{number}", "1.1", 201,
                )  # fmt: skip
        assert logger.handlers == [handler]
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines == [
        f'127.0.0.1:5000 "POST /v1/transfers/{number} HTTP/1.1" 201 Created' for number in range(50)
    ]
    assert threading.current_thread().name not in writers


def test_a_logger_without_handlers_is_left_alone() -> None:
    logger = logging.getLogger("test.quiet")
    with queued_handlers("test.quiet"):
        assert logger.handlers == []
    assert logger.handlers == []
