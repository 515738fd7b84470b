"""`textlstm-admin status` shows webhook deliveries by state and the latest failures (real
database and Redis), without the URL's path or query (they may hold a token)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from textlstm.cli.status import render
from textlstm.ops.fleet import collect
from textlstm.settings import Settings
from textlstm.store.events import claim_due, record_attempt
from textlstm.store.predictions import JobItems, PredictionRecord, save_batch


def test_status_shows_webhook_failures(
    db_url: str, redis_url: str, queue_name: str, session_factory: sessionmaker[Session]
) -> None:
    failed, pending = uuid.uuid4(), uuid.uuid4()
    with session_factory.begin() as s:
        for jid in (failed, pending):
            recs = [PredictionRecord(0, "ok", "pos")]
            url = "https://hooks.example:8443/h/t0ken?k=secret-ish"
            save_batch(session=s, jobs={jid: JobItems("m", 1, recs, webhook_url=url)})
    now = datetime.now(UTC)
    with session_factory.begin() as s:
        claims = claim_due(session=s, now=now, lease=now - now, limit=1)
        record_attempt(session=s, job_id=claims[0].job_id, now=now, status_code=None,
                       error="refused: hooks.example resolves to 10.0.0.1, an internal address",
                       delivered=False, retry_at=None)  # fmt: skip
    settings = Settings(database_url=db_url, broker_url=redis_url, queue=queue_name,
                        _env_file=None)  # type: ignore[call-arg]  # fmt: skip
    st = collect(settings, timeout=0.2)
    assert st.webhooks == {"pending": 1, "delivered": 0, "failed": 1}
    (f,) = st.webhook_failures
    assert f["job_id"] == str(claims[0].job_id) and f["attempts"] == 1
    assert f["url"] == "https://hooks.example:8443/…"
    text = render(st)
    assert "webhooks: 1 pending, 1 failed" in text
    assert f"webhook failed: job {claims[0].job_id} -> https://hooks.example:8443/… after 1" in text
    assert "t0ken" not in text and "secret-ish" not in text


def test_jobs_show_tells_the_webhook_delivery(
    settings_env: str, session_factory: sessionmaker[Session]
) -> None:
    import json

    from click.testing import CliRunner

    from textlstm.cli import cli

    jid = uuid.uuid4()
    with session_factory.begin() as s:
        recs = [PredictionRecord(0, "ok", "pos")]
        save_batch(
            session=s, jobs={jid: JobItems("m", 1, recs, webhook_url="https://h.example/t0k")}
        )
    text = CliRunner().invoke(cli, ["jobs", "show", str(jid)])
    assert text.exit_code == 0, text.output
    assert (
        "webhook    pending after 0 attempt(s) -> https://h.example/…, next attempt" in text.output
    )
    assert "t0k" not in text.output
    doc = json.loads(CliRunner().invoke(cli, ["jobs", "show", str(jid), "--json"]).output)
    assert doc["webhook"]["state"] == "pending" and doc["webhook"]["url"] == "https://h.example/…"
    plain = uuid.uuid4()
    with session_factory.begin() as s:
        save_batch(session=s, jobs={plain: JobItems("m", 1, [PredictionRecord(0, "ok", "pos")])})
    out = CliRunner().invoke(cli, ["jobs", "show", str(plain)]).output
    assert "webhook" not in out
