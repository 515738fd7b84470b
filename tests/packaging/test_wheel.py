"""The built wheel stands alone: installed without extras into a fresh venv, outside the source
tree, `textlstm-admin db …` finds its migrations inside the distribution, the base commands run
without torch, and the commands that need an extra say which one in one line.

Building is `python -m build --wheel --no-isolation` (setuptools and build come from the dev
extra, so nothing is downloaded per run) on a copy of the package sources, so the checkout gets no
build/ or egg-info and the wheel can only contain what is copied. The venv installs the base
dependencies with constraints.txt from pip's cache. About half a minute in all.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.fixtures.db import create_pg_database, drop_pg_database
from textlstm.cli import COMMAND_EXTRAS, missing_extra_message
from textlstm.store.db import make_engine
from textlstm.store.migrate import head_revisions
from textlstm.store.models import Base

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "textlstm", "worker", "migrations")
TABLES = set(Base.metadata.tables)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path  # outside the source tree: no textlstm/ or migrations/ to fall back on

    def run(
        self, *args: str, url: str | None = None, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ARGS in the work directory; `settings` become TEXTLSTM_<NAME> variables."""
        env = _clean_env()
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if url is not None:
            env["TEXTLSTM_DATABASE_URL"] = url
        env.update({f"TEXTLSTM_{k.upper()}": v for k, v in settings.items()})
        return subprocess.run(
            list(args), cwd=self.workdir, env=env, capture_output=True, text=True, timeout=120
        )

    def admin(
        self, *args: str, url: str | None = None, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "textlstm-admin"), *args, url=url, **settings)


