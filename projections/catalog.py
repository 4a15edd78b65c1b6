"""The projections by name, in the order they are listed and rebuilt."""

from __future__ import annotations

from collections.abc import Iterable

from projections.balances import Balances
from projections.base import Projection
from projections.statements import Statements
from projections.totals import Totals


def all_projections() -> dict[str, Projection]:
    return {p.name: p for p in (Balances(), Statements(), Totals())}


def select_projections(names: Iterable[str] = ()) -> list[Projection]:
    """The projections called ``names`` (all when empty); raises ValueError on an
    unknown name, listing the known ones."""
    known = all_projections()
    names = list(dict.fromkeys(names))
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown projection {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[name] for name in names] if names else list(known.values())
