"""Import rules that keep the packages apart (checked on the source, so lazy imports count too).

The job's path and the package that owns each step (docs/architecture.md draws it):

    client (producer, publisher) -> wire (message, queues, Redis layout) -> broker
    -> worker/ (Celery consumer, transport) -> serving (micro-batches, service)
    -> classifier (tokenizer, LSTM, predictor) -> store (SQL) -> client / cli (results)

- wire/ is what producers, workers and operators share: no SQL, no torch, no Celery, and none
  of the packages that build on it.
- classifier/ and training/ are pure ML code: they never reach the store, CLI, serving or worker.
- store/ holds every SQL query and knows nothing of the model code (classifier/, training/),
  serving or the client.
- The client, the wire, the store and the settings never import torch, so producers and
  analysts install and start without it.
- Only worker/ touches Celery's worker machinery; the library never imports the worker package.
- SQL is written only in store/ (and migrations/): no other module imports sqlalchemy's query
  builders.
- The base install (no extras) runs the producer, the client, results, the registry and the
  `db`, `submit`, `status`, `jobs`, `models` and `dead-letters` commands: none of their modules
  reaches torch, numpy, matplotlib or any other extra's package, at import time (checked in a
  fresh interpreter) or later (lazy imports, checked on the source), and pyproject.toml's base
  dependencies list none of them.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from textlstm.cli import COMMAND_EXTRAS, COMMANDS, EXTRA_MODULES

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


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


TORCH = ("torch", "numpy", "textlstm.classifier", "textlstm.training")

#: package -> what none of its modules may import.
RULES: dict[str, tuple[str, ...]] = {
    "wire": (
        "sqlalchemy",
        "celery",
        "kombu",
        *TORCH,
        "textlstm.store",
        "textlstm.serving",
        "textlstm.client",
        "textlstm.ops",
        "textlstm.cli",
    ),
    "classifier": ("textlstm.store", "textlstm.cli", "textlstm.serving", "celery", "textlstm.wire"),
    "training": ("textlstm.store", "textlstm.cli", "textlstm.serving", "celery", "textlstm.wire"),
    "store": (*TORCH, "textlstm.serving", "textlstm.client", "textlstm.ops", "textlstm.cli"),
    "client": (*TORCH, "textlstm.serving", "textlstm.ops", "textlstm.cli"),
    "ops": (*TORCH, "textlstm.serving", "textlstm.cli"),
    "settings.py": (*TORCH, "sqlalchemy", "celery"),
    "bundle.py": ("torch", "textlstm.store", "textlstm.serving", "sqlalchemy"),
}


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [(path, forbidden) for part, forbidden in RULES.items() for path in modules_under(part)],
    ids=lambda v: _rel(v) if isinstance(v, Path) else "",
)
def test_package_imports_follow_the_layers(path: Path, forbidden: tuple[str, ...]) -> None:
    bad = {m for m in imported_modules(path) if _matches(m, forbidden)}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=_rel)
def test_library_never_imports_the_worker_package(path: Path) -> None:
    # (`textlstm-admin worker` is found by name in textlstm.cli.COMMANDS, and starts Celery with
    # `-A worker.app`, by name, in a subprocess.)
    bad = {m for m in imported_modules(path) if _matches(m, ("worker",))}
    assert not bad, f"{_rel(path)} imports {sorted(bad)}"


def test_every_package_has_a_rule() -> None:
    """A new package under textlstm/ gets its place in the layers written down here."""
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages - set(RULES) <= {"cli", "serving", "testing"}, packages - set(RULES)


# What the base install's commands and library entry points are made of.
BASE_MODULES = [
    "textlstm.cli",
    *sorted(COMMANDS[name][0].split(":")[0] for name in COMMANDS if name not in COMMAND_EXTRAS),
    "textlstm.client",
    "textlstm.client.producer",
    "textlstm.settings",
    "textlstm.store",
    "textlstm.store.db",
    "textlstm.store.migrate",
    "textlstm.store.models",
    "textlstm.store.registry",
    "textlstm.store.repository",
]
# Every top-level package an extra provides: none is installed by the base install.
EXTRA_ONLY = sorted(set().union(*EXTRA_MODULES.values()))


def test_base_commands_cover_the_promised_ones() -> None:
    base = {n for n in COMMANDS if n not in COMMAND_EXTRAS}
    assert base == {"db", "models", "jobs", "results", "submit", "status", "dead-letters"}
    assert set(COMMAND_EXTRAS) == {"train", "evaluate", "predict", "worker"}


def test_base_modules_import_no_extra_package() -> None:
    """Imported in a fresh interpreter, the base modules leave no extra's package in
    sys.modules (so transitive imports count, not just the modules' own import lines)."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {BASE_MODULES!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {EXTRA_ONLY!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(out.stdout) == []


def _module_path(name: str) -> Path | None:
    for path in (
        ROOT / f"{name.replace('.', '/')}.py",
        ROOT / name.replace(".", "/") / "__init__.py",
    ):
        if path.is_file():
            return path
    return None


def test_base_modules_never_reach_an_extra_package_even_lazily() -> None:
    """Follow every `textlstm` import of the base modules, function-level ones included (what a
    command may import when it runs), and check no module on the way imports an extra's
    package."""
    via: dict[str, str] = {}
    todo = [(m, "") for m in BASE_MODULES]
    bad: list[str] = []
    while todo:
        name, parent = todo.pop()
        path = _module_path(name)
        if name in via or path is None:
            continue
        via[name] = parent
        for imported in imported_modules(path) | _imported_names(path):
            if imported.startswith("textlstm"):
                todo.append((imported, name))
            elif imported.split(".")[0] in EXTRA_ONLY:
                bad.append(f"{name} imports {imported} (reached from {via[name] or 'itself'})")
    assert "textlstm.store.registry" in via and "textlstm.client" in via
    assert not bad, bad


def _imported_names(path: Path) -> set[str]:
    """`from textlstm.wire import deadletters` imports the module textlstm.wire.deadletters."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_base_dependencies_list_no_extra_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    heavy = {"torch", "numpy", "matplotlib", "safetensors", "tqdm", "prometheus-client"}
    assert not base & heavy, sorted(base & heavy)
    extras = project["optional-dependencies"]
    assert {"worker", "train", "dev"} <= set(extras)


def _extra_requirements(extras: dict[str, list[str]], extra: str) -> set[str]:
    """Distribution names an extra installs, following `textlstm[other]` self-references."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        if name == "textlstm":
            inner = re.search(r"\[([^\]]+)\]", requirement)
            assert inner, requirement
            for other in inner.group(1).split(","):
                names |= _extra_requirements(extras, other.strip())
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("extra", sorted(EXTRA_MODULES))
def test_the_cli_checks_modules_that_the_extra_installs(extra: str) -> None:
    """textlstm.cli.EXTRA_MODULES (what a command checks before it runs) names modules that
    pyproject.toml's extra really installs, so the one-line hint is never wrong."""
    from importlib.metadata import packages_distributions

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installs = _extra_requirements(extras, extra)
    providers = packages_distributions()
    for module in EXTRA_MODULES[extra]:
        dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert dists & installs, f"{module} (from {sorted(dists)}) is not in the {extra} extra"
