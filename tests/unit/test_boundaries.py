"""Import rules that keep the layers apart (checked on the source, so lazy imports count too).

- classifier/ and training/ are pure ML code: they never reach the store, CLI, serving or worker.
- The store, the message schema, the producer and the settings never import torch, so producers
  and analysts install and start without it.
- Only worker/ touches Celery's worker machinery; the library never imports the worker package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "textlstm"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_under(*parts: str) -> list[Path]:
    base = PACKAGE.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", modules_under("classifier") + modules_under("training"), ids=_rel)
def test_ml_code_stays_pure(path: Path) -> None:
    forbidden = ("textlstm.store", "textlstm.cli", "textlstm.serving", "worker", "celery")
    bad = {m for m in imported_modules(path) if m.startswith(forbidden)}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path",
    modules_under("store")
    + [PACKAGE / "messages.py", PACKAGE / "client.py", PACKAGE / "settings.py"],
    ids=_rel,
)
def test_store_and_producer_never_import_torch(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.split(".")[0] in {"torch", "numpy"}}
    bad |= {
        m
        for m in imported_modules(path)
        if m.startswith(
            ("textlstm.classifier.predictor", "textlstm.classifier.network", "textlstm.training")
        )
    }
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=_rel)
def test_library_never_imports_the_worker_package(path: Path) -> None:
    # (`textlstm-admin worker` starts Celery with `-A worker.app`, by name, in a subprocess.)
    bad = {m for m in imported_modules(path) if m == "worker" or m.startswith("worker.")}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"
