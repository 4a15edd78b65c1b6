"""The README's CLI tour works as pasted, twice in a row (the second run replays).

Method: extract the bash block between the ``tour:cli`` markers and run it as pasted
with bash ``-e`` from an empty folder in ``tmp_path`` (not the repository), with
``.venv/bin`` on the PATH as ``source .venv/bin/activate`` would put it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOUR = re.compile(r"<!-- tour:cli -->\n```bash\n(.*?)```\n<!-- /tour:cli -->", re.DOTALL)


def test_readme_cli_tour_runs_as_pasted(tmp_path: Path) -> None:
    """As pasted, in a folder that is not the repository, with the activated
    environment's ``eventledger`` on the PATH: the relative database lands there."""
    (script,) = TOUR.findall((ROOT / "README.md").read_text())
    assert "export EVENTLEDGER_DATABASE_URL=sqlite:///./data/tour.db" in script
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    outputs, notes = [], []
    for _ in range(2):
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
        notes.append(done.stderr)
    first, second = outputs
    assert (tmp_path / "data" / "tour.db").exists()
    assert f"created a new ledger at sqlite:///{tmp_path / 'data' / 'tour.db'}" in notes[0]
    assert "created a new ledger" not in notes[1]
    assert "refused, as it should be" in first
    assert "replayed" in first  # the second rent transfer in the first run
    # The capture, sent again by the second run, is answered, not refused.
    assert "00000000-0000-4000-8000-00000000f002 posted (replayed" in second
    assert "00000000-0000-4000-8000-00000000f002 posted (replayed" not in first
    # Alice: 100000 - 2500 rent - 7000 captured; the same after the replayed second run.
    assert '"balance": 9500' in second  # Bob, printed as JSON
    assert "90500" in first and "90500" in second


def test_accounts_list_catches_the_view_up_first(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    env["EVENTLEDGER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'l.db'}"
    command = [str(ROOT / ".venv/bin/eventledger")]

    def run(*args: str) -> str:
        done = subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run("accounts", "open", "EUR", "--name", "listed")
    listed = json.loads(run("accounts", "list", "--currency", "EUR", "--json"))
    names = sorted(account["name"] for account in listed["items"])
    assert names == ["listed", "world:EUR"]
