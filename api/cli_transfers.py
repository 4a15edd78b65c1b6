"""CLI verbs for money movement beyond one transfer: post, void, reverse, batch.

Registered on the root command by ``api.cli``."""

from __future__ import annotations

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

BATCH_FILE_SIZE_MAX_BYTES = 4 * 1024 * 1024


def post(
    transfer_id: UUID,
    amount: Annotated[
        int | None, typer.Option("--amount", help="Capture only this much; the rest is released.")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Capture a pending transfer (all of it, or --amount)."""
    with open_ledger(database) as ledger:
        transfer = ledger.post_pending(transfer_id, amount)
    emit(transfer, as_json, render_transfer)


def void(transfer_id: UUID, database: DatabaseOption = None, as_json: JsonOption = False) -> None:
    """Release a pending transfer's reservation."""
    with open_ledger(database) as ledger:
        transfer = ledger.void_pending(transfer_id)
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
        Path, typer.Argument(help='JSON: {"transfers": [...]} as POST /v1/transfers/batch.')
    ],
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply 1..1000 transfers from a file, all of them or none."""
    items = read_batch_file(file)
    with open_ledger(database) as ledger:
        views = ledger.transfer_batch(items)
    emit(views, as_json, lambda all_views: [render_transfer(v) for v in all_views])
    if not as_json:
        stdout.print(f"{len(views)} transfers applied atomically", highlight=False)


def read_batch_file(file: Path) -> list[dict[str, Any]]:
    """The batch's items, validated like the HTTP body; one clear line if not."""
    from pydantic import ValidationError

    from api.schemas import CreateBatch

    try:
        if file.stat().st_size > BATCH_FILE_SIZE_MAX_BYTES:
            raise fail(f"{file} is larger than {BATCH_FILE_SIZE_MAX_BYTES} bytes", 2)
        body = CreateBatch.model_validate_json(file.read_bytes())
    except OSError as error:
        raise fail(f"cannot read {file}: {error.strerror}", 2) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise fail(f"{file}: {where}: {first['msg']}", 2) from None
    return [item.batch_item(item.id) for item in body.transfers]
