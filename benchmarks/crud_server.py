"""The CRUD baseline behind the same HTTP routes the HTTP benchmarks call.

FastAPI with pydantic bodies and sync endpoints (run in the thread pool, like
eventledger's), under uvicorn, one process. Only what the benchmarks use:
POST /v1/transfers, POST /v1/transfers/batch, GET /v1/accounts/{id}.

Run: ``.venv/bin/python benchmarks/crud_server.py --port 8001 --database /tmp/crud.db``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel, Field, StrictInt  # noqa: E402

from benchmarks.crud_baseline import AccountNotFound, CrudError, CrudLedger  # noqa: E402


class TransferIn(BaseModel):
    id: UUID | None = None
    from_account: UUID
    to_account: UUID
    amount: StrictInt
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class BatchIn(BaseModel):
    transfers: Annotated[list[TransferIn], Field(min_length=1, max_length=1000)]


def create_app(crud: CrudLedger) -> FastAPI:
    app = FastAPI(title="crud baseline")

    @app.exception_handler(CrudError)
    def refused(request: Request, error: CrudError) -> JSONResponse:
        status = 404 if isinstance(error, AccountNotFound) else 422
        return JSONResponse({"code": error.code, "detail": str(error)}, status_code=status)

    @app.post("/v1/transfers", status_code=201)
    def create_transfer(body: TransferIn) -> dict[str, Any]:
        return crud.transfer(
            body.from_account, body.to_account, body.amount, body.currency, body.id
        )

    @app.post("/v1/transfers/batch", status_code=201)
    def create_batch(body: BatchIn) -> dict[str, Any]:
        items = [
            {"transfer_id": t.id, "from_account": t.from_account, "to_account": t.to_account,
             "amount": t.amount, "currency": t.currency}
            for t in body.transfers
        ]  # fmt: skip
        return {"transfers": crud.transfer_batch(items)}

    @app.get("/v1/accounts/{account_id}")
    def get_account(account_id: UUID) -> dict[str, Any]:
        return crud.get_account(account_id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", required=True, help="SQLite file path")
    arguments = parser.parse_args()
    crud = CrudLedger("sqlite", arguments.database)
    try:
        uvicorn.run(create_app(crud), host="127.0.0.1", port=arguments.port)
    finally:
        crud.close()


if __name__ == "__main__":
    main()
