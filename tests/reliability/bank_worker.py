"""One OS process of the multi-process bank test: build a Ledger, say "ready", wait for
"go" on stdin, make one transfer, print its outcome code ("ok" or the error code)."""

from __future__ import annotations

import sys
from uuid import UUID

from domain.errors import LedgerError
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings


def main() -> None:
    database_url, payer, payee, amount = sys.argv[1:5]
    ledger = build_ledger(Settings(database_url=database_url))
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    try:
        ledger.transfer(UUID(payer), UUID(payee), int(amount), "USD")
        print("ok", flush=True)
    except LedgerError as error:
        print(error.code, flush=True)
    finally:
        ledger.close()


if __name__ == "__main__":
    main()