def _clean_env() -> dict[str, str]:
    """This process's environment without what would lead the venv back to the checkout."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TEXTLSTM_")}


def _check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    tmp = tmp_path_factory.mktemp("packaging")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        elif path.is_file():
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    subprocess.run([*build, str(src)], check=True, capture_output=True, env=_clean_env())
    (wheel,) = dist.glob("textlstm-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_clean_env())
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check", "-c", str(ROOT / "constraints.txt"), str(wheel)]
    done = subprocess.run(pip, capture_output=True, text=True, env=_clean_env())
    assert done.returncode == 0, done.stderr[-3000:]
    workdir = tmp / "elsewhere"
    workdir.mkdir()
    yield Installed(wheel=wheel, venv=venv, workdir=workdir)


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_wheel_holds_every_module_and_the_migrations(installed: Installed) -> None:
    """pyproject.toml lists its packages: one added to the tree but not the list would be
    missing from the wheel, so every source file must be in it."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {
        str(p.relative_to(ROOT)) for d in ("textlstm", "worker") for p in (ROOT / d).rglob("*.py")
    }
    migrations = ROOT / "migrations"
    expected |= {
        f"textlstm_migrations/{p.relative_to(migrations)}"
        for p in migrations.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "textlstm_migrations/script.py.mako" in expected
    assert expected - names == set()
    assert not {n for n in names if n.startswith(("tests/", "bench/", "migrations/"))}


def test_the_venv_runs_the_wheel_not_the_checkout(installed: Installed) -> None:
    code = "import textlstm as t, textlstm_migrations as m; print(t.__file__, m.__file__)"
    out = _check(installed.run(str(installed.venv / "bin" / "python"), "-c", code))
    for path in out.split():
        assert Path(path).is_relative_to(installed.venv), path
    assert _check(installed.admin("--version")).strip().endswith("0.1.0")


def test_base_install_has_no_torch_numpy_or_matplotlib(installed: Installed) -> None:
    python = str(installed.venv / "bin" / "python")
    for module in ("torch", "numpy", "matplotlib", "safetensors", "tqdm", "prometheus_client"):
        result = installed.run(python, "-c", f"import {module}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module


# Arguments that parse, so the missing extra (not a usage error) is what stops each command.
_VALID_ARGS: dict[str, list[str]] = {
    "train": ["data.csv", "--out", "bundle"],
    "evaluate": ["bundle", "data.csv"],
    "predict": ["bundle", "some text"],
    "pretrain": ["corpus.txt", "--out", "lm"],
    "worker": [],
    "serve-api": ["--port", "0"],
}


def test_every_command_needing_an_extra_has_valid_arguments_here() -> None:
    assert set(_VALID_ARGS) == set(COMMAND_EXTRAS)


@pytest.mark.parametrize("command", sorted(COMMAND_EXTRAS))
def test_a_command_without_its_extra_prints_one_line(installed: Installed, command: str) -> None:
    result = installed.admin(command, *_VALID_ARGS[command])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = missing_extra_message(command, COMMAND_EXTRAS[command])
    assert result.stderr.splitlines() == [f"Error: {message}"]
    assert f"pip install 'textlstm[{COMMAND_EXTRAS[command]}]'" in message
    # Help still works without the extra.
    assert "Usage:" in _check(installed.admin(command, "--help"))


def _upgrade_current_downgrade(installed: Installed, url: str) -> None:
    (head,) = head_revisions(url)
    assert f"at revision {head}" in _check(installed.admin("db", "upgrade", url=url))
    assert _tables(url) == TABLES
    assert f"at revision {head}, up to date" in _check(installed.admin("db", "current", url=url))
    assert "at revision base" in _check(installed.admin("db", "downgrade", "base", url=url))
    assert _tables(url) == set()
    assert "at revision base, behind" in _check(installed.admin("db", "current", url=url))


def test_db_commands_on_sqlite(installed: Installed, tiny_bundle: Path) -> None:
    url = f"sqlite:///{installed.workdir / 'textlstm.db'}"
    _upgrade_current_downgrade(installed, url)
    # The registry works from the base install too: register, list, alias, show.
    _check(installed.admin("db", "upgrade", url=url))
    out = _check(installed.admin("models", "register", str(tiny_bundle), "--name", "tiny", url=url))
    assert "registered tiny@1" in out
    _check(installed.admin("models", "alias", "tiny", "1", "prod", url=url))
    assert "tiny" in _check(installed.admin("models", "list", url=url))
    assert "prod" in _check(installed.admin("models", "show", "tiny@prod", url=url))
    _check(installed.admin("jobs", "list", url=url))
    with sqlite3.connect(installed.workdir / "textlstm.db") as conn:
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone() == (1,)


def test_producer_and_analyst_commands_run_without_torch(
    installed: Installed, tiny_bundle: Path, redis_url: str, queue_name: str
) -> None:
    """submit, status, jobs, results and dead-letters against a real Redis and SQLite."""
    url = f"sqlite:///{installed.workdir / 'producer.db'}"
    broker = {"broker_url": redis_url, "queue": queue_name}
    _check(installed.admin("db", "upgrade", url=url))
    _check(installed.admin("models", "register", str(tiny_bundle), "--name", "tiny", url=url))
    data = installed.workdir / "texts.csv"
    data.write_text("text\nfirst text\nsecond text\n")
    job = "6b7a0f0e-8f55-4c39-9d8e-2f3c9a1d0b11"
    submitted = installed.admin(
        "submit", str(data), "--model", "tiny@1", "--job-id", job, url=url, **broker
    )
    assert job in _check(submitted)
    assert job in _check(installed.admin("jobs", "list", url=url, **broker))
    shown = installed.admin("results", job, url=url, **broker)
    assert "0 of 2 items" in _check(shown) + shown.stderr
    # Parquet is an extra: without it, one line that names it.
    out = installed.workdir / "out.parquet"
    parquet = installed.admin("results", job, "--format", "parquet", "-o", str(out), url=url)
    assert parquet.returncode == 1 and "Traceback" not in parquet.stderr
    assert "needs the parquet extra: pip install 'textlstm[parquet]'" in parquet.stderr
    status = json.loads(
        _check(installed.admin("status", "--json", "--timeout", "0.5", url=url, **broker))
    )
    assert status["errors"] == {} and status["jobs"]["queued"] == 1
    assert status["queues"][queue_name] >= 1
    _check(installed.admin("dead-letters", "list", url=url, **broker))


def test_db_commands_on_postgresql(installed: Installed, pg_admin_url: str) -> None:
    url = create_pg_database(pg_admin_url)
    try:
        _upgrade_current_downgrade(installed, url)
    finally:
        drop_pg_database(pg_admin_url, url)
