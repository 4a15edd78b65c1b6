"""The dependency arrows point inward only (STYLE.md section 1).

Method: parse every module's imports with ``ast`` and compare each imported top-level
package with what its own package may import.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"domain", "infrastructure", "projections", "api"}
ALLOWED_OURS = {
    "domain": {"domain"},
    "infrastructure": {"domain", "infrastructure"},
    "projections": {"domain", "infrastructure", "projections"},
    "api": OURS,
}
DOMAIN_THIRD_PARTY = {"eventsourcing"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def modules_of(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_packages_import_only_inward(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of(package)
        for name in imported_packages(path) & OURS
        if name not in ALLOWED_OURS[package]
    }
    assert not wrong


def test_domain_imports_only_stdlib_and_eventsourcing() -> None:
    allowed = set(sys.stdlib_module_names) | DOMAIN_THIRD_PARTY | {"domain", "__future__"}
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules_of("domain")
        for name in imported_packages(path)
        if name not in allowed
    }
    assert not wrong


def test_the_check_sees_a_wrong_arrow(tmp_path: Path) -> None:
    # Guard against a check that cannot fail: a planted import must be found.
    planted = tmp_path / "planted.py"
    planted.write_text("import fastapi\nfrom api.cli import app\n")
    assert imported_packages(planted) == {"fastapi", "api"}
