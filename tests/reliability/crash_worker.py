"""The writer of the SQLite crash loop: a fork server whose children write until killed.

    python -m tests.reliability.crash_worker DATABASE_URL ACCOUNT_ID,... [PLANTED_BUG]

The server imports everything once; each ``start`` line on stdin forks a child, which
builds its own Ledger (the production wiring: WAL, synchronous=FULL, snapshots every
5 events so kills also land in snapshot writes; group commit or one transaction per
command, drawn per child) and makes random deposits, withdrawals and transfers in USD
among the given accounts from four threads, forever. Forking instead of starting a
new interpreter per kill keeps 50 kills within seconds, and the children are killed
while writing, not while importing.

Lines on stdout, each written by one ``os.write`` (atomic on a pipe, so a kill cannot
leave half a line; ``print`` may write the text and its newline separately):
    ready <pid> <group|per_command> a child has built its Ledger and starts writing
    ok <transfer_id>                the call returned: the transfer is committed
    rejected <transfer_id> <code>   the call raised a business rejection (recorded)
    failed <transfer_id> <code>     the call raised another error (nothing written)
    exited <pid> <status>           the server reaped that child (status -9: killed)

PLANTED_BUG plants a bug for the checker to catch. ``--ack-before-commit``: the child
prints ``ok <id>`` and then calls the ledger, like a server answering before its
commit. Against SIGKILL (not power loss) that window is short: once SQLite has written
the WAL frames the kernel keeps them, so only a kill before that write loses the
transfer. ``--write-behind``: the same, with the call made 50 ms after the answer, like
a server that queues its writes; nearly every kill then loses an acknowledged transfer.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import sys
import threading
import time
import traceback
from contextlib import suppress
from uuid import UUID, uuid4

from domain.errors import LedgerError, TransferRejected
from domain.ledger import Ledger
from infrastructure.persistence import build_ledger
from infrastructure.settings import Settings

SNAPSHOT_INTERVAL = 5
WRITER_THREADS = 4
AMOUNT_MAX = 300
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
PLANTED_BUGS = {"--ack-before-commit": 0.0, "--write-behind": 0.05}


def main() -> None:
    die_with_parent()
    database_url, account_list = sys.argv[1:3]
    # None: acknowledge after the call returns (the real build). A number: the planted
    # bug, acknowledge first and make the call that many seconds later.
    ack_early_seconds = PLANTED_BUGS.get(sys.argv[3]) if sys.argv[3:] else None
    accounts = [UUID(text) for text in account_list.split(",")]
    for line in sys.stdin:
        if line.strip() != "start":
            break
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            if os.getppid() != server:
                os._exit(1)
            # Only the test's SIGKILL ends a child; never run the server's cleanup.
            try:
                write_forever(database_url, accounts, ack_early_seconds)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        say(f"exited {pid} {code}")


def die_with_parent() -> None:
    """On Linux the kernel then SIGKILLs this process when its parent dies, so no
    writer outlives the test, whatever happens to the test process."""
    with suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def say(line: str) -> None:
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def write_forever(database_url: str, accounts: list[UUID], ack_early_seconds: float | None) -> None:
    """Builds a Ledger in a commit mode drawn per child and writes from several threads,
    so group commits hold several callers' transfers when the kill lands."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    group_commit = random.Random().random() < 0.5
    settings = Settings(
        database_url=database_url, snapshot_interval=SNAPSHOT_INTERVAL, group_commit=group_commit
    )
    ledger = build_ledger(settings)
    say(f"ready {os.getpid()} {'group' if group_commit else 'per_command'}")
    writers = [
        threading.Thread(target=write_loop, args=(ledger, accounts, ack_early_seconds))
        for _ in range(WRITER_THREADS)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()


def write_loop(ledger: Ledger, accounts: list[UUID], ack_early_seconds: float | None) -> None:
    try:
        chooser = random.Random()  # seeded from os.urandom, unlike a copy of the server's
        while True:
            transfer_id = uuid4()
            if ack_early_seconds is not None:
                say(f"ok {transfer_id}")
                time.sleep(ack_early_seconds)
            try:
                one_write(ledger, chooser, accounts, transfer_id)
            except TransferRejected as error:
                if ack_early_seconds is None:
                    say(f"rejected {transfer_id} {error.code}")
                continue
            except LedgerError as error:  # e.g. conflict: retries exhausted, nothing written
                if ack_early_seconds is None:
                    say(f"failed {transfer_id} {error.code}")
                continue
            if ack_early_seconds is None:
                say(f"ok {transfer_id}")
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # a writer that dies by itself fails the test: "died by itself"


def one_write(
    ledger: Ledger, chooser: random.Random, accounts: list[UUID], transfer_id: UUID
) -> None:
    amount = chooser.randint(1, AMOUNT_MAX)
    kind = chooser.random()
    if kind < 0.15:
        ledger.deposit(chooser.choice(accounts), amount, transfer_id=transfer_id)
    elif kind < 0.3:
        ledger.withdraw(chooser.choice(accounts), amount, transfer_id=transfer_id)
    else:
        payer, payee = chooser.sample(accounts, 2)
        ledger.transfer(payer, payee, amount, "USD", transfer_id=transfer_id)


if __name__ == "__main__":
    main()
