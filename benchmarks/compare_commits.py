"""Two checkouts, the same workloads, alternating runs: is the change any slower?

A shared machine's speed drifts by tens of percent within minutes, so comparing two
``make bench`` runs taken at different times says little. This runs each workload
for the ``--before`` checkout, then for ``--after``, and again, ``--rounds`` times,
each in a process of its own with that checkout first on ``PYTHONPATH`` (its scripts,
its code), and prints ONE JSON document: every run's figure, the medians, and the
after/before ratio of the medians, measured in this one run.

Workloads: in-process transfers with 16 threads on SQLite and on PostgreSQL, and HTTP
single transfers from 64 connections to ``eventledger serve`` on SQLite, all in the
default (group-commit) mode.

Run: ``.venv/bin/python benchmarks/compare_commits.py --before DIR --after DIR``
(make a checkout of the earlier commit with ``git worktree add DIR COMMIT``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IMPL = "eventledger_group_commit"
TIMEOUT_SECONDS = 900


def workloads(arguments: argparse.Namespace) -> dict[str, list[str]]:
    inprocess = [
        "benchmarks/inprocess.py", "--impls", IMPL, "--threads", "16",
        "--duration-seconds", str(arguments.duration_seconds), "--warmup-seconds", "1",
        "--repeats", "1", "--accounts", str(arguments.accounts),
    ]  # fmt: skip
    return {
        "inprocess_sqlite_16_threads": [*inprocess, "--store", "sqlite"],
        "inprocess_postgresql_16_threads": [*inprocess, "--store", "postgresql"],
        "http_single": [
            "benchmarks/http_bench.py",
            "--impls",
            IMPL,
            "--repeats",
            "1",
            "--accounts",
            str(arguments.accounts),
            "--single-duration-seconds",
            str(arguments.duration_seconds),
            "--batch-duration-seconds",
            "0.5",
            "--batch-size",
            "100",
            "--warmup-seconds",
            "1",
            "--rss-transfers",
            "0",
        ],  # fmt: skip
    }


def figure(name: str, document: dict[str, Any]) -> dict[str, float]:
    result = document["results"][IMPL]
    if name == "http_single":
        single = result["single"]
        return {"per_second": single["transfers_per_second"], "p99_ms": single["p99_ms"]}
    return {"per_second": result["16"]["transfers_per_second"]}


def run(checkout: Path, script: list[str]) -> dict[str, Any]:
    environment = {**os.environ, "PYTHONPATH": str(checkout)}
    completed = subprocess.run(
        [sys.executable, *script],
        cwd=checkout,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=True,
    )
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-seconds", type=float, default=5.0)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--workloads", default="", help="comma-separated; default: all")
    arguments = parser.parse_args()
    chosen = workloads(arguments)
    if arguments.workloads:
        chosen = {name: chosen[name] for name in arguments.workloads.split(",")}
    checkouts = {"before": arguments.before.resolve(), "after": arguments.after.resolve()}
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for number in range(arguments.rounds):
        for name, script in chosen.items():
            for label, checkout in checkouts.items():
                print(f"round {number + 1} {name} {label}", file=sys.stderr, flush=True)
                measured = figure(name, run(checkout, script))
                runs.setdefault(name, {}).setdefault(label, []).append(measured)
    summary: dict[str, Any] = {}
    for name, by_label in runs.items():
        medians = {
            label: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for label, results in by_label.items()
        }
        per_second = medians["after"]["per_second"] / medians["before"]["per_second"]
        summary[name] = {
            "runs": by_label,
            "medians": medians,
            "after_vs_before_per_second": round(per_second, 3),
        }
    document = {
        "benchmark": "compare_commits",
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_end": os.getloadavg(),
        "checkouts": {label: str(path) for label, path in checkouts.items()},
        "rounds": arguments.rounds,
        "duration_seconds": arguments.duration_seconds,
        "workloads": summary,
    }
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
