"""`textlstm-admin`: one Click group whose subcommands are imported only when run.

Lazy loading keeps `--help` instant and keeps torch out of commands that do not need it
(`results`, `jobs`, `db`); `tests/cli/test_cli.py` runs `--help` on every entry below.

The base install (no extras) runs every command except those in COMMAND_EXTRAS. Run without its
extra, such a command prints one line naming the extra and exits 1, instead of a traceback
(or, for `worker`, child processes that die on import and are restarted forever).
"""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
from typing import Any

import click

from textlstm.errors import TextlstmError

# name -> ("module:attribute", one-line help); add a command by adding a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("textlstm.cli.train:train", "Train a classifier and write a model bundle."),
    "pretrain": (
        "textlstm.cli.pretrain:pretrain",
        "Train a language model on unlabelled text, for train --init.",
    ),
    "evaluate": ("textlstm.cli.evaluate:evaluate", "Score a bundle on labelled data."),
    "predict": ("textlstm.cli.predict:predict", "Classify texts with a bundle."),
    "db": ("textlstm.cli.db:db", "Create or migrate the database schema (Alembic)."),
    "models": ("textlstm.cli.models:models", "Register, list, show, alias and export models."),
    "jobs": ("textlstm.cli.jobs:jobs", "List classification jobs and show their progress."),
    "results": ("textlstm.cli.results:results", "Print or save the predictions of a job."),
    # The worker package ships beside textlstm and is found by name, as Celery finds
    # `worker.app`: nothing in textlstm imports it (tests/unit/test_boundaries.py).
    "worker": ("worker.supervisor:worker", "Run worker processes that classify queued jobs."),
    "submit": ("textlstm.cli.submit:submit", "Enqueue a CSV or JSONL file as a job."),
    "status": ("textlstm.cli.status:status", "Queues, workers online, jobs and model aliases."),
    "dead-letters": (
        "textlstm.cli.deadletters:dead_letters",
        "List, show, requeue or purge refused and quarantined messages.",
    ),
    "serve-api": ("textlstm.cli.serve_api:serve_api", "Serve the HTTP API (the api extra)."),
    "api-token": (
        "textlstm.cli.api_token:api_token",
        "Make a gateway token and its TEXTLSTM_API_TOKENS entry.",
    ),
}

# extra -> the top-level modules it provides that its commands import (pyproject.toml's extras).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "worker": ("torch", "numpy", "safetensors", "prometheus_client"),
    "train": ("torch", "numpy", "safetensors", "tqdm", "matplotlib"),
    # Not a command's: `results --format parquet` checks it (textlstm/cli/results.py).
    "parquet": ("pyarrow",),
    "api": ("fastapi", "uvicorn", "prometheus_client"),
}
# command -> the extra it needs; commands not listed need the base install only.
COMMAND_EXTRAS: dict[str, str] = {
    "train": "train",
    "pretrain": "train",
    "evaluate": "worker",
    "predict": "worker",
    "worker": "worker",
    "serve-api": "api",
}


def missing_extra_message(cmd_name: str, extra: str) -> str:
    """The one line a user sees when `cmd_name` runs without `extra` installed."""
    return f"'textlstm-admin {cmd_name}' needs the {extra} extra: pip install 'textlstm[{extra}]'"


def _missing_modules(extra: str) -> list[str]:
    # find_spec looks the module up without importing it (importing torch takes seconds).
    return [m for m in EXTRA_MODULES[extra] if importlib.util.find_spec(m) is None]


def requires_extra(command: click.Command, cmd_name: str, extra: str) -> click.Command:
    """A copy of `command` whose callback first checks that `extra` is installed.

    Checked when the command runs, not when it is looked up, so `--help` works without the
    extra. A ModuleNotFoundError for one of the extra's modules raised later (a partial
    install) gets the same line.
    """
    callback = command.callback
    if callback is None:
        return command

    @functools.wraps(callback)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if _missing_modules(extra):
            raise click.ClickException(missing_extra_message(cmd_name, extra))
        try:
            return callback(*args, **kwargs)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] in EXTRA_MODULES[extra]:
                raise click.ClickException(missing_extra_message(cmd_name, extra)) from exc
            raise

    wrapped = copy.copy(command)
    wrapped.callback = checked
    return wrapped


class LazyGroup(click.Group):
    """A group that resolves subcommands from import strings on first use."""

    def __init__(
        self,
        *args: Any,
        lazy_commands: dict[str, tuple[str, str]],
        command_extras: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands
        self.command_extras = command_extras or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name][0].split(":")
            extra = self.command_extras.get(cmd_name)
            try:
                command: click.Command = getattr(importlib.import_module(module_name), attr)
            except ModuleNotFoundError as exc:
                # A command module that imports its extra at module level cannot even show help.
                if extra and (exc.name or "").split(".")[0] in EXTRA_MODULES[extra]:
                    raise click.ClickException(missing_extra_message(cmd_name, extra)) from exc
                raise
            return requires_extra(command, cmd_name, extra) if extra else command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from COMMANDS so listing never imports a command module (or torch).
        rows = [
            (name, self.lazy_commands.get(name, ("", ""))[1]) for name in self.list_commands(ctx)
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TextlstmError as exc:
            # User mistakes become one line and exit code 1, never a traceback.
            raise click.ClickException(str(exc)) from exc


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, command_extras=COMMAND_EXTRAS)
@click.version_option(package_name="textlstm")
def cli() -> None:
    """Train LSTM text classifiers, register them, and run and query classification jobs."""
