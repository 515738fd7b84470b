"""Shared fixtures live in tests/fixtures/*; each module there owns one kind of resource."""

from pathlib import Path

import pytest
import torch

# One intra-op thread: tests share two cores with worker subprocesses, and oversubscribed
# OpenMP threads spin instead of working.
torch.set_num_threads(1)

#: Folders whose tests form a suite of their own, selectable with `-m` (`pytest -m "not faults"`).
SUITES = ("e2e", "faults", "ops", "security", "bench", "packaging")

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.db",
    "tests.fixtures.workers",
    "tests.fixtures.serving",
    "tests.fixtures.receiver",
    "tests.fixtures.rabbitmq",
]


@pytest.fixture(autouse=True)
def _no_user_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a developer's TEXTLSTM_* settings by accident."""
    import os

    for key in list(os.environ):
        if key.startswith("TEXTLSTM_"):
            monkeypatch.delenv(key, raising=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of a suite folder with the folder's name (tests/faults -> `faults`)."""
    tests = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests).parts
        if parts and parts[0] in SUITES:
            item.add_marker(getattr(pytest.mark, parts[0]))
