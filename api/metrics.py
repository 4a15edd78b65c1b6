"""Prometheus metrics of one app instance, in a registry of its own.

Each uvicorn worker process reports its own counters (scrape each worker, or sum
them); nothing here is a module-level singleton, so tests can build many apps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "eventledger_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "eventledger_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.transfers_posted = Counter(
            "eventledger_transfers_posted",
            "Transfers written by this process, by resulting status (posted, pending...)",
            ["status"],
            registry=self.registry,
        )
        self.transfers_rejected = Counter(
            "eventledger_transfers_rejected",
            "Transfers refused by a business rule (recorded as rejected), by code",
            ["code"],
            registry=self.registry,
        )

    def follow_conflict_retries(self, read: Callable[[], int]) -> None:
        """Exports the ledger's count of optimistic-concurrency retries."""
        self.registry.register(_RetriesCollector(read))

    def follow_projections(self, read: Callable[[], Sequence[tuple[str, int | None]]]) -> None:
        """Exports each projection's state, read at scrape time: ``read`` gives
        (name, the position it is stalled at, or None when it is not stalled)."""
        self.registry.register(_ProjectionsCollector(read))


class _RetriesCollector(Collector):
    def __init__(self, read: Callable[[], int]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "eventledger_concurrency_retries",
            "Commands re-run after losing an optimistic-concurrency race",
            value=self.read(),
        )


class _ProjectionsCollector(Collector):
    def __init__(self, read: Callable[[], Sequence[tuple[str, int | None]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        failed = GaugeMetricFamily(
            "eventledger_projection_failed",
            "1 while the projection is stalled before an event it cannot apply "
            "(GET /v1/projections says which and why), else 0",
            labels=["projection"],
        )
        stalled_at = GaugeMetricFamily(
            "eventledger_projection_stalled_position",
            "Log position of the event a stalled projection cannot get past",
            labels=["projection"],
        )
        for name, position in self.read():
            failed.add_metric([name], 0 if position is None else 1)
            if position is not None:
                stalled_at.add_metric([name], position)
        yield failed
        yield stalled_at
