"""The layers the README draws: ``impls`` knows nothing of ``bench``, and ``bench.common`` is
the bottom of ``bench`` (it imports no other ``bench`` package), read from the source's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every absolute module ``path`` imports, at any depth of the file (lazy imports too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("impls", ()), ("bench/common", ("bench.common",))],
)
def test_a_lower_layer_imports_nothing_above_it(package, allowed):
    offending = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if name.split(".")[0] == "bench"
        and not any(name == a or name.startswith(a + ".") for a in allowed)
    }
    assert not offending, sorted(offending)
