"""The README's Python tour and API-key tour work as pasted, from a directory other
than the repository root, against a real ``eventledger serve``.

Method: the blocks between the ``tour:python`` and ``tour:keys`` markers are taken
from README.md as they are; only the server's URL is replaced by the test server's
(a free port). The Python tour runs first on the open server; then, in one shell, the
key tour creates the first key (closing the open mode) and the Python tour runs again
with the key it exported. Each run starts in an empty folder of ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.api.servers import Server, running_server

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEFAULT_URL = "http://127.0.0.1:8000"


def block(name: str, language: str) -> str:
    pattern = rf"<!-- tour:{name} -->\n```{language}\n(.*?)```\n<!-- /tour:{name} -->"
    (found,) = re.findall(pattern, README, re.DOTALL)
    assert DEFAULT_URL in found
    return str(found)


def elsewhere(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    assert not (folder / "README.md").exists()
    return folder


def environment(database: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTLEDGER_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["EVENTLEDGER_DATABASE_URL"] = database
    return env


def run(script: list[str], cwd: Path, env: dict[str, str], server: Server) -> str:
    done = subprocess.run(script, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{server.log()}"
    return done.stdout


def assert_the_python_tour_printed(output: str) -> None:
    assert "refused: insufficient_funds" in output
    assert "alice: 6800" in output
    assert "statement: [10000, -2500, -700]" in output


def test_the_python_tour_then_the_key_tour_then_the_python_tour_with_the_key(
    tmp_path: Path,
) -> None:
    database = f"sqlite:///{tmp_path / 'served.db'}"
    with running_server(tmp_path, database) as server:
        env = environment(database)
        python_tour = tmp_path / "tour.py"
        python_tour.write_text(block("python", "python").replace(DEFAULT_URL, server.url))
        open_output = run(
            [sys.executable, str(python_tour)], elsewhere(tmp_path, "open"), env, server
        )
        assert_the_python_tour_printed(open_output)

        keys_tour = block("keys", "bash").replace(DEFAULT_URL, server.url)
        script = f'{keys_tour}\n"{sys.executable}" "{python_tour}"\n'
        keyed_output = run(
            ["bash", "-euo", "pipefail", "-c", script], elsewhere(tmp_path, "keyed"), env, server
        )
        assert keyed_output.splitlines()[0] == "401"
        assert '"name":"carol"' in keyed_output.replace(" ", "")
        assert_the_python_tour_printed(keyed_output)
