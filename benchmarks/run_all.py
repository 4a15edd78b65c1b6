"""``make bench``: every workload, every implementation, one JSON document.

Runs each workload script in its own process (bounded in time; a script killed by
its timeout stops its servers and drops its PostgreSQL schema on the way out) and
prints ONE JSON document: the machine, the sizes used, per workload the medians of
``--repeats`` runs for eventledger with group commit, eventledger per-command and the
CRUD baseline (``benchmarks/crud_baseline.py``), the ratios between them computed
from this same run, and each target of issue 7 with the measured figure.

Workloads (scripts):
- ``inprocess.py``: in-process transfers, 1 and 16 threads, SQLite and PostgreSQL;
- ``http_bench.py``: HTTP single transfers from 64 connections to one
  ``eventledger serve`` on SQLite (p50/p99), 1,000-transfer batches, and the server's
  RSS after ``--rss-transfers`` more transfers;
- ``read_latency.py``: ``get_account`` at 10, 10,000 and 100,000 events of history;
- ``store_size.py``: 16-thread transfers/s with 10k versus 1M events in the store.

Sizes default to the issue's (the 1M-event store and the 1M transfers for RSS take
minutes each); ``--quick`` shrinks everything to a smoke run of well under a minute.
Every size is also a flag. Progress goes to stderr; stdout is the JSON alone.

Run: ``make bench`` or ``.venv/bin/python benchmarks/run_all.py [--quick] [--skip NAME]``
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    ROOT,
    emit,
    exit_on_sigterm,
    has_group_commit,
    implementations,
    machine,
    postgres_available,
    run_json,
)

PYTHON = sys.executable
WORKLOADS = ("inprocess_sqlite", "inprocess_postgresql", "http", "read_latency", "store_size")

FULL = {
    "repeats": 3,
    "accounts": 1000,
    "inprocess_duration_seconds": 5.0,
    "http_single_duration_seconds": 8.0,
    "http_batch_duration_seconds": 10.0,
    "http_batch_size": 1000,
    "http_warmup_seconds": 1.0,
    "rss_transfers": 1_000_000,
    "rss_time_cap_seconds": 1800.0,
    "history_sizes": "10,10000,100000",
    "reads": 500,
    "store_sizes": "10000,1000000",
    "store_size_duration_seconds": 5.0,
    "inprocess_warmup_seconds": 1.0,
}
QUICK = {
    "repeats": 1,
    "accounts": 40,
    "inprocess_duration_seconds": 0.3,
    "http_single_duration_seconds": 0.5,
    "http_batch_duration_seconds": 0.5,
    "http_batch_size": 100,
    "http_warmup_seconds": 0.2,
    "rss_transfers": 1000,
    "rss_time_cap_seconds": 30.0,
    "history_sizes": "10,300,1000",
    "reads": 50,
    "store_sizes": "300,1500",
    "store_size_duration_seconds": 0.3,
    "inprocess_warmup_seconds": 0.1,
}

# Issue 7's targets: (name, where the figure is, how it compares, threshold).
TARGETS = (
    ("inprocess_sqlite_16_threads_transfers_per_second", ">=", 4000),
    ("inprocess_postgresql_16_threads_transfers_per_second", ">=", 2000),
    ("inprocess_sqlite_16_threads_vs_crud", ">=", 1.5),
    ("inprocess_postgresql_16_threads_vs_crud", ">=", 1.5),
    ("http_single_transfers_per_second", ">=", 1500),
    ("http_single_p99_ms", "<=", 100),
    ("http_batch_transfers_per_second", ">=", 20000),
    ("read_at_largest_history_p50_ms", "<=", 2),
    ("store_size_large_to_small_ratio", ">=", 0.8),
    ("server_rss_mib", "<=", 300),
)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--skip", action="append", default=[], choices=WORKLOADS)
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None)
    arguments = parser.parse_args()
    profile = QUICK if arguments.quick else FULL
    for name, value in profile.items():
        if getattr(arguments, name) is None:
            setattr(arguments, name, value)
    return arguments


def commands(arguments: argparse.Namespace) -> dict[str, tuple[list[str], float]]:
    """Each workload's command line and its time limit in seconds."""
    a = arguments
    script = str(ROOT / "benchmarks")
    inprocess_seconds = (
        6 * a.repeats * (a.inprocess_duration_seconds + a.inprocess_warmup_seconds) * 3 + 300
    )
    http_seconds = 3 * a.repeats * (
        a.http_single_duration_seconds + a.http_batch_duration_seconds + 2 * a.http_warmup_seconds
    ) + a.rss_time_cap_seconds + 300  # fmt: skip
    inprocess = [PYTHON, f"{script}/inprocess.py", "--threads", "1,16",
                 "--duration-seconds", str(a.inprocess_duration_seconds),
                 "--warmup-seconds", str(a.inprocess_warmup_seconds),
                 "--repeats", str(a.repeats), "--accounts", str(a.accounts)]  # fmt: skip
    return {
        "inprocess_sqlite": ([*inprocess, "--store", "sqlite"], inprocess_seconds),
        "inprocess_postgresql": ([*inprocess, "--store", "postgresql"], inprocess_seconds),
        "http": (
            [
                PYTHON,
                f"{script}/http_bench.py",
                "--repeats",
                str(a.repeats),
                "--accounts",
                str(a.accounts),
                "--single-duration-seconds",
                str(a.http_single_duration_seconds),
                "--batch-duration-seconds",
                str(a.http_batch_duration_seconds),
                "--batch-size",
                str(a.http_batch_size),
                "--warmup-seconds",
                str(a.http_warmup_seconds),
                "--rss-transfers",
                str(a.rss_transfers),
                "--rss-time-cap-seconds",
                str(a.rss_time_cap_seconds),
            ],  # fmt: skip
            http_seconds,
        ),
        "read_latency": (
            [
                PYTHON,
                f"{script}/read_latency.py",
                "--sizes",
                a.history_sizes,
                "--reads",
                str(a.reads),
            ],  # fmt: skip
            3600,
        ),
        "store_size": (
            [
                PYTHON,
                f"{script}/store_size.py",
                "--sizes",
                a.store_sizes,
                "--duration-seconds",
                str(a.store_size_duration_seconds),
                "--warmup-seconds",
                str(a.inprocess_warmup_seconds),
                "--repeats",
                str(a.repeats),
                "--accounts",
                str(a.accounts),
            ],  # fmt: skip
            7200,
        ),
    }


