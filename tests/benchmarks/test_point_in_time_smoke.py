"""``benchmarks/point_in_time.py`` still runs: a tiny run (500 events, a real server,
encrypted events) prints every figure the README quotes. Timings are not tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "benchmarks" / "point_in_time.py"


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and value > 0


def test_a_tiny_run_has_every_figure() -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", "500", "--instants", "2", "--repeats", "1",
         "--before-repeats", "1", "--http", "--fanouts", "2,16", "--cipher"],
        cwd=ROOT, capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr.decode()[-2000:]
    report: dict[str, Any] = json.loads(completed.stdout)
    assert report["account_events"] == 500 and report["snapshots"] >= 4
    inprocess = report["inprocess"]
    assert inprocess["answers_equal_replay"] is True
    assert set(inprocess["median_ms"]) == {"before", "at", "version", "at_bisection"}
    assert all(positive(value) for value in inprocess["median_ms"].values())
    assert [1 < entry["version"] < 500 for entry in inprocess["instants"]] == [True, True]
    assert set(report["search_only_ms_by_fanout"]) == {"2", "16"}
    after = report["http"]["after"]
    assert positive(after["get_at_ms"]) and positive(after["get_version_ms"])
    concurrent = after["concurrent"]
    assert concurrent["requests"] == 8 and positive(concurrent["median_seconds"])
    assert 10 < concurrent["peak_rss_mib_before"] <= concurrent["peak_rss_mib_after"] < 10_000
