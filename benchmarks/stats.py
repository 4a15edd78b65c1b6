"""Statistics and output, with no heavy imports (the load generator starts fast)."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 3)


def emit(document: dict[str, Any]) -> None:
    """Prints the one JSON document a benchmark script outputs."""
    print(json.dumps(document, indent=2))
    sys.stdout.flush()