def ratios(figures: dict[str, float]) -> dict[str, float | None]:
    """``a_vs_b`` = a / b for each pair of implementations, group commit first."""
    names = [name for name in implementations() if name in figures]
    return {
        f"{short(a)}_vs_{short(b)}": round(figures[a] / figures[b], 3) if figures[b] else None
        for a, b in itertools.combinations(names, 2)
    }


def short(impl: str) -> str:
    return impl.removeprefix("eventledger_")


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """The headline figures and ratios from the workloads' documents."""
    summary: dict[str, Any] = {}
    for store in ("sqlite", "postgresql"):
        document = raw.get(f"inprocess_{store}")
        if document is None:
            continue
        entry: dict[str, Any] = {}
        for threads in ("1", "16"):
            figures = {
                impl: by_threads[threads]["transfers_per_second"]
                for impl, by_threads in document["results"].items()
            }
            entry[f"threads_{threads}"] = {
                "transfers_per_second": figures,
                "ratios": ratios(figures),
            }
        summary[f"inprocess_{store}"] = entry
    http = raw.get("http")
    if http is not None:
        for mode in ("single", "batch"):
            results = {impl: value[mode] for impl, value in http["results"].items()}
            figures = {impl: value["transfers_per_second"] for impl, value in results.items()}
            summary[f"http_{mode}"] = {
                impl: {key: value[key] for key in ("transfers_per_second", "p50_ms", "p99_ms")}
                for impl, value in results.items()
            }
            summary[f"http_{mode}"]["ratios"] = ratios(figures)
        rss = http["results"][http["rss_impl"]].get("rss")
        summary["server_rss"] = {"impl": http["rss_impl"], **rss} if rss else None
    reads = raw.get("read_latency")
    if reads is not None:
        summary["read_latency_p50_ms"] = {
            size: {
                "eventledger_cached": entry["cached"]["p50_ms"],
                "eventledger_uncached": entry["uncached"]["p50_ms"],
                "eventledger_cold": entry["cold_ms"],
                "crud": reads["crud"][size]["p50_ms"],
            }
            for size, entry in reads["eventledger"].items()
        }
    sizes = raw.get("store_size")
    if sizes is not None:
        summary["store_size"] = {
            "transfers_per_second": {
                size: entry["transfers_per_second_median"] for size, entry in sizes["sizes"].items()
            },
            "events_in_store": {
                size: entry["events_in_store"] for size, entry in sizes["sizes"].items()
            },
            "ratio_large_to_small": sizes["ratio_large_to_small"],
        }
    return summary


