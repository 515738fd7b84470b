"""The OpenAPI schema published in the docs (docs/reference/openapi.json) is the one the
gateway serves with the default settings: regenerate it with
`python -m textlstm.gateway.schema > docs/reference/openapi.json` when the API changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker

from textlstm.gateway.app import create_app
from textlstm.gateway.auth import hash_token
from textlstm.gateway.responses import Accepted, BatchAccepted, CancelDoc, JobDoc, WebhookDoc
from textlstm.gateway.schema import openapi_document, render
from textlstm.settings import Settings
from textlstm.store.registry import register_bundle

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "reference" / "openapi.json"
REGENERATE = "python -m textlstm.gateway.schema > docs/reference/openapi.json"


def test_the_committed_schema_is_current() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == render(openapi_document()), (
        f"docs/reference/openapi.json is stale: run `{REGENERATE}`"
    )


def test_the_module_prints_it_whatever_the_environment_says(tmp_path: Path) -> None:
    """The published copy is the defaults' schema: a limit set in the environment (which
    would change `maxItems`) does not leak into it."""
    out = subprocess.run(
        [sys.executable, "-m", "textlstm.gateway.schema"],
        env={"PATH": "/usr/bin:/bin", "TEXTLSTM_MAX_JOB_ITEMS": "7"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == PUBLISHED.read_text(encoding="utf-8")
    assert not list(tmp_path.iterdir()), "printing the schema must not create a database"


def test_a_gateway_with_default_limits_serves_the_published_schema(
    db_url: str, redis_url: str
) -> None:
    settings = Settings(database_url=db_url, broker_url=redis_url, _env_file=None)  # type: ignore[call-arg]
    with TestClient(create_app(settings)) as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(PUBLISHED.read_text(encoding="utf-8"))


def test_other_limits_give_another_schema() -> None:
    """The comparison above is sensitive to the limits (so a stale copy cannot pass)."""
    changed = Settings.model_construct(max_job_items=7)
    assert render(openapi_document(changed)) != PUBLISHED.read_text(encoding="utf-8")


def test_the_gateway_page_links_the_published_schema() -> None:
    page = (ROOT / "docs" / "gateway.md").read_text(encoding="utf-8")
    assert "(reference/openapi.json)" in page


TOKEN = "openapi-doc-token-" + "d" * 30


def _conforms(doc: Any, model: type[BaseModel]) -> None:
    """`doc` has exactly the model's fields, each of the declared type (the schema's source)."""
    assert set(doc) == set(model.model_fields), (model.__name__, sorted(doc))
    model.model_validate(doc)


def test_real_responses_have_the_published_fields(
    db_url: str,
    redis_url: str,
    queue_name: str,
    session_factory: sessionmaker[Session],
    fake_bundle: Path,
) -> None:
    """Each success body declared by a model in the schema (textlstm.gateway.responses) is
    what the endpoint really sends: a job queued, with a webhook, cancelled, and a batch."""
    with session_factory.begin() as s:
        register_bundle(session=s, path=fake_bundle, name="sent", aliases=["production"])
    settings = Settings(
        database_url=db_url,
        broker_url=redis_url,
        queue=queue_name,
        api_tokens=f"{hash_token(TOKEN)}:submit",
        _env_file=None,  # type: ignore[call-arg]
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"texts": ["a", "b"], "model": "sent", "webhook": "https://hooks.example.com/x"}
    with TestClient(create_app(settings)) as api:
        accepted = api.post("/v1/jobs", json=body, headers=auth)
        assert accepted.status_code == 202, accepted.text
        _conforms(accepted.json(), Accepted)
        job = accepted.json()["job_id"]
        queued = api.get(f"/v1/jobs/{job}", headers=auth).json()
        _conforms(queued, JobDoc)
        assert queued["status"] == "queued" and queued["webhook"] is None  # not final yet
        cancelled = api.post(f"/v1/jobs/{job}/cancel", headers=auth).json()
        _conforms(cancelled, CancelDoc)
        final = api.get(f"/v1/jobs/{job}", headers=auth).json()
        _conforms(final, JobDoc)
        assert final["status"] == "cancelled" and final["finished_at"] is not None
        _conforms(final["webhook"], WebhookDoc)  # final: its delivery is recorded
        batch = api.post(
            "/v1/jobs:batch",
            json={"jobs": [{"texts": ["c"], "model": "sent"}, {"texts": ["d"], "model": "sent"}]},
            headers=auth,
        )
        assert batch.status_code == 202, batch.text
        _conforms(batch.json(), BatchAccepted)
        for one in batch.json()["jobs"]:
            _conforms(one, Accepted)
        plain = api.get(f"/v1/jobs/{one['job_id']}", headers=auth).json()
        _conforms(plain, JobDoc)
        assert plain["webhook"] is None
