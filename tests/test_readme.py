"""The README stays true: every setting is documented, and every command it names
exists. (The tours are run as pasted by tests/api/test_readme_tour.py and
tests/api/test_serve.py.)"""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from api.cli import app
from infrastructure.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [
        name for name in Settings.model_fields if f"`EVENTLEDGER_{name.upper()}`" not in README
    ]
    assert missing == []


def test_every_cli_command_the_readme_names_exists() -> None:
    root = get_command(app)
    # Commands in code: after a backtick, a path, or at the start of a line.
    pattern = r"(?:^|`|bin/)eventledger ([a-z]+)(?: ([a-z]+))?"
    named = set(re.findall(pattern, README, re.MULTILINE))
    assert len(named) > 10
    for command, subcommand in named:
        assert command in root.commands, command  # type: ignore[attr-defined]
        group = root.commands[command]  # type: ignore[attr-defined]
        if subcommand and hasattr(group, "commands"):
            assert subcommand in group.commands, f"{command} {subcommand}"
