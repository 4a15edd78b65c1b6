"""Restartable server processes of the HTTP bank workload: ``eventledger serve`` (or a
test-only app factory under uvicorn) on a fixed loopback port, so that clients keep
their URL across a ``kill -9`` and a restart on the same database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.api.servers import EVENTLEDGER, free_port
from tests.support import wait_until_serving

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 30


class ServerProcess:
    """One ``eventledger serve`` (or a test-only app factory under uvicorn) on a fixed
    port, restartable after a kill on the same port and database."""

    def __init__(
        self, workdir: Path, database_url: str, options: tuple[str, ...] = (), app: str = ""
    ) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.options = options
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"bank-serve-{self.port}.log"

    def start(self) -> None:
        if self.app:  # a test-only factory: settings from the environment
            command = [
                sys.executable, "-m", "uvicorn", self.app, "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ]  # fmt: skip
        else:
            command = [
                EVENTLEDGER, "serve", "--port", str(self.port),
                "--database", self.database_url, *self.options,
            ]  # fmt: skip
        environment = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
        environment["EVENTLEDGER_DATABASE_URL"] = self.database_url
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        wait_until_serving(self.url, self.process, START_TIMEOUT_SECONDS, self.log)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill_hard(self) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGCONT)  # a stopped process must not outlive us
        self.signal(signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self.kill_hard()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def servers_running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
