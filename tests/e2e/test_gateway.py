"""The gateway end to end: a real `textlstm-admin serve-api` process on a free port and a real
worker, on Redis and PostgreSQL (and SQLite): jobs submitted over HTTP are classified, stored
once, and read back over HTTP exactly as `textlstm-admin results` prints them."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.fixtures.jobs import assert_exactly_once, texts
from tests.fixtures.workers import WorkerProc
from textlstm.gateway.auth import hash_token
from textlstm.testing.ports import free_port
from textlstm.testing.processes import CLI, GatewayProcess

BOTH = pytest.mark.parametrize("db_url", ["postgresql", "sqlite"], indirect=True)
TOKEN = "e2e-token-" + "k" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gateway(worker_env: dict[str, str], tmp_path: Path) -> Iterator[GatewayProcess]:
    # The token's entry from a file, as the compose service reads it from a Docker secret.
    tokens = tmp_path / "api-tokens"
    tokens.write_text(f"# e2e\n{hash_token(TOKEN)}:submit\n", encoding="utf-8")
    env = {**worker_env, "TEXTLSTM_API_TOKENS_FILE": str(tokens)}
    g = GatewayProcess(env, tmp_path / "gateway.log", free_port())
    try:
        yield g.start()
    finally:
        g.close()


def _admin(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _wait_final(http: httpx.Client, job: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        doc = http.get(f"/v1/jobs/{job}").json()
        if doc["status"] in ("done", "partial", "failed", "expired", "cancelled"):
            return doc  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)


@BOTH
def test_submit_over_http_results_over_http_equal_the_cli(
    topics: dict,
    workers: Callable[..., WorkerProc],
    gateway: GatewayProcess,
    worker_env: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    workers()
    sent = texts(700)
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        r = http.post(
            "/v1/jobs",
            json={
                "items": [{"id": f"r-{i}", "text": t} for i, t in enumerate(sent)],
                "model": "topics@production",
                "metadata": {"from": "http"},
            },
        )
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        small = http.post("/v1/jobs", json={"texts": ["one more text"], "model": "topics"})
        assert small.status_code == 202
        doc = _wait_final(http, job)
        assert (doc["status"], doc["ok"], doc["expected"], doc["model"]) == (
            "done", 700, 700, "topics@1"
        )  # fmt: skip
        assert _wait_final(http, small.json()["job_id"])["ok"] == 1

        jsonl = http.get(f"/v1/jobs/{job}/results")
        csv_ = http.get(f"/v1/jobs/{job}/results?format=csv")
        paged: list[str] = []
        after = -1
        while True:
            page = http.get(f"/v1/jobs/{job}/results", params={"after": after, "limit": 256})
            lines = page.text.splitlines()
            paged += lines
            if len(lines) < 256:
                break
            after = int(lines[-1].split('"item_index": ')[1].split(",")[0])
        shown = http.get(f"/v1/jobs/{job}").json()
        cli_show = _admin(worker_env, "jobs", "show", job, "--json")
        # Refusals come from the live process too.
        assert http.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert (
            http.post("/v1/jobs", content=b"x", headers={"Content-Type": "text/plain"}).status_code
            == 415
        )
        metrics = http.get("/metrics").text

    assert_exactly_once(session_factory, {uuid.UUID(job): 700})
    assert jsonl.text == _admin(worker_env, "results", job, "--format", "jsonl")
    assert csv_.text.replace("\r\n", "\n") == _admin(
        worker_env, "results", job, "--format", "csv"
    ).replace("\r\n", "\n")
    assert paged == jsonl.text.splitlines()
    assert shown == json.loads(cli_show)
    assert "textlstm_gateway_items_submitted_total 701.0" in metrics
    assert TOKEN not in gateway.log()  # the token is never logged

