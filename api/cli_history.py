"""``eventledger history``'s table, fitted to the terminal.

Version, amount and balance are always printed whole. When the full table (the
transfer id in full, the time with its zone) is wider than the terminal, it gives
way in this order until it fits: the time drops its "+00:00" (every time is UTC),
the transfer id shortens to its first 8 characters, the transfer column goes, then
the time column goes. The event column is the one left to shrink on a terminal
narrower still. ``--json`` prints everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

SHORT_ID_LENGTH = 8
# Measures a table's natural width (a console's own measure stops at its width).
WIDTH_UNBOUNDED = 10_000


@dataclass(frozen=True)
class Layout:
    transfer: str  # "full", "short" or "none"
    time: str  # "zoned", "utc" or "none"


# Widest first; the first that fits the terminal is printed.
LAYOUTS = (
    Layout("full", "zoned"),
    Layout("full", "utc"),
    Layout("short", "utc"),
    Layout("none", "utc"),
    Layout("none", "none"),
)


def history_rows(events: list[Any]) -> list[dict[str, str]]:
    """One row per event, with the running balance after it."""
    rows = []
    balance = 0
    for event in events:
        data = event.data
        amount = ""
        if event.type in ("Credited", "Debited"):
            balance = data["balance_after"]
            sign = "+" if event.type == "Credited" else "-"
            amount = f"{sign}{data['amount']}"
        elif "amount" in data:
            amount = f"({data['amount']})"
        rows.append(
            {
                "version": str(event.version),
                "time": event.timestamp.isoformat(timespec="seconds"),
                "event": event.type,
                "amount": amount,
                "balance": str(balance),
                "transfer": str(data.get("transfer_id", "")),
            }
        )
    return rows


# Never shrunk below their widest cell: these are the figures a reader came for.
WHOLE = ("version", "amount", "balance")


def history_table(rows: list[dict[str, str]], layout: Layout) -> Table:
    keys = ["version"]
    if layout.time != "none":
        keys.append("time")
    keys += ["event", "amount", "balance"]
    if layout.transfer != "none":
        keys.append("transfer")
    cells = [[_cell(row, key, layout) for key in keys] for row in rows]
    # No rules: at 80 columns the borders would cost the time column its place.
    table = Table(box=None, pad_edge=False, header_style="bold")
    for index, key in enumerate(keys):
        header = "time (UTC)" if key == "time" and layout.time == "utc" else key
        widest = max([len(header), *(len(row[index]) for row in cells)])
        # Nothing is cut with "…": a cell too wide for the terminal folds instead.
        table.add_column(
            header,
            no_wrap=True,
            overflow="fold",
            min_width=widest if key in WHOLE else None,
        )
    for row_cells in cells:
        table.add_row(*row_cells)
    return table


def _cell(row: dict[str, str], key: str, layout: Layout) -> str:
    if key == "time" and layout.time == "utc":
        return row["time"].removesuffix("+00:00").replace("T", " ")
    if key == "transfer" and layout.transfer == "short":
        return row["transfer"][:SHORT_ID_LENGTH]
    return row[key]


def fitted_history_table(rows: list[dict[str, str]], console: Console) -> Table:
    """The widest layout whose table fits ``console``'s width; else the narrowest."""
    unbounded = console.options.update_width(WIDTH_UNBOUNDED)
    for layout in LAYOUTS:
        table = history_table(rows, layout)
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            return table
    return table


def render_history(events: list[Any], console: Console) -> None:
    console.print(fitted_history_table(history_rows(events), console))
