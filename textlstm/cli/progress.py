"""The training progress display shared by `train` and `pretrain`.

A duck-typed trainer callback, so the CLI modules import no torch: a tqdm bar per epoch whose
rate is in the trainer's own unit (examples, windows), then one line per epoch that the command
formats from the trainer's epoch stats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


class EpochProgress:
    def __init__(self, *, enabled: bool, unit: str, summary: Callable[[Any], str]) -> None:
        self.enabled = enabled
        self.unit = unit
        self.summary = summary
        self.bar: Any = None
        self.epochs = 0
        self.total = 0

    def on_train_start(self, *, epochs: int, steps_per_epoch: int, examples: int) -> None:
        self.epochs, self.total = epochs, examples

    def on_batch_end(self, *, epoch: int, step: int, loss: float, examples: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total, desc=f"epoch {epoch}/{self.epochs}", unit=self.unit, leave=False
            )
        self.bar.update(examples)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def on_epoch_end(self, stats: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        click.echo(self.summary(stats) + (" *" if stats.best else ""), err=True)

    def on_train_end(self, result: Any) -> None:
        pass
