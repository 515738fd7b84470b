"""Security tests reuse the e2e worker fixtures and the fault suite's private Redis."""

from tests.e2e.conftest import e2e_settings, topics, worker_env, workers  # noqa: F401
from tests.faults.conftest import own_redis  # noqa: F401
