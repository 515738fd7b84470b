"""Shared fixtures live in tests/fixtures/*; each module there owns one kind of resource."""

import pytest
import torch

# One intra-op thread: tests share two cores with worker subprocesses, and oversubscribed
# OpenMP threads spin instead of working.
torch.set_num_threads(1)

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.db",
    "tests.fixtures.workers",
    "tests.fixtures.serving",
]


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's TEXTLSTM_* settings by accident."""
    import os

    for key in list(os.environ):
        if key.startswith("TEXTLSTM_"):
            monkeypatch.delenv(key, raising=False)
