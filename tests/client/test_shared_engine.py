"""`Client()` shares one engine per database URL per process, and never across a fork: a
loop of plain `Client.submit` calls reuses pooled connections (bench/results/gateway.md)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import text

from textlstm.client import Client
from textlstm.settings import Settings
from textlstm.store.db import shared_session_factory


def _settings(url: str) -> Settings:
    return Settings(database_url=url, _env_file=None)  # type: ignore[call-arg]


def _engine_of(client: Client) -> object:
    with client.session() as session:
        session.execute(text("SELECT 1"))
        return session.get_bind()


def test_two_clients_with_one_url_share_the_engine(db_url: str, tmp_path: Path) -> None:
    first, second = Client(_settings(db_url)), Client(_settings(db_url))
    assert _engine_of(first) is _engine_of(second)
    other = Client(_settings(f"sqlite:///{tmp_path / 'other.db'}"))
    assert _engine_of(other) is not _engine_of(first)


def test_a_forked_child_builds_its_own_engine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fork.db'}"
    client = Client(_settings(url))
    parent_engine = _engine_of(client)  # a pooled connection is open at the fork
    parent_factory = shared_session_factory(url)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        code = 1
        try:
            child_engine = _engine_of(client)
            fresh = shared_session_factory(url) is not parent_factory
            code = 0 if fresh and child_engine is not parent_engine else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _engine_of(client) is parent_engine  # the parent's engine still works
