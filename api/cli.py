"""The ``eventledger`` command line.

Human-readable output by default, ``--json`` for scripts. A ``LedgerError`` or a bad
setting prints one line to stderr and exits non-zero, with no traceback.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="eventledger",
    help="An event-sourced, double-entry money ledger.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    app()
