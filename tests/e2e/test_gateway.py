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


@BOTH
def test_batch_over_http_each_jobs_results_equal_the_cli(
    topics: dict,
    workers: Callable[..., WorkerProc],
    gateway: GatewayProcess,
    worker_env: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    """`POST /v1/jobs:batch` with jobs of several sizes, models and priorities: each is
    classified once and its results over HTTP, in both formats, are what the CLI prints."""
    workers()
    sizes = [300, 1, 57, 120]
    batch = [
        {"items": [{"id": f"a-{i}", "text": t} for i, t in enumerate(texts(sizes[0], seed=1))],
         "model": "topics@production", "metadata": {"n": 0}},
        {"texts": texts(sizes[1], seed=2), "model": "topics", "priority": "high"},
        {"texts": texts(sizes[2], seed=3), "model": "topics@2", "priority": "bulk"},
        {"texts": texts(sizes[3], seed=4), "model": "topics@1", "job_id": str(uuid.uuid4())},
    ]  # fmt: skip
    with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=30) as http:
        r = http.post("/v1/jobs:batch", json={"jobs": batch})
        assert r.status_code == 202, r.text
        accepted = r.json()["jobs"]
        assert [a["items"] for a in accepted] == sizes
        jobs = [a["job_id"] for a in accepted]
        assert jobs[3] == batch[3]["job_id"]  # a given id is kept
        docs = [_wait_final(http, job) for job in jobs]
        jsonl = [http.get(a["results_url"]).text for a in accepted]
        csv_ = [http.get(a["results_url"], params={"format": "csv"}).text for a in accepted]

    assert [(d["status"], d["ok"], d["expected"]) for d in docs] == [("done", n, n) for n in sizes]
    assert [d["model"] for d in docs] == ["topics@1", "topics@1", "topics@2", "topics@1"]
    assert docs[0]["metadata"] == {"n": 0}
    assert_exactly_once(
        session_factory, {uuid.UUID(j): n for j, n in zip(jobs, sizes, strict=True)}
    )
    for job, n, got_jsonl, got_csv in zip(jobs, sizes, jsonl, csv_, strict=True):
        assert len(got_jsonl.splitlines()) == n
        assert got_jsonl == _admin(worker_env, "results", job, "--format", "jsonl"), job
        assert got_csv.replace("\r\n", "\n") == _admin(
            worker_env, "results", job, "--format", "csv"
        ).replace("\r\n", "\n"), job
    assert '"external_id": "a-0"' in jsonl[0]
