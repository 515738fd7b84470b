"""What the whole deployment is doing: queue depths, workers online, jobs, model aliases.

`collect(settings)` asks each source separately (Redis for queues, Celery remote control for
workers, SQL for jobs and aliases) and records a source that does not answer as an error
string instead of failing: a status command is most needed when something is down.
`textlstm-admin status` prints it; `FleetStatus.to_json()` is the `--json` document.
Imports neither torch nor the worker package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from textlstm.broker_options import is_amqp, is_sentinel, probe_broker
from textlstm.ops import deadletters
from textlstm.settings import Settings, mask_url
from textlstm.wire.events import url_origin
from textlstm.wire.queues import consume_order
from textlstm.wire.redis_layout import broker_client, queue_depths, unacked_count

INFO_COMMAND = "textlstm_info"  # worker/control.py


@dataclass(frozen=True)
class WorkerInfo:
    node: str  # Celery node name, e.g. textlstm0@gpu-host-3
    device: str | None
    models: list[str]
    queues: list[str]
    batches: int
    items: int
    buffered_messages: int
    pid: int | None


@dataclass
class FleetStatus:
    broker: str  # masked URL
    database: str  # masked URL
    queues: dict[str, int] = field(default_factory=dict)  # waiting messages per queue
    unacked: int | None = None  # delivered to a worker, not yet committed and acked
    dead_letters: int | None = None  # on the dead-letter list (textlstm-admin dead-letters)
    workers: list[WorkerInfo] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    oldest_in_flight: dict[str, Any] | None = None  # job id, status, submitted_at, age_s
    aliases: dict[str, int] = field(default_factory=dict)  # "name@alias" -> version
    #: Webhook deliveries by state (pending, delivered, failed) and the latest failures.
    webhooks: dict[str, int] = field(default_factory=dict)
    webhook_failures: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # source -> why it did not answer

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def collect(
    settings: Settings, *, timeout: float = 2.0, now: datetime | None = None
) -> FleetStatus:
    """Ask Redis, the workers (waiting up to `timeout` s for replies) and the database."""
    st = FleetStatus(broker=mask_url(settings.broker_url), database=mask_url(settings.database_url))
    if _broker_answers(settings, st):
        _queues(settings, st)
        _workers(settings, st, timeout)
    _database(settings, st, now or datetime.now(UTC))
    return st


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _broker_answers(settings: Settings, st: FleetStatus) -> bool:
    """On `sentinel://` ask the Sentinels for the master first, on amqp:// open one AMQP
    connection: when that fails, its one line (naming TEXTLSTM_BROKER_URL) is the broker's
    error (queues and workers would each report redis-py's long MasterNotFoundError, or
    py-amqp's reply, after Celery's connection retries)."""
    if not (is_sentinel(settings.broker_url) or is_amqp(settings.broker_url)):
        return True
    try:
        from textlstm.client.publisher import checked_queues

        probe_broker(
            settings.broker_url, settings.broker_transport_options, queues=checked_queues(settings)
        )
    except ConnectionError as exc:
        st.errors["broker"] = str(exc)
        return False
    return True


def _queues(settings: Settings, st: FleetStatus) -> None:
    if is_amqp(settings.broker_url):
        # RabbitMQ: ready messages per queue (passive declare); no unacked count, no
        # dead-letter list (textlstm.broker_options.amqp_queue_depths).
        from textlstm.broker_options import amqp_dead_letter_queue, amqp_queue_depths

        dead = amqp_dead_letter_queue(settings.queue)
        try:
            depths = amqp_queue_depths(
                settings.broker_url,
                [*consume_order(settings.queue), dead],
                settings.broker_transport_options,
            )
            st.dead_letters = depths.pop(dead)
            st.queues = depths
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            st.errors["queues"] = _why(exc)
        if settings.rabbitmq_management_url:
            _amqp_unacked(settings, st)
        return
    try:
        client = broker_client(settings)
        try:
            st.queues = queue_depths(client, consume_order(settings.queue))
            st.unacked = unacked_count(client)
            st.dead_letters = deadletters.count(client, deadletters.dead_letter_key(settings.queue))
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        st.errors["queues"] = _why(exc)


def _amqp_unacked(settings: Settings, st: FleetStatus) -> None:
    """Unacked messages on amqp:// from the management API (TEXTLSTM_RABBITMQ_MANAGEMENT_URL,
    `textlstm.broker_options.amqp_unacked_counts`): summed over the queue's three priority
    queues as on Redis; when it does not answer, its one line under `unacked`."""
    from textlstm.broker_options import amqp_unacked_counts

    assert settings.rabbitmq_management_url is not None
    try:
        counts = amqp_unacked_counts(
            settings.rabbitmq_management_url, settings.broker_url, consume_order(settings.queue)
        )
    except ConnectionError as exc:
        st.errors["unacked"] = str(exc)
        return
    st.unacked = sum(counts.values())


def parse_replies(replies: dict[str, Any] | None) -> list[WorkerInfo]:
    """Workers from the `textlstm_info` broadcast replies, sorted by node name (pure)."""
    out = []
    for node, info in sorted((replies or {}).items()):
        if not isinstance(info, dict):
            info = {}
        out.append(
            WorkerInfo(
                node=node,
                device=info.get("device"),
                models=list(info.get("models") or []),
                queues=list(info.get("queues") or []),
                batches=int(info.get("batches") or 0),
                items=int(info.get("items") or 0),
                buffered_messages=int(info.get("buffered_messages") or 0),
                pid=info.get("pid"),
            )
        )
    return out


def _workers(settings: Settings, st: FleetStatus, timeout: float) -> None:
    from celery.app.control import flatten_reply

    from textlstm.client.celery_app import client_app

    try:
        # The producers' app (JSON only, no result backend): the replies are JSON too.
        app = client_app(settings)
        # Celery's public broadcast (what `inspect()` does for its own commands): a list of
        # {node: reply}, one per worker that answered within the timeout.
        replies = app.control.broadcast(INFO_COMMAND, reply=True, timeout=timeout)
        st.workers = parse_replies(flatten_reply(replies or []))
    except Exception as exc:  # noqa: BLE001
        st.errors["workers"] = _why(exc)


def _database(settings: Settings, st: FleetStatus, now: datetime) -> None:
    from textlstm.store.db import session_scope
    from textlstm.store.events import delivery_counts, recent_failures
    from textlstm.store.jobs import job_counts, oldest_in_flight
    from textlstm.store.model_versions import list_aliases

    try:
        with session_scope(settings.database_url) as session:
            st.jobs = job_counts(session=session)
            job = oldest_in_flight(session=session)
            if job is not None:
                st.oldest_in_flight = {
                    "job_id": str(job.id),
                    "status": job.status,
                    "submitted_at": job.submitted_at.isoformat(),
                    "age_s": round((now - job.submitted_at).total_seconds(), 1),
                    "done": job.done_count,
                    "expected": job.expected_count,
                }
            st.aliases = {f"{a.name}@{a.alias}": a.version for a in list_aliases(session=session)}
            st.webhooks = delivery_counts(session=session)
            st.webhook_failures = [
                {
                    "job_id": str(d.job_id),
                    "url": url_origin(d.url),
                    "attempts": d.attempts,
                    "status_code": d.last_status_code,
                    "error": d.last_error,
                    "at": d.updated_at.isoformat(),
                }
                for d in recent_failures(session=session)
            ]
    except Exception as exc:  # noqa: BLE001
        st.errors["database"] = _why(exc)
