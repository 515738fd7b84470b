"""`textlstm-admin`: one Click group whose subcommands are imported only when run.

Lazy loading keeps `--help` instant and keeps torch out of commands that do not need it
(`results`, `jobs`, `db`); `tests/cli/test_help.py` runs `--help` on every entry below.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from textlstm.errors import TextlstmError

# name -> ("module:attribute", one-line help); add a command by adding a line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("textlstm.cli.train:train", "Train a classifier and write a model bundle."),
    "evaluate": ("textlstm.cli.evaluate:evaluate", "Score a bundle on labelled data."),
    "predict": ("textlstm.cli.predict:predict", "Classify texts with a bundle."),
    "db": ("textlstm.cli.db:db", "Create or migrate the database schema (Alembic)."),
    "models": ("textlstm.cli.models:models", "Register, list, show, alias and export models."),
    "jobs": ("textlstm.cli.jobs:jobs", "List classification jobs and show their progress."),
    "results": ("textlstm.cli.results:results", "Print or save the predictions of a job."),
    "worker": ("textlstm.cli.worker:worker", "Run worker processes that classify queued jobs."),
    "submit": ("textlstm.cli.submit:submit", "Enqueue a CSV or JSONL file as a job."),
    "status": ("textlstm.cli.status:status", "Queues, workers online, jobs and model aliases."),
    "dead-letters": (
        "textlstm.cli.deadletters:dead_letters",
        "List, show, requeue or purge refused and quarantined messages.",
    ),
}


class LazyGroup(click.Group):
    """A group that resolves subcommands from import strings on first use."""

    def __init__(
        self, *args: Any, lazy_commands: dict[str, tuple[str, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)
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


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="textlstm")
def cli() -> None:
    """Train LSTM text classifiers, register them, and run and query classification jobs."""
