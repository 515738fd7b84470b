"""Security tests reuse the e2e worker fixtures and the fault suite's private Redis."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import e2e_settings, topics, worker_env, workers  # noqa: F401
from tests.faults.conftest import own_redis  # noqa: F401
from tests.faults.services import OwnRedis
from tests.faults.workers import Fleet
from textlstm.settings import Settings


@pytest.fixture
def own_fleet(
    topics: dict,  # noqa: F811 - the fixture, registered above
    e2e_settings: Settings,  # noqa: F811
    worker_env: dict[str, str],  # noqa: F811
    own_redis: OwnRedis,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[Settings, Fleet]]:
    """Settings and a worker fleet on this test's own Redis, with `topics` registered."""
    settings = e2e_settings.model_copy(update={"broker_url": own_redis.url})
    fleet = Fleet({**worker_env, "TEXTLSTM_BROKER_URL": own_redis.url}, tmp_path)
    yield settings, fleet
    fleet.close()
