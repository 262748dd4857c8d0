"""The packages form layers; an import against the direction below fails this test.

    ledger (pure core) <- keyfiles <- drivers <- agent
    ledger <- keyfiles <- replica
    ledger <- keyfiles <- settlement
    meterchain (the command dispatcher and the demo) may import them all.

Nothing imports a package that imports it back, so each package can be read, tested and
shipped on its own terms: a verifier needs only ``ledger``; a gateway never loads the replica.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ALLOWED: dict[str, set[str]] = {
    "ledger": set(),
    "keyfiles": {"ledger"},
    "drivers": {"ledger"},
    "agent": {"ledger", "keyfiles", "drivers"},
    "replica": {"ledger", "keyfiles"},
    "settlement": {"ledger", "keyfiles"},
    "meterchain": {"ledger", "keyfiles", "drivers", "agent", "replica", "settlement"},
}
"""Package -> the project packages it may import (besides itself)."""


def _imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in ``path`` (lazy imports included)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value.split(".")[0])
    return found & set(ALLOWED)


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


CASES = [(pkg, path) for pkg in ALLOWED for path in _modules(pkg)]


@pytest.mark.parametrize(("package", "path"), CASES,
                         ids=[str(p.relative_to(ROOT)) for _, p in CASES])
def test_imports_follow_the_layers(package: str, path: Path) -> None:
    wrong = _imports(path) - ALLOWED[package] - {package}
    assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)} against the layering"


def test_the_command_table_points_into_existing_modules() -> None:
    from meterchain.cli import COMMANDS

    for command, module in COMMANDS.items():
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), command


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import importlib\n\ndef f():\n    from agent.service import daemon\n"
                   "    importlib.import_module('replica.app')\n")
    assert _imports(bad) == {"agent", "replica"}


def test_every_package_is_listed() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages <= set(ALLOWED), sorted(packages - set(ALLOWED))
    assert {"ledger", "keyfiles", "drivers", "agent", "replica", "meterchain"} <= packages