def measured_targets(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 7's targets against eventledger's default mode (group commit if present)."""
    impl = implementations()[0]
    figures: dict[str, float | None] = {}

    def pick(*path: str) -> float | None:
        value: Any = summary
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value if isinstance(value, int | float) else None

    for store in ("sqlite", "postgresql"):
        figures[f"inprocess_{store}_16_threads_transfers_per_second"] = pick(
            f"inprocess_{store}", "threads_16", "transfers_per_second", impl
        )
        figures[f"inprocess_{store}_16_threads_vs_crud"] = pick(
            f"inprocess_{store}", "threads_16", "ratios", f"{short(impl)}_vs_crud"
        )
    figures["http_single_transfers_per_second"] = pick("http_single", impl, "transfers_per_second")
    figures["http_single_p99_ms"] = pick("http_single", impl, "p99_ms")
    figures["http_batch_transfers_per_second"] = pick("http_batch", impl, "transfers_per_second")
    reads = summary.get("read_latency_p50_ms") or {}
    largest = max(reads, key=int) if reads else ""
    figures["read_at_largest_history_p50_ms"] = pick(
        "read_latency_p50_ms", largest, "eventledger_cached"
    )
    figures["store_size_large_to_small_ratio"] = pick("store_size", "ratio_large_to_small", impl)
    figures["server_rss_mib"] = pick("server_rss", "server_rss_mib")
    result: dict[str, Any] = {"impl": impl}
    for name, comparison, threshold in TARGETS:
        value = figures.get(name)
        met = None
        if value is not None:
            met = value >= threshold if comparison == ">=" else value <= threshold
        result[name] = {"target": f"{comparison} {threshold}", "measured": value, "met": met}
    return result


def main() -> None:
    exit_on_sigterm()
    arguments = parse_arguments()
    started = time.perf_counter()
    document: dict[str, Any] = {
        "benchmark": "eventledger make bench",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": arguments.quick,
        "machine": machine(),
        "implementations": implementations(),
        "group_commit_available": has_group_commit(),
        "sizes": {name: getattr(arguments, name) for name in FULL},
    }
    raw: dict[str, Any] = {}
    errors: dict[str, str] = {}
    skipped = set(arguments.skip)
    postgres_problem = postgres_available()
    if postgres_problem is not None and "inprocess_postgresql" not in skipped:
        errors["inprocess_postgresql"] = f"PostgreSQL not reachable: {postgres_problem}"
        skipped.add("inprocess_postgresql")
    for name, (command, timeout_seconds) in commands(arguments).items():
        if name in skipped:
            continue
        print(f"[bench] {name} (limit {timeout_seconds:.0f}s) ...", file=sys.stderr, flush=True)
        workload_started = time.perf_counter()
        try:
            raw[name] = run_json(command, timeout_seconds)
        except (RuntimeError, TimeoutError, ValueError) as error:
            errors[name] = str(error)
        print(
            f"[bench] {name} done in {time.perf_counter() - workload_started:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    summary = summarise(raw)
    document["summary"] = summary
    document["targets"] = measured_targets(summary)
    document["errors"] = errors
    document["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    document["workloads"] = raw
    emit(document)


if __name__ == "__main__":
    main()
