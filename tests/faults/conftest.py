"""Fault-injection fixtures: the e2e worker fixtures (real worker subprocesses, PostgreSQL)
plus a private Redis per test, so restarts and unacked-index checks touch nothing shared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_settings, topics, worker_env, workers  # noqa: F401
from tests.faults.services import OwnRedis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path / "redis").start()
    yield r
    r.kill()
