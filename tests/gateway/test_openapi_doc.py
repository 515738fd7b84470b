"""The OpenAPI schema published in the docs (docs/reference/openapi.json) is the one the
gateway serves with the default settings: regenerate it with
`python -m textlstm.gateway.schema > docs/reference/openapi.json` when the API changes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from textlstm.gateway.app import create_app
from textlstm.gateway.schema import openapi_document, render
from textlstm.settings import Settings

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
