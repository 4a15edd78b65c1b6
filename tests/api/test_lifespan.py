"""The app's lifespan starts every background part and stops every part it started:
on shutdown, and when a later part fails to start.

Method: start the app on a SQLite file with every part on and look for each part's
thread by name, while it runs and after it stopped. For the failure, plant an index
named like one of the audit chain's tables in the views database, so the audit part
(started after the projection runner) fails with a real SQLite error; then the
runner, already started, must have been stopped.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from infrastructure.settings import Settings

BACKGROUND_THREADS = {"projections", "audit-chain-follower", "expiry-sweeper"}


def background_threads_since(before: set[threading.Thread]) -> set[str]:
    """Names of the background parts' threads alive now that were not before."""
    return {
        thread.name
        for thread in threading.enumerate()
        if thread.name in BACKGROUND_THREADS and thread not in before
    }


def every_part_on(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'ledger.db'}",
        run_projections=True,
        pending_sweep_interval_seconds=0.05,
    )


def test_starts_every_background_part_and_stops_them_all(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with TestClient(create_app(every_part_on(tmp_path))) as client:
        assert client.get("/healthz").status_code == 200
        assert background_threads_since(before) == BACKGROUND_THREADS
    assert background_threads_since(before) == set()


def test_a_part_that_fails_to_start_stops_those_started_before_it(tmp_path: Path) -> None:
    with closing(sqlite3.connect(tmp_path / "ledger.views.db")) as views:
        views.execute("CREATE TABLE planted (position INTEGER)")
        views.execute("CREATE INDEX audit_chain_head ON planted (position)")
        views.commit()
    app = create_app(every_part_on(tmp_path))
    before = set(threading.enumerate())
    with pytest.raises(sqlite3.OperationalError, match="audit_chain_head"), TestClient(app):
        pass
    runner = app.state.projection_runner
    assert runner is not None and not runner.is_alive
    assert background_threads_since(before) == set()
