"""The HTTP gateway in process (FastAPI's TestClient) on a real Redis and real PostgreSQL and
SQLite databases: submit, status, results, cancel and models, auth and scopes, body limits,
backpressure, health and metrics, and that no exception text reaches a client."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from textlstm.client import Client
from textlstm.gateway.app import create_app
from textlstm.gateway.auth import hash_token
from textlstm.settings import Settings
from textlstm.store.jobs import ensure_job
from textlstm.store.predictions import PredictionRecord, save_predictions
from textlstm.store.registry import register_bundle

SUBMIT_TOKEN = "submit-token-" + "x" * 30
READ_TOKEN = "read-token-" + "y" * 30
SUBMIT = {"Authorization": f"Bearer {SUBMIT_TOKEN}"}
READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture
def settings(db_url: str, redis_url: str, queue_name: str, tmp_path: Path) -> Settings:
    tokens = f"{hash_token(SUBMIT_TOKEN)}:submit,{hash_token(READ_TOKEN)}:read"
    return Settings(
        database_url=db_url,
        broker_url=redis_url,
        queue=queue_name,
        model_cache_dir=tmp_path / "cache",
        api_tokens=tokens,
        api_max_body_bytes=64 * 1024,
        max_text_chars=1000,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def sent(session_factory: sessionmaker[Session], fake_bundle: Path) -> str:
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="sent", aliases=["production"])
    return "sent"


def seed_rows(factory: sessionmaker[Session], n: int) -> uuid.UUID:
    """A finished job of `n` items with a row each (as a worker would store them)."""
    job_id = uuid.uuid4()
    with factory.begin() as s:
        mv, _ = register_bundle(session=s, path=_bundle(factory), name="sent")
        ensure_job(session=s, job_id=job_id, model_ref="sent", expected=n, metadata=None)
        records = [
            PredictionRecord(i, "ok", "pos", 0.9, {"pos": 0.9, "neg": 0.1}, f"id-{i}", None, 1.0)
            for i in range(n)
        ]
        save_predictions(session=s, job_id=job_id, records=records, model_version_id=mv.id)
    return job_id


def _bundle(factory: Any) -> Path:
    return factory.bundle_path  # type: ignore[no-any-return]


@pytest.fixture
def rows_job(session_factory: sessionmaker[Session], fake_bundle: Path) -> uuid.UUID:
    session_factory.bundle_path = fake_bundle  # type: ignore[attr-defined]
    return seed_rows(session_factory, 1203)


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]  # type: ignore[no-any-return]


# -- submit ----------------------------------------------------------------------------------


def test_submit_is_accepted_recorded_and_published(
    api: TestClient, sent: str, settings: Settings, redis_client: Any
) -> None:
    r = api.post(
        "/v1/jobs",
        headers=SUBMIT,
        json={"items": [{"id": "a", "text": "great film"}, {"id": 7, "text": "dull"}],
              "model": "sent@production", "metadata": {"who": "http"}, "priority": "high"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    assert r.headers["location"] == f"/v1/jobs/{job}"
    assert redis_client.llen(f"{settings.queue}.high") == 1  # one message, on the high queue
    shown = api.get(f"/v1/jobs/{job}", headers=READ)
    assert shown.status_code == 200
    doc = shown.json()
    st = Client(settings).status(job)
    assert doc == st.to_json() | {"webhook": None}  # `jobs show --json`'s document
    assert (doc["status"], doc["expected"], doc["metadata"]) == ("queued", 2, {"who": "http"})


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"texts": ["ok", "x" * 1001], "model": "sent"}, "texts[1]", "limit is 1000"),
        (
            {"items": [{"text": "a", "id": "d"}, {"text": "b", "id": "d"}], "model": "sent"},
            "items[1]",
            "duplicate id",
        ),
        ({"texts": [], "model": "sent"}, "texts", "empty"),
        ({"texts": ["a"], "model": "no such model!"}, "model", ""),
        ({"texts": ["a"], "model": "nobody"}, "model", "nobody"),
        ({"texts": ["a"]}, "model", "no model given"),
        ({"texts": ["a"], "model": "sent", "metadata": [1]}, "metadata", "JSON object"),
        ({"texts": ["a"], "model": "sent", "priority": "urgent"}, "priority", "high"),
        ({"texts": ["a"], "model": "sent", "deadline": "soon"}, "deadline", "ISO 8601"),
        ({"texts": ["a"], "model": "sent", "expires": "1h"}, "expires", "seconds"),
        ({"texts": ["a"], "model": "sent", "webhook": "ftp://x"}, "webhook", ""),
        ({"texts": ["a"], "model": "sent", "job_id": "nope"}, "job_id", "UUID"),
        ({"texts": ["a"], "model": "sent", "colour": 1}, "colour", "unknown field"),
        ({"texts": "a", "model": "sent"}, "texts", "array"),
        ({"texts": ["a"], "items": [{"text": "b"}], "model": "sent"}, "texts", "exactly one"),
        ([1, 2], "body", "object"),
    ],  # fmt: skip
)
def test_submit_refusals_name_the_field(
    api: TestClient, sent: str, redis_client: Any, settings: Settings,
    body: Any, field: str, words: str,
) -> None:  # fmt: skip
    r = api.post("/v1/jobs", headers=SUBMIT, json=body)
    assert r.status_code == 422, r.text
    err = error(r)
    assert err["field"] == field and words in err["message"], err
    assert redis_client.llen(settings.queue) == 0  # nothing was published


def test_the_same_job_is_refused_by_http_and_by_the_python_producer(
    api: TestClient, sent: str, settings: Settings
) -> None:
    """One validator: a bad job gets the same message from both doors."""
    from textlstm.errors import ValidationError

    texts = ["fine", {"id": "", "text": "empty id"}]
    with pytest.raises(ValidationError) as raised:
        Client(settings).submit(texts, model="sent")
    r = api.post("/v1/jobs", headers=SUBMIT, json={"items": texts, "model": "sent"})
    assert error(r) == {"field": "items[1]", "message": str(raised.value)}


def test_json_only_and_body_limits(api: TestClient, sent: str) -> None:
    r = api.post("/v1/jobs", headers={**SUBMIT, "Content-Type": "text/plain"}, content=b"{}")
    assert r.status_code == 415 and error(r)["field"] == "Content-Type"
    # Declared too big: refused by Content-Length before the body is read.
    big = json.dumps({"texts": ["x" * 900] * 100, "model": "sent"}).encode()
    r = api.post("/v1/jobs", headers={**SUBMIT, "Content-Type": "application/json"}, content=big)
    assert r.status_code == 413 and "TEXTLSTM_API_MAX_BODY_BYTES" in error(r)["message"]

    # Streamed without a length (chunked): refused once the count passes the cap.
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "sent", "texts": ['
        for _ in range(200):
            yield b'"' + b"y" * 900 + b'",'
        yield b'"z"]}'

    r = api.post(
        "/v1/jobs", headers={**SUBMIT, "Content-Type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413, r.text
    r = api.post(
        "/v1/jobs", headers={**SUBMIT, "Content-Type": "application/json"}, content=b"{nope"
    )
    assert r.status_code == 422 and error(r)["field"] == "body"
    r = api.post(
        "/v1/jobs",
        headers={**SUBMIT, "Content-Type": "application/json; charset=utf-8"},
        content=b'{"model": "sent", "texts": ["a"], "expires": NaN}',
    )
    assert r.status_code == 422 and error(r)["field"] == "body"


def test_backpressure_is_429_with_retry_after(
    settings: Settings, sent: str, redis_client: Any
) -> None:
    full = settings.model_copy(update={"queue_max_pending": 1, "api_retry_after_s": 7})
    with TestClient(create_app(full)) as api:
        first = api.post("/v1/jobs", headers=SUBMIT, json={"texts": ["a"], "model": "sent"})
        assert first.status_code == 202
        r = api.post("/v1/jobs", headers=SUBMIT, json={"texts": ["b"], "model": "sent"})
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert "TEXTLSTM_QUEUE_MAX_PENDING" in error(r)["message"]
    assert redis_client.llen(settings.queue) == 1


# -- auth ------------------------------------------------------------------------------------


def test_tokens_and_scopes(api: TestClient, sent: str, settings: Settings) -> None:
    body = {"texts": ["a"], "model": "sent"}
    r = api.post("/v1/jobs", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert error(r)["field"] == "Authorization"
    for wrong in ("Bearer wrong", "Basic abc", "Bearer"):
        r = api.post("/v1/jobs", json=body, headers={"Authorization": wrong})
        assert r.status_code == 401, wrong
    r = api.post("/v1/jobs", json=body, headers=READ)
    assert r.status_code == 403 and "scope is read" in error(r)["message"]
    assert api.get("/v1/models", headers=READ).status_code == 200
    assert api.get("/v1/models", headers=SUBMIT).status_code == 200  # submit includes read
    assert api.post(f"/v1/jobs/{uuid.uuid4()}/cancel", headers=READ).status_code == 403


def test_no_tokens_configured_refuses_every_v1_request(settings: Settings) -> None:
    with TestClient(create_app(settings.model_copy(update={"api_tokens": ""}))) as api:
        r = api.get("/v1/models", headers=READ)
        assert r.status_code == 401 and "TEXTLSTM_API_TOKENS" in error(r)["message"]
        assert api.get("/openapi.json").status_code == 200


def test_settings_refuse_a_bad_token_entry_without_echoing_it() -> None:
    from textlstm.errors import SettingsError

    with pytest.raises(SettingsError) as raised:
        Settings(api_tokens="secretvalue:read", _env_file=None)  # type: ignore[call-arg]
    assert "secretvalue" not in str(raised.value) and "TEXTLSTM_API_TOKENS" in str(raised.value)


# -- status, results, cancel, models ---------------------------------------------------------


def test_results_stream_paginated_in_both_formats(
    api: TestClient, rows_job: uuid.UUID, settings: Settings
) -> None:
    stored = Client(settings).results(rows_job)
    expected = [json.dumps(r.to_json(), ensure_ascii=False) for r in stored]
    r = api.get(f"/v1/jobs/{rows_job}/results", headers=READ)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert r.text.splitlines() == expected and len(expected) == 1203
    # Cursor pages: after = the last item_index seen.
    got: list[str] = []
    after = -1
    while True:
        page = api.get(f"/v1/jobs/{rows_job}/results?after={after}&limit=500", headers=READ)
        lines = page.text.splitlines()
        got += lines
        if len(lines) < 500:
            break
        after = json.loads(lines[-1])["item_index"]
    assert got == expected
    csv_ = api.get(f"/v1/jobs/{rows_job}/results", headers={**READ, "Accept": "text/csv"})
    assert csv_.headers["content-type"].startswith("text/csv")
    lines = csv_.text.splitlines()
    assert lines[0].startswith("job_id,item_index") and len(lines) == 1204
    two = api.get(f"/v1/jobs/{rows_job}/results?format=csv&limit=2", headers=READ)
    assert two.text.count("\n") == 3
    bad = api.get(f"/v1/jobs/{rows_job}/results?format=xml", headers=READ)
    assert bad.status_code == 422 and error(bad)["field"] == "format"
    bad = api.get(f"/v1/jobs/{rows_job}/results?limit=0", headers=READ)
    assert bad.status_code == 422 and error(bad)["field"] == "limit"


def test_unknown_and_malformed_jobs(api: TestClient) -> None:
    missing = uuid.uuid4()
    for path in (f"/v1/jobs/{missing}", f"/v1/jobs/{missing}/results"):
        r = api.get(path, headers=READ)
        assert r.status_code == 404 and str(missing) in error(r)["message"]
    assert api.post(f"/v1/jobs/{missing}/cancel", headers=SUBMIT).status_code == 404
    r = api.get("/v1/jobs/not-a-uuid", headers=READ)
    assert r.status_code == 422 and error(r)["field"] == "job_id"
    r = api.get("/v1/nowhere", headers=READ)
    assert r.status_code == 404 and set(r.json()) == {"error"}


def test_cancel_is_idempotent(api: TestClient, sent: str) -> None:
    job = api.post("/v1/jobs", headers=SUBMIT, json={"texts": ["a", "b"], "model": "sent"})
    job_id = job.json()["job_id"]
    first = api.post(f"/v1/jobs/{job_id}/cancel", headers=SUBMIT).json()
    assert first["changed"] and first["status"] == "cancelled" and first["cancelled"] == 2
    again = api.post(f"/v1/jobs/{job_id}/cancel", headers=SUBMIT).json()
    assert not again["changed"] and again["status"] == "cancelled"
    assert api.get(f"/v1/jobs/{job_id}", headers=READ).json()["cancelled"] == 2


def test_models_as_the_cli_prints_them(
    api: TestClient, sent: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from textlstm.cli import cli
    from textlstm.settings import get_settings

    monkeypatch.setenv("TEXTLSTM_DATABASE_URL", settings.database_url)
    get_settings.cache_clear()  # the CLI reads the process settings, cached by earlier tests
    env: dict[str, str] = {}
    listed = CliRunner().invoke(cli, ["models", "list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert api.get("/v1/models", headers=READ).json() == [
        json.loads(line) for line in listed.output.splitlines()
    ]
    shown = CliRunner().invoke(cli, ["models", "show", "sent@production", "--json"], env=env)
    assert api.get("/v1/models/sent@production", headers=READ).json() == json.loads(shown.output)
    assert api.get("/v1/models?name=other", headers=READ).json() == []
    assert api.get("/v1/models/other@1", headers=READ).status_code == 404
    assert api.get("/v1/models/bad name", headers=READ).status_code == 422
    get_settings.cache_clear()


# -- operations ------------------------------------------------------------------------------


def test_healthz_and_metrics(api: TestClient, settings: Settings) -> None:
    r = api.get("/healthz")
    assert r.status_code == 200 and r.json() == {
        "status": "ok", "checks": {"broker": {"ok": True}, "database": {"ok": True}}
    }  # fmt: skip
    api.get("/v1/models", headers=READ)
    text = api.get("/metrics").text
    assert 'textlstm_gateway_requests_total{method="GET",route="/v1/models",status="200"}' in text


def test_healthz_names_what_is_down(settings: Settings, tmp_path: Path) -> None:
    from textlstm.testing.ports import free_port

    down = settings.model_copy(
        update={
            "broker_url": f"redis://:hunter2secret@127.0.0.1:{free_port()}/0",
            "database_url": f"sqlite:///{tmp_path / 'unmigrated.db'}",
        }
    )
    with TestClient(create_app(down)) as api:
        r = api.get("/healthz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert not checks["broker"]["ok"] and "ConnectionError" in checks["broker"]["reason"]
    assert not checks["database"]["ok"] and "db upgrade" in checks["database"]["reason"]
    assert "hunter2secret" not in r.text


def test_a_bug_is_a_500_with_a_request_id_and_no_trace(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    gw = api.app.state.gateway  # type: ignore[attr-defined]

    def broken(job_id: object) -> None:
        raise RuntimeError("internal detail /etc/secret-path")

    monkeypatch.setattr(gw.client, "status", broken)
    with caplog.at_level(logging.ERROR, logger="textlstm.gateway"):
        r = api.get(f"/v1/jobs/{uuid.uuid4()}", headers=READ)
    assert r.status_code == 500
    err = error(r)
    assert err["request_id"] == r.headers["x-request-id"]
    assert "secret-path" not in r.text and "Traceback" not in r.text
    assert err["request_id"] in caplog.text and "secret-path" in caplog.text  # logged, not sent
    assert READ_TOKEN not in caplog.text


def test_every_response_has_its_own_request_id_and_is_counted_by_route(
    api: TestClient, rows_job: uuid.UUID
) -> None:
    """The middleware (textlstm.gateway.guard): refusals, a streamed body and an unknown path
    all carry an X-Request-Id, each a new one, and land in the metrics under their route."""
    responses = [
        api.get("/v1/models", headers=READ),  # 200
        api.get("/v1/models"),  # 401 from the auth dependency
        api.get(f"/v1/jobs/{rows_job}/results?limit=3", headers=READ),  # streamed
        api.get("/no/such/path"),  # 404 with no route
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert all(len(i) == 32 for i in ids) and len(set(ids)) == len(ids)
    assert len(responses[2].text.splitlines()) == 3
    text = api.get("/metrics").text
    for line in (
        'method="GET",route="/v1/models",status="401"',
        'method="GET",route="/v1/jobs/{job_id}/results",status="200"',
        'method="GET",route="unmatched",status="404"',
    ):
        assert f"textlstm_gateway_requests_total{{{line}}} 1.0" in text, line


def test_openapi_lists_every_endpoint(api: TestClient) -> None:
    spec = api.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/v1/jobs", "/v1/jobs:batch", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results",
        "/v1/jobs/{job_id}/cancel", "/v1/models", "/v1/models/{ref}", "/healthz", "/metrics",
    }  # fmt: skip
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    assert "texts" in body["schema"]["properties"]
    batch = spec["paths"]["/v1/jobs:batch"]["post"]["requestBody"]["content"]
    jobs = batch["application/json"]["schema"]["properties"]["jobs"]
    assert jobs["maxItems"] == 1000 and jobs["items"] == body["schema"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_gateway_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from textlstm.gateway.app import create_app\n"
        "from textlstm.settings import Settings\n"
        "create_app(Settings(_env_file=None))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- batch -----------------------------------------------------------------------------------


def test_a_batch_is_accepted_recorded_and_published_in_order(
    api: TestClient, sent: str, settings: Settings, redis_client: Any
) -> None:
    mine = str(uuid.uuid4())
    jobs = [
        {"texts": ["great film"], "model": "sent"},
        {"items": [{"id": "a", "text": "dull"}, "fine"], "model": "sent@production",
         "metadata": {"n": 2}, "job_id": mine},
        {"texts": ["urgent"], "model": "sent", "priority": "high"},
    ]  # fmt: skip
    r = api.post("/v1/jobs:batch", headers=SUBMIT, json={"jobs": jobs})
    assert r.status_code == 202, r.text
    out = r.json()["jobs"]
    assert [j["items"] for j in out] == [1, 2, 1] and out[1]["job_id"] == mine
    assert out[0]["status_url"] == f"/v1/jobs/{out[0]['job_id']}"
    # The two normal jobs travel in one envelope, the high one on its own queue.
    assert redis_client.llen(settings.queue) == 1
    assert redis_client.llen(f"{settings.queue}.high") == 1
    client = Client(settings)
    assert [client.status(j["job_id"]).expected for j in out] == [1, 2, 1]
    assert client.status(mine).metadata == {"n": 2}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"jobs": [{"texts": ["a"], "model": "sent"}, {"texts": ["x" * 1001], "model": "sent"}]},
            "jobs[1].texts[0]",
            "limit is 1000",
        ),
        (
            {
                "jobs": [
                    {"texts": ["a"], "model": "sent"},
                    {"items": [{"text": "a", "id": ""}], "model": "sent"},
                ]
            },
            "jobs[1].items[0]",
            "",
        ),
        (
            {"jobs": [{"texts": ["a"], "model": "sent"}, {"texts": ["a"], "model": "nobody"}]},
            "jobs[1].model",
            "nobody",
        ),
        ({"jobs": [{"texts": ["a"], "model": "sent", "colour": 1}]}, "jobs[0].colour", "unknown"),
        (
            {"jobs": [{"texts": ["a"], "model": "sent", "priority": "urgent"}]},
            "jobs[0].priority",
            "high",
        ),
        ({"jobs": [[1]]}, "jobs[0]", "object"),
        (
            {"jobs": [{"texts": ["a"], "model": "sent", "job_id": str(uuid.UUID(int=7))}] * 2},
            "jobs[1].job_id",
            "already job 0",
        ),
        (
            {
                "jobs": [
                    {"texts": ["a"], "model": "sent"},
                    {"texts": ["a"], "model": "nobody"},
                    {"texts": ["a"], "model": "nobody"},
                ]
            },
            "jobs[1].model",
            "nobody",
        ),
        ({"jobs": []}, "jobs", "non-empty"),
        ({"jobs": [{"texts": ["a"], "model": "sent"}] * 4}, "jobs", "TEXTLSTM_API_MAX_BATCH_JOBS"),
        ({"jobz": []}, "jobz", "unknown field"),
        ([], "body", "object"),
    ],  # fmt: skip
)
def test_a_batch_with_one_bad_job_is_refused_whole(
    settings: Settings, sent: str, redis_client: Any, body: Any, field: str, words: str
) -> None:
    small = settings.model_copy(update={"api_max_batch_jobs": 3})
    with TestClient(create_app(small)) as api:
        r = api.post("/v1/jobs:batch", headers=SUBMIT, json=body)
    assert r.status_code == 422, r.text
    err = error(r)
    assert err["field"] == field and words in err["message"], err
    assert redis_client.llen(settings.queue) == 0  # nothing was published
    from textlstm.store.jobs import list_jobs

    with Client(settings).session() as s:
        assert list_jobs(session=s) == []  # and nothing recorded


def test_a_batch_needs_the_submit_scope_and_json(api: TestClient, sent: str) -> None:
    body = {"jobs": [{"texts": ["a"], "model": "sent"}]}
    assert api.post("/v1/jobs:batch", headers=READ, json=body).status_code == 403
    assert api.post("/v1/jobs:batch", json=body).status_code == 401
    r = api.post("/v1/jobs:batch", headers={**SUBMIT, "Content-Type": "text/plain"}, content=b"")
    assert r.status_code == 415
