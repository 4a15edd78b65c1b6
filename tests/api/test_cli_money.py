"""``eventledger post|void|batch|history|accounts open`` as a user meets them on the command line.

Method: typer's runner invokes the real commands on a SQLite ledger in ``tmp_path``
(standard input through the runner); ``history`` runs as a real process, because
the terminal width (``COLUMNS``) is read when the console starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from typer.testing import CliRunner, Result

from api.cli import app
from api.cli_transfers import BATCH_LINES_MAX
from domain.ledger import Ledger
from infrastructure.settings import Settings
from tests.support import funded_account

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.parametrize("store", ["sqlite"])


def cli(settings: Settings, *arguments: str, stdin: str | None = None) -> Result:
    arguments = (*arguments, "--database", settings.database_url)
    return CliRunner().invoke(app, list(arguments), input=stdin)


def items(payer: UUID, payee: UUID, count: int, amount: int = 1) -> list[dict[str, Any]]:
    return [
        {"from_account": str(payer), "to_account": str(payee), "amount": amount, "currency": "USD"}
    ] * count


class TestPostAndVoidAgain:
    def test_a_second_post_says_replayed_and_exits_zero(
        self, settings: Settings, ledger: Ledger
    ) -> None:
        payer = funded_account(ledger, 100)
        pending = ledger.transfer(payer, ledger.open_account("USD").id, 60, "USD", pending=True)
        first = cli(settings, "post", str(pending.id), "--amount", "40")
        again = cli(settings, "post", str(pending.id), "--amount", "40")
        assert (first.exit_code, again.exit_code) == (0, 0), again.output
        assert "replayed" not in first.stdout and "replayed" in again.stdout
        assert ledger.get_account(payer).balance == 60

    def test_another_amount_fails_in_one_line(self, settings: Settings, ledger: Ledger) -> None:
        payer = funded_account(ledger, 100)
        pending = ledger.transfer(payer, ledger.open_account("USD").id, 60, "USD", pending=True)
        cli(settings, "post", str(pending.id), "--amount", "40")
        other = cli(settings, "post", str(pending.id), "--amount", "41")
        assert other.exit_code == 1
        assert other.output.strip().count("\n") == 0
        assert "transfer_not_pending" in other.output

    def test_the_same_key_with_a_void_is_key_reused(
        self, settings: Settings, ledger: Ledger
    ) -> None:
        payer = funded_account(ledger, 100)
        pending = ledger.transfer(payer, ledger.open_account("USD").id, 60, "USD", pending=True)
        key = ["--idempotency-key", f"settle-{uuid4()}"]
        assert cli(settings, "void", str(pending.id), *key).exit_code == 0
        assert "replayed" in cli(settings, "void", str(pending.id), *key).stdout
        reused = cli(settings, "post", str(pending.id), *key)
        assert reused.exit_code == 1 and "idempotency_key_reused" in reused.output


class TestBatch:
    def test_the_same_key_and_file_again_replays(
        self, settings: Settings, ledger: Ledger, tmp_path: Path
    ) -> None:
        payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
        file = tmp_path / "batch.json"
        file.write_text(json.dumps({"transfers": items(payer, payee, 3, 10)}))
        key = ["--idempotency-key", f"payroll-{uuid4()}"]
        first = cli(settings, "batch", str(file), *key)
        again = cli(settings, "batch", str(file), *key)
        assert (first.exit_code, again.exit_code) == (0, 0), again.output
        assert "3 transfers applied atomically" in first.stdout
        assert "3 transfers replayed" in again.stdout
        assert ledger.get_account(payer).balance == 70

    def test_without_a_key_a_rerun_posts_again(
        self, settings: Settings, ledger: Ledger, tmp_path: Path
    ) -> None:
        payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
        file = tmp_path / "batch.json"
        file.write_text(json.dumps(items(payer, payee, 2, 10)))
        for _ in range(2):
            assert cli(settings, "batch", str(file)).exit_code == 0
        assert ledger.get_account(payer).balance == 60

    def test_reads_a_bare_list_from_standard_input(
        self, settings: Settings, ledger: Ledger
    ) -> None:
        payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
        done = cli(settings, "batch", "-", "--json", stdin=json.dumps(items(payer, payee, 2, 5)))
        assert done.exit_code == 0, done.output
        assert [view["amount"] for view in json.loads(done.stdout)] == [5, 5]
        assert ledger.get_account(payee).balance == 10

    @pytest.mark.parametrize("wrapped", [False, True])
    def test_an_invalid_item_is_named_by_index_and_field(
        self, settings: Settings, ledger: Ledger, wrapped: bool
    ) -> None:
        payer, payee = funded_account(ledger, 100), ledger.open_account("USD").id
        body: Any = items(payer, payee, 3)
        body[2] = {**body[2], "amount": "1"}
        body = {"transfers": body} if wrapped else body
        refused = cli(settings, "batch", "-", stdin=json.dumps(body))
        assert refused.exit_code == 2
        assert "standard input: item 2: amount:" in refused.output
        assert ledger.get_account(payer).balance == 100

    def test_a_document_of_another_shape_is_named(self, settings: Settings) -> None:
        refused = cli(settings, "batch", "-", stdin='"transfers"')
        assert refused.exit_code == 2 and "the whole document" in refused.output

    @pytest.mark.parametrize("count", [BATCH_LINES_MAX, BATCH_LINES_MAX + 1])
    def test_a_line_each_up_to_the_limit_then_one_summary(
        self, settings: Settings, ledger: Ledger, count: int
    ) -> None:
        payer, payee = funded_account(ledger, 1000), ledger.open_account("USD").id
        done = cli(settings, "batch", "-", stdin=json.dumps(items(payer, payee, count, 2)))
        assert done.exit_code == 0, done.output
        lines = done.stdout.strip().splitlines()
        summary = f"{count} transfers applied atomically: {count} posted; {2 * count} USD"
        assert summary in lines[-1]
        assert len(lines) == (count + 1 if count <= BATCH_LINES_MAX else 1)


def history_at(settings: Settings, account: UUID, columns: int) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVENTLEDGER")}
    env.update(COLUMNS=str(columns), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", "from api.cli import main; main()", "history", str(account),
         "--database", settings.database_url],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 120])
def test_history_shows_version_amount_and_balance_whole(
    settings: Settings, ledger: Ledger, columns: int
) -> None:
    account = ledger.open_account("USD").id
    deposit = ledger.deposit(account, 10**15)  # the largest amount: 16 digits
    withdrawal = ledger.withdraw(account, 10**15 - 1)
    lines = history_at(settings, account, columns)
    assert lines[0].split()[0] == "version"
    assert all(len(line.rstrip()) <= columns for line in lines)
    assert "…" not in "".join(lines)
    deposited, withdrawn = lines[2].split(), lines[3].split()
    assert {"2", f"+{10**15}", str(10**15)} <= set(deposited)
    assert {"3", f"-{10**15 - 1}", "1"} <= set(withdrawn)
    # The wider terminal has room for the transfer ids in full.
    assert (str(deposit.id) in deposited, str(withdrawal.id) in withdrawn) == (
        (True, True) if columns == 120 else (False, False)
    )


def test_opening_an_account_again_says_it_replayed(settings: Settings) -> None:
    account_id = str(uuid4())
    first = cli(settings, "accounts", "open", "USD", "--name", "Alice", "--id", account_id)
    again = cli(settings, "accounts", "open", "USD", "--name", "Alice", "--id", account_id)
    assert (first.exit_code, again.exit_code) == (0, 0), again.output
    assert first.stdout.splitlines()[0] == f"account {account_id} opened"
    assert again.stdout.splitlines()[0].startswith(f"account {account_id} already open (replayed")
    as_json = cli(
        settings, "accounts", "open", "USD", "--name", "Alice", "--id", account_id, "--json"
    )
    assert json.loads(as_json.stdout)["replayed"] is True
