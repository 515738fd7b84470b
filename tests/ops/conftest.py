"""Fixtures for the operations tests: the e2e worker fixtures (real worker subprocesses, real
Redis and PostgreSQL) are reused from tests/e2e/conftest.py."""

from tests.e2e.conftest import e2e_settings, topics, worker_env  # noqa: F401
from tests.worker.test_service import registered  # noqa: F401
