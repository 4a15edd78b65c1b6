"""CLI verbs for money movement beyond one transfer: post, void, reverse, batch.

Registered on the root command by ``api.cli``. ``--idempotency-key`` derives ids as
the HTTP routes do from the header (``api.idempotency``), so a rerun replays.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer

from api.cli_support import (
    DatabaseOption,
    JsonOption,
    emit,
    fail,
    open_ledger,
    render_transfer,
    stdout,
)
from api.idempotency import command_id, settlement_request_id

BATCH_FILE_SIZE_MAX_BYTES = 4 * 1024 * 1024
# Up to this many transfers a batch prints a line each; more, only its summary.
BATCH_LINES_MAX = 20

IdempotencyKeyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="As the HTTP header: the same key and request again replays, not repeats.",
    ),
]


def post(
    transfer_id: UUID,
    amount: Annotated[
        int | None, typer.Option("--amount", help="Capture only this much; the rest is released.")
    ] = None,
    idempotency_key: IdempotencyKeyOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Capture a pending transfer (all of it, or --amount).

    The same post again (same amount) answers the posted transfer, marked replayed."""
    with open_ledger(database) as ledger:
        request_id = settlement_request_id(idempotency_key)
        transfer = ledger.post_pending(transfer_id, amount, request_id)
    emit(transfer, as_json, render_transfer)


def void(
    transfer_id: UUID,
    idempotency_key: IdempotencyKeyOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Release a pending transfer's reservation; a voided one is answered again."""
    with open_ledger(database) as ledger:
        transfer = ledger.void_pending(transfer_id, settlement_request_id(idempotency_key))
    emit(transfer, as_json, render_transfer)


def reverse(
    transfer_id: UUID,
    amount: Annotated[
        int | None, typer.Option("--amount", help="Reverse only this much (default: the rest).")
    ] = None,
    reversal_id: Annotated[
        UUID | None, typer.Option("--id", help="Reversal id; the same id again is a safe retry.")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Post a compensating transfer for a posted one."""
    with open_ledger(database) as ledger:
        transfer = ledger.reverse(transfer_id, amount, reversal_id)
    emit(transfer, as_json, render_transfer)


def batch(
    file: Annotated[
        Path,
        typer.Argument(
            help='JSON: {"transfers": [...]} as POST /v1/transfers/batch, or the bare '
            "list; - reads standard input."
        ),
    ],
    idempotency_key: IdempotencyKeyOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply 1..1000 transfers from a file, all of them or none.

    With --idempotency-key, item i without an id gets uuid5 of the key + ":i" (as over
    HTTP), so the same file and key again replays the batch instead of posting it twice.
    """
    transfers = read_batch(file)
    items = [
        item.batch_item(
            item.id
            if idempotency_key is None
            else command_id(item.id, idempotency_key, f":{index}")
        )
        for index, item in enumerate(transfers)
    ]
    with open_ledger(database) as ledger:
        views = ledger.transfer_batch(items)
    if as_json:
        emit(views, as_json, render_transfer)
        return
    if len(views) <= BATCH_LINES_MAX:
        for view in views:
            render_transfer(view)
    stdout.print(batch_summary(views), highlight=False)


def batch_summary(views: list[Any]) -> str:
    """One line for the whole batch: how many, of which status, how much, replayed."""
    statuses = Counter(view.status for view in views)
    totals = Counter[str]()
    for view in views:
        totals[view.currency] += view.amount
    told = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items()))
    money = ", ".join(f"{total} {currency}" for currency, total in sorted(totals.items()))
    done = "replayed (applied before)" if all(v.replayed for v in views) else "applied atomically"
    line = f"{len(views)} transfers {done}: {told}; {money}"
    if len(views) > BATCH_LINES_MAX:
        line += "; --json lists each"
    return line


def read_batch(file: Path) -> list[Any]:
    """The batch's transfers, validated like the HTTP body; one clear line if not.

    A bare JSON list is read as the body's ``transfers``. Errors name the item by its
    index and the field by its path, like ``item 3: amount: ...``.
    """
    from pydantic import ValidationError

    from api.schemas import CreateBatch

    name = "standard input" if str(file) == "-" else str(file)
    raw = _read_batch_bytes(file, name)
    if raw.lstrip()[:1] == b"[":
        raw = b'{"transfers":' + raw + b"}"
    try:
        return list(CreateBatch.model_validate_json(raw).transfers)
    except ValidationError as error:
        first = error.errors()[0]
        raise fail(f"{name}: {_location(first['loc'])}: {first['msg']}", 2) from None


def _read_batch_bytes(file: Path, name: str) -> bytes:
    try:
        if str(file) == "-":
            raw = sys.stdin.buffer.read(BATCH_FILE_SIZE_MAX_BYTES + 1)
        else:
            with file.open("rb") as opened:
                raw = opened.read(BATCH_FILE_SIZE_MAX_BYTES + 1)
    except OSError as error:
        raise fail(f"cannot read {name}: {error.strerror}", 2) from None
    if len(raw) > BATCH_FILE_SIZE_MAX_BYTES:
        raise fail(f"{name} is larger than {BATCH_FILE_SIZE_MAX_BYTES} bytes", 2)
    return raw


def _location(loc: tuple[int | str, ...]) -> str:
    """``("transfers", 3, "amount")`` -> ``item 3: amount``; the top level is named."""
    if not loc:
        return 'the whole document (a list of transfers, or {"transfers": [...]})'
    if loc[0] == "transfers" and len(loc) >= 2 and isinstance(loc[1], int):
        rest = ".".join(str(part) for part in loc[2:])
        return f"item {loc[1]}" + (f": {rest}" if rest else "")
    return ".".join(str(part) for part in loc)
