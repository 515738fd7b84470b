"""The test tree's own rules: helpers live in tests/fixtures (or textlstm.testing), never in
another test module, and the unit tests are laid out like the package they test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.source import imported_modules, imported_names

TESTS = Path(__file__).resolve().parents[1]
PACKAGE = TESTS.parent / "textlstm"


@pytest.mark.parametrize(
    "path", sorted(TESTS.rglob("*.py")), ids=lambda p: str(p.relative_to(TESTS))
)
def test_no_test_module_imports_another(path: Path) -> None:
    bad = {
        m
        for m in imported_modules(path) | imported_names(path)
        if m.startswith("tests.") and m.split(".")[-1].startswith("test_")
    }
    assert not bad, f"{path.relative_to(TESTS)} imports {sorted(bad)}: move it to tests/fixtures"


def test_unit_tests_mirror_the_package() -> None:
    folders = {p.parent.name for p in (TESTS / "unit").glob("*/__init__.py")}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert folders and folders <= packages, sorted(folders - packages)
