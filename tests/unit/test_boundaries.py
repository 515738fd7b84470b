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
- SQL is written only in store/ (and migrations/; textlstm/testing/ creates and drops test
  databases; tests/ may query as they like). Every other module of textlstm/, worker/ and
  bench/ imports from sqlalchemy only `Session`/`sessionmaker` (sqlalchemy.orm), `Engine`,
  `make_url`/`URL` (sqlalchemy.engine) and the exceptions (sqlalchemy.exc); imports none of the
  ORM's mapped classes (textlstm.store.models' Base, Job, Prediction, ...) except under
  `if TYPE_CHECKING:`; and sends no raw SQL string (`exec_driver_sql`). So every query is a
  named function of store/ that takes a session.
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

from tests.fixtures.source import imported_modules, imported_names
from textlstm.cli import COMMAND_EXTRAS, COMMANDS, EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "textlstm"


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
    # The HTTP front door: calls the client and the registry, loads no model, never reaches
    # the worker's side or Celery directly (it publishes through the client's one publisher).
    "gateway": (*TORCH, "textlstm.serving", "textlstm.ops", "textlstm.cli", "celery", "kombu"),
    "settings.py": (*TORCH, "sqlalchemy", "celery"),
    "bundle.py": ("torch", "textlstm.store", "textlstm.serving", "sqlalchemy"),
    "durations.py": (*TORCH, "sqlalchemy", "celery", "textlstm.store"),
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


# -- SQL only in store/ ----------------------------------------------------------------------

#: sqlalchemy module -> the names a module outside store/ may import from it: types for hints
#: and wiring (a session, its factory, an engine), URL parsing, and the exceptions to catch.
#: `None`: any name (the exception module). Nothing here builds or sends a query.
SQLALCHEMY_ALLOWED: dict[str, frozenset[str] | None] = {
    "sqlalchemy": frozenset({"Engine", "exc"}),
    "sqlalchemy.orm": frozenset({"Session", "sessionmaker"}),
    "sqlalchemy.engine": frozenset({"Engine", "URL", "make_url"}),
    "sqlalchemy.engine.url": frozenset({"URL", "make_url"}),
    "sqlalchemy.exc": None,
}
#: Where SQL may be written: the store, and the test helpers that create and drop databases.
SQL_HOMES = ("textlstm/store/", "textlstm/testing/")
SQL_CHECKED = sorted(
    p
    for folder in ("textlstm", "worker", "bench")
    for p in (ROOT / folder).rglob("*.py")
    if not _rel(p).startswith(SQL_HOMES)
)


def _mapped_classes() -> frozenset[str]:
    from textlstm.store.models import Base

    return frozenset({"Base", *(m.class_.__name__ for m in Base.registry.mappers)})


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except what sits under `if TYPE_CHECKING:` (hints only)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def sql_outside_store(path: Path, mapped: frozenset[str]) -> list[str]:
    """What in `path` builds or sends SQL, by the rule of SQLALCHEMY_ALLOWED (see the module
    docstring): each finding as `line: what`."""
    bad: list[tuple[int, str]] = []
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _matches(alias.name, ("sqlalchemy",)) and alias.name != "sqlalchemy.exc":
                    bad.append((line, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _matches(node.module, ("sqlalchemy",)):
                allowed = SQLALCHEMY_ALLOWED.get(node.module, frozenset())
                names = [a.name for a in node.names]
                if allowed is not None and not set(names) <= allowed:
                    bad.append((line, f"from {node.module} import {sorted(set(names) - allowed)}"))
            elif node.module == "textlstm.store.models":
                orm = sorted({a.name for a in node.names} & (mapped | {"*"}))
                if orm:
                    bad.append((line, f"from textlstm.store.models import {orm}"))
        elif isinstance(node, ast.Attribute) and node.attr == "exec_driver_sql":
            bad.append((line, ".exec_driver_sql (raw SQL)"))
    return [f"{line}: {what}" for line, what in sorted(bad)]


@pytest.mark.parametrize("path", SQL_CHECKED, ids=_rel)
def test_sql_is_written_only_in_store(path: Path) -> None:
    """Outside textlstm/store/ and textlstm/testing/, a module of textlstm/, worker/ or bench/
    imports from sqlalchemy only what SQLALCHEMY_ALLOWED lists (a Session or sessionmaker for
    hints, an Engine, make_url/URL, the exceptions), none of the ORM's mapped classes at run
    time (with them `session.get(Job, ...)` or `session.add(Prediction(...))` is SQL by other
    means; under `if TYPE_CHECKING:` they are hints), and never calls `exec_driver_sql`. A
    query it needs is a named function in store/ that takes the session."""
    bad = sql_outside_store(path, _mapped_classes())
    assert not bad, f"{_rel(path)} writes SQL outside store/: {bad}"


def test_the_sql_rule_catches_what_it_names(tmp_path: Path) -> None:
    """The checker itself: each way of writing SQL outside store/ is found, hints are not."""
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from sqlalchemy import func, select\n"
        "import sqlalchemy\n"
        "from sqlalchemy.orm import Session, aliased\n"
        "from sqlalchemy.exc import OperationalError\n"
        "from sqlalchemy.engine import make_url\n"
        "from textlstm.store.models import JOB_STATUSES, Prediction\n"
        "if TYPE_CHECKING:\n"
        "    from textlstm.store.models import Job\n"
        "    from sqlalchemy import Select\n"
        "def f(conn):\n"
        "    conn.exec_driver_sql('SELECT 1')\n"
    )
    found = sql_outside_store(source, _mapped_classes())
    assert [f.split(":")[0] for f in found] == ["2", "3", "4", "7", "12"], found
    assert "['func', 'select']" in found[0] and "['aliased']" in found[2]
    assert "['Prediction']" in found[3]


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
    *sorted(
        f"textlstm.store.{p.stem}"
        for p in (PACKAGE / "store").glob("*.py")
        if p.stem not in ("__init__", "db", "migrate", "models", "registry")
    ),
]
# Every top-level package an extra provides: none is installed by the base install.
EXTRA_ONLY = sorted(set().union(*EXTRA_MODULES.values()))


def test_base_commands_cover_the_promised_ones() -> None:
    base = {n for n in COMMANDS if n not in COMMAND_EXTRAS}
    assert base == {
        "db", "models", "jobs", "results", "submit", "status", "dead-letters", "api-token"
    }  # fmt: skip
    assert set(COMMAND_EXTRAS) == {
        "train", "pretrain", "evaluate", "predict", "worker", "serve-api"
    }  # fmt: skip


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


#: An option of a base command that needs an extra, and says so in one line when it is missing.
OPTIONAL = {("textlstm.cli.results", "pyarrow"), ("textlstm.cli.results", "pyarrow.parquet")}


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
        for imported in imported_modules(path) | imported_names(path):
            if imported.startswith("textlstm"):
                todo.append((imported, name))
            elif imported.split(".")[0] in EXTRA_ONLY and (name, imported) not in OPTIONAL:
                bad.append(f"{name} imports {imported} (reached from {via[name] or 'itself'})")
    assert "textlstm.store.registry" in via and "textlstm.client" in via
    assert not bad, bad


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
