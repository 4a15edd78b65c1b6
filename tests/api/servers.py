"""Real ``eventledger serve`` processes for tests: started on a free loopback port,
waited for, and always killed (the whole process group) when the test ends."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.support import wait_until_serving

EVENTLEDGER = str(Path(sys.executable).parent / "eventledger")
START_TIMEOUT_SECONDS = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def kill_hard(self) -> None:
        """kill -9 of the server and its workers: no shutdown code runs."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def running_server(
    workdir: Path, database_url: str, *options: str, settings: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """``settings``: EVENTLEDGER_* variables of the server (none other reach it)."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    environment.update(settings or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [EVENTLEDGER, "serve", "--port", str(port), "--database", database_url, *options],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,  # its own process group, so workers die with it
        )
        server = Server(process, f"http://127.0.0.1:{port}", log_path)
        try:
            wait_until_serving(server.url, process, START_TIMEOUT_SECONDS, server.log)
            yield server
        finally:
            if process.poll() is None:
                server.kill_hard()
