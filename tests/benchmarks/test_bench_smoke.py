"""`make bench` still runs: a smoke run of ``benchmarks/run_all.py --quick``.

Goal: the benchmark suite keeps working as the code under it changes, and its one JSON
document holds every figure, for every implementation, with sane values. Method: run
the quick mode (tiny sizes, one round) in a subprocess and check the shape and the
signs of the figures, never their size: timings on a shared machine are not tested.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import postgres_available

ROOT = Path(__file__).resolve().parent.parent.parent
RUN_ALL = ROOT / "benchmarks" / "run_all.py"
TIMEOUT_SECONDS = 240


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(RUN_ALL), "--quick"],
        cwd=ROOT,
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


@pytest.fixture(scope="module")
def postgres_expected() -> bool:
    if postgres_available() is None:
        return True
    if os.environ.get("CI") == "true":
        pytest.fail("PostgreSQL is required under CI=true")
    return False


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


class TestQuickRun:
    def test_reports_no_errors_and_names_its_machine(
        self, report: dict[str, Any], postgres_expected: bool
    ) -> None:
        expected_errors = {} if postgres_expected else {"inprocess_postgresql"}
        assert set(report["errors"]) == set(expected_errors), report["errors"]
        assert report["quick"] is True
        assert report["machine"]["cpus"] >= 1
        assert report["implementations"][-2:] == ["eventledger_per_command", "crud"]

    def test_inprocess_figures_cover_every_implementation_store_and_thread_count(
        self, report: dict[str, Any], postgres_expected: bool
    ) -> None:
        stores = ["sqlite", "postgresql"] if postgres_expected else ["sqlite"]
        for store in stores:
            for threads in ("threads_1", "threads_16"):
                entry = report["summary"][f"inprocess_{store}"][threads]
                figures = entry["transfers_per_second"]
                assert set(figures) == set(report["implementations"])
                assert all(positive(value) for value in figures.values()), figures
                assert all(positive(value) for value in entry["ratios"].values())
                assert "per_command_vs_crud" in entry["ratios"]
            raw = report["workloads"][f"inprocess_{store}"]["results"]
            assert all(
                run["failures"] == 0 for by_threads in raw.values() for run in by_threads.values()
            ), raw

    def test_http_figures_have_throughput_and_ordered_percentiles(
        self, report: dict[str, Any]
    ) -> None:
        for mode in ("http_single", "http_batch"):
            section = report["summary"][mode]
            for impl in report["implementations"]:
                figures = section[impl]
                assert positive(figures["transfers_per_second"]), (mode, impl)
                assert 0 < figures["p50_ms"] <= figures["p99_ms"], (mode, impl)
            assert all(positive(value) for value in section["ratios"].values())
        for impl, result in report["workloads"]["http"]["results"].items():
            for mode in ("single", "batch"):
                assert result[mode]["non_2xx"] == 0, (impl, mode, result[mode]["sample_error"])

    def test_server_memory_is_measured_after_the_requested_transfers(
        self, report: dict[str, Any]
    ) -> None:
        rss = report["summary"]["server_rss"]
        assert rss["transfers_pushed"] >= rss["transfers_requested"]
        assert 10 < rss["server_rss_mib"] <= rss["server_peak_rss_mib"] < 10_000

    def test_read_latency_at_every_history_size(self, report: dict[str, Any]) -> None:
        sizes = report["sizes"]["history_sizes"].split(",")
        reads = report["summary"]["read_latency_p50_ms"]
        assert list(reads) == sizes
        for entry in reads.values():
            assert all(positive(value) for value in entry.values()), entry
        raw = report["workloads"]["read_latency"]["eventledger"]
        assert [raw[size]["account_events"] for size in sizes] == [int(s) for s in sizes]

    def test_store_size_compares_small_and_large_stores(self, report: dict[str, Any]) -> None:
        section = report["summary"]["store_size"]
        small, large = report["sizes"]["store_sizes"].split(",")
        assert section["events_in_store"][small] >= int(small)
        assert section["events_in_store"][large] >= int(large)
        assert set(section["ratio_large_to_small"]) == set(report["implementations"])
        assert all(positive(value) for value in section["ratio_large_to_small"].values())

    def test_every_target_has_a_measured_figure(
        self, report: dict[str, Any], postgres_expected: bool
    ) -> None:
        targets = {k: v for k, v in report["targets"].items() if k != "impl"}
        assert len(targets) == 10
        for name, target in targets.items():
            if "postgresql" in name and not postgres_expected:
                continue
            assert isinstance(target["measured"], int | float), name
            assert isinstance(target["met"], bool), name
