"""Infrastructure settings: one typed object read from `TEXTLSTM_*` variables and a `.env` file.

Nothing is read or created at import time: call :func:`get_settings` (cached per process) or build
``Settings(...)`` explicitly in tests. Model and training knobs are *not* here; each component owns
its own defaults. This is the only module that reads the environment.

Every mistake is found here, when the settings are read, rather than at first use: a bad number,
choice, URL (textlstm.urlcheck: scheme, driver, port) or an unreadable `.env` raises one
:class:`~textlstm.errors.SettingsError` holding one line per problem, each naming its
`TEXTLSTM_*` variable, with no password in it. Entry points print those lines and exit non-zero.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pydantic
import pydantic_settings
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.sources import ENV_FILE_SENTINEL

from textlstm.broker_options import (
    is_sentinel,
    masked_options,
    parse_transport_options,
    parse_use_ssl,
    sentinel_problem,
    with_master_auth_on_every_url,
)
from textlstm.durations import parse_duration
from textlstm.errors import SettingsError, ValidationError
from textlstm.gc_tuning import DEFAULT_THRESHOLD
from textlstm.urlcheck import check_broker_url, check_database_url
from textlstm.wire.limits import INT32_MAX, JOB_ITEMS_MAX

if TYPE_CHECKING:
    from textlstm.gateway.auth import TokenEntry

_SECRET_QUERY_KEYS = {"password", "pass", "pwd", "secret", "token", "sslpassword"}


def mask_url(url: str) -> str:
    """Return `url` with any password (in the netloc or the query string) replaced by ``***``.

    Use this wherever a database or broker URL is printed, logged or put in an error message.
    Anything that does not parse as a URL is hidden entirely rather than risk leaking it. A
    broker setting may list several URLs separated by `;` (Celery's failover list, the
    Sentinels of `sentinel://`): each is masked on its own, since `urlsplit` would read the
    second one's password as part of the first one's path.
    """
    if ";" in url and "://" in url:
        return ";".join(_mask_one(u) for u in url.split(";"))
    return _mask_one(url)


def _mask_one(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if sep else f"{user}@{host}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
                pairs = [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs]
                query = urlencode(pairs, safe="*")
        if netloc == parts.netloc and query == parts.query:
            return url  # nothing secret; urlunsplit would also turn sqlite:/// into sqlite:/
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable URL hidden>"


class Settings(BaseSettings):
    """Where the database, broker and model cache are, and the limits every job must respect."""

    model_config = SettingsConfigDict(
        env_prefix="TEXTLSTM_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # str(ValidationError) would echo every bad value, a URL's password included; the
        # SettingsError built from it (below) shows values masked.
        hide_input_in_errors=True,
    )

    #: TEXTLSTM_API_TOKENS_FILE's entries, read once with the settings (api_token_entries).
    _file_tokens: tuple[TokenEntry, ...] = pydantic.PrivateAttr(default=())

    def __init__(self, **values: Any) -> None:
        """Read the settings as BaseSettings does, but report every mistake as one
        SettingsError line per problem, naming its `TEXTLSTM_*` variable and with no secret in
        it, instead of pydantic's multi-line report (which the CLI would print as a traceback).
        """
        _check_env_files(
            values.get("_env_file", ENV_FILE_SENTINEL), values.get("_env_file_encoding")
        )
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            raise SettingsError(_describe(exc)) from None
        except pydantic_settings.SettingsError as exc:  # a value it could not even decode
            raise SettingsError([f"TEXTLSTM settings: {exc}"]) from None

    #: SQLAlchemy URL. SQLite (the embedded default) or `postgresql+psycopg://user:pw@host/db`.
    database_url: str = Field(default="sqlite:///./textlstm.db", repr=False)
    #: Celery broker URL; the producer needs nothing else. Redis (`redis://`, `rediss://`) is
    #: the supported broker; the other schemes textlstm.urlcheck accepts lack its features.
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", repr=False)
    #: kombu transport options (Celery's `broker_transport_options`) as a JSON object, merged
    #: over the project's own: for `sentinel://`, `{"master_name": "mymaster"}` and, when the
    #: Sentinels need one, `"sentinel_kwargs": {"password": "..."}` (textlstm/broker_options.py
    #: lists the options accepted; docs/operations.md, "Redis Sentinel").
    broker_transport_options: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=dict, repr=False
    )
    #: `sentinel://` only: TLS to the Redis master, as a JSON object like Celery's
    #: `broker_use_ssl` (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`
    #: (default required), `ssl_check_hostname`); empty = plain TCP. TLS to the Sentinels
    #: themselves goes in `sentinel_kwargs`. A `rediss://` URL says TLS in its own query.
    broker_use_ssl: Annotated[dict[str, Any], NoDecode] = Field(default_factory=dict)
    #: Replicas that must confirm a producer's messages (Redis `WAIT`) before a job is reported
    #: accepted; unset = 1 on a `sentinel://` broker, 0 (no wait) otherwise. Redis replication
    #: is asynchronous: without it, a failover can drop the last messages the old master
    #: acknowledged. A send not confirmed in time is one BrokerError (send it again: items are
    #: stored once).
    broker_wait_replicas: int | None = Field(default=None, ge=0, le=16)
    #: How long a producer waits for `broker_wait_replicas` confirmations.
    broker_wait_timeout_ms: int = Field(default=2000, ge=1, le=600_000)
    #: `sentinel://` only: how long a producer keeps retrying a send while the Sentinels
    #: promote a replica (their down-after-milliseconds plus the failover), before BrokerError.
    broker_failover_timeout_s: float = Field(default=30.0, ge=0)
    #: amqp:// only, optional: the RabbitMQ management HTTP API
    #: (`http://user:password@rabbitmq:15672`), where `status` reads the queues' unacked
    #: counts. AMQP gives a client no such count (a passive queue.declare has ready messages
    #: and consumers only) and the workers' own replies miss what is in transit and workers
    #: busy past the probe, so the management API is the one exact source. Unset: `status`
    #: shows no unacked count on amqp://.
    rabbitmq_management_url: str | None = Field(default=None, repr=False)
    #: Celery queue (and routing key) that classify messages are sent to. Priorities use
    #: `<queue>.high` and `<queue>.bulk` next to it (normal keeps this name).
    queue: str = Field(default="textlstm", min_length=1)
    #: Model reference used when a producer does not name one (`name`, `name@3`, `name@alias`).
    default_model: str | None = None
    #: Local directory where workers unpack model bundles, one sub-directory per sha256.
    model_cache_dir: Path = Path("~/.cache/textlstm/bundles")
    #: SQLite only: how long a writer waits for the lock before failing.
    sqlite_busy_timeout_ms: int = Field(default=10_000, ge=0, le=INT32_MAX)  # a C int in SQLite

    #: Longest text accepted, in characters (checked before anything is enqueued).
    max_text_chars: int = Field(default=20_000, ge=1)
    #: Most items accepted in one job. At most 2,147,483,647: a job's total and its item
    #: indices are Integer columns (textlstm/wire/limits.py).
    max_job_items: int = Field(default=1_000_000, ge=1, le=JOB_ITEMS_MAX)
    #: Most items carried by one broker message; bigger jobs are split.
    message_max_items: int = Field(default=256, ge=1)
    #: Soft cap on the summed UTF-8 size of the texts in one message (a message always holds
    #: at least one item).
    message_max_bytes: int = Field(default=1_048_576, ge=1)

    # -- producer backpressure (docs/operations.md) ----------------------------------
    #: Most messages a queue may hold waiting (not yet delivered to a worker) before the
    #: producer stops adding more; 0 = no limit. Bounds Redis memory under a runaway producer.
    queue_max_pending: int = Field(default=0, ge=0)
    #: What `submit` does when the queue is over `queue_max_pending`: `refuse` (raise
    #: QueueFullError, nothing sent) or `block` (send as room appears, up to the timeout).
    queue_full_policy: Literal["refuse", "block"] = "refuse"
    #: How long a blocked producer waits for room before raising QueueFullError.
    queue_full_timeout_s: float = Field(default=60.0, ge=0)

    # -- metrics (docs/operations.md) ---------------------------------------------
    #: Port of the worker's Prometheus endpoint (`/metrics`); 0 = off. `textlstm-admin worker`
    #: serves all its processes on this one port; a `celery` process started by hand serves
    #: its own on port + process index.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Address the metrics endpoint binds to.
    metrics_addr: str = "0.0.0.0"

    # -- worker (docs/worker.md) ------------------------------------------------------
    #: Most items in one micro-batch: one transaction and one round of acks. The model runs
    #: it in forward passes of worker_forward_batch texts sorted by length. Bulk jobs in
    #: bench/pipeline.py: 1024 gave 1.3x the texts/s of 128 (fewer, bigger writes, less
    #: padding), 2048 1.0-1.1x 1024, 4096 less (a run's last batches leave a process idle).
    #: At low load a batch is cut by the idle flush long before it is full.
    worker_batch_max_items: int = Field(default=2048, ge=1)
    #: Most texts in one forward pass. Throughput saturates near 128 on CPU (measured);
    #: bigger batches are slower there, a GPU wants more.
    worker_forward_batch: int = Field(default=128, ge=1)
    #: Most tokens (estimated, before padding) in one micro-batch: bounds memory and padding
    #: when texts are long.
    worker_batch_max_tokens: int = Field(default=262_144, ge=1)
    #: Longest a received item waits for its micro-batch to fill before it is flushed anyway
    #: (the worst case; see idle below for the usual case).
    worker_batch_max_wait_ms: int = Field(default=500, ge=0)
    #: Flush a partial micro-batch once no message has arrived for this long (the queue went
    #: quiet). At saturation messages arrive every 1-2 ms, so batches fill to max items.
    worker_batch_idle_ms: int = Field(default=10, ge=0)
    #: Allocations between two collections of Python's youngest GC generation in a worker,
    #: after its start-up heap is frozen (textlstm/gc_tuning.py); 0 = Python's defaults.
    worker_gc_threshold: int = Field(default=DEFAULT_THRESHOLD, ge=0, le=INT32_MAX)  # a C int
    #: Unacked messages one worker process holds (received, not yet committed). Must exceed
    #: the messages one micro-batch needs (max items when producers send one text per message).
    worker_prefetch: int = Field(default=256, ge=1)
    #: How often an alias (`name`, `name@production`) is re-resolved: a moved alias is picked up
    #: within this many seconds without a restart.
    worker_alias_refresh_s: float = Field(default=15.0, ge=0)
    #: Loaded models kept per worker process (least recently used evicted first).
    worker_model_cache_size: int = Field(default=2, ge=1)
    #: Worker processes; 0 = one per CPU core (CPU) or one per allowed GPU (CUDA).
    worker_concurrency: int = Field(default=0, ge=0)
    #: torch intra-op threads per CPU worker process; 0 = cores // processes (at least 1), so
    #: processes x threads never oversubscribes the cores (2 x 1 beat 1 x 2 here).
    worker_threads: int = Field(default=0, ge=0)
    #: auto | cpu | cuda | cuda:N. `auto` falls back to CPU (one warning) without CUDA.
    worker_device: str = "auto"
    #: none | int8: dynamic int8 quantization of the LSTM and Linear weights on CPU workers
    #: (1.25x the model step on AG News, 1.0-1.15x the whole pipeline in bench/results; check your
    #: model's accuracy first). Falls back to fp32, with a warning, where torch cannot do it.
    worker_quantize: Literal["none", "int8"] = "none"
    #: GPU indices the worker processes are spread over (round robin by process index);
    #: empty = every visible GPU.
    worker_gpus: str = ""
    #: This process's index among the worker processes (set by `textlstm-admin worker` for
    #: each process it starts; picks the GPU).
    worker_process_index: int = Field(default=0, ge=0)
    #: Model reference to load and run once before taking work (empty = no warm-up).
    worker_warmup_model: str = ""
    #: Redis: seconds after which a delivered but unacked message is handed to another
    #: worker. Must be well above the worst batch time (a DB outage included); redelivery of
    #: a batch still in progress is harmless (writes are idempotent) but wasteful.
    worker_visibility_timeout_s: int = Field(default=600, ge=1)
    #: Redis: how often a worker sweeps for messages whose visibility timeout has expired
    #: (messages of a killed worker come back after timeout + at most this).
    worker_restore_interval_s: float = Field(default=10.0, gt=0)
    #: Redis: how long an idle worker waits on one queue before looking at all of its queues
    #: again (the atomic pop cannot block; docs/worker.md). A message on the queue
    #: that last had work wakes it at once; one on another queue waits at most this long.
    worker_idle_poll_ms: int = Field(default=25, ge=1, le=1000)
    #: Times one message may be taken by a worker without being acked before it is moved to
    #: the dead-letter list instead (poison-message quarantine: a worker died each time it held
    #: it, e.g. a native crash or the OOM killer). A message taken again after such a death
    #: runs alone, so its neighbours are not counted with it. On amqp:// also the queues'
    #: `x-delivery-limit`: producers and workers must agree, and changing it means draining
    #: and deleting the queues (docs/brokers.md).
    worker_max_deliveries: int = Field(default=3, ge=1, le=1000)
    #: Redis: dead-letter records kept (`<queue>.dead-letters`, newest first; each holds the
    #: refused message itself). `textlstm-admin dead-letters` lists, requeues and purges them.
    dead_letter_max: int = Field(default=10_000, ge=1)
    #: Folder where each worker process appends one JSON line per micro-batch (its size and
    #: stage timings) to `<hostname>-<pid>.jsonl`, read with `textlstm.serving.stages`; unset
    #: = off. For benchmarks, tests and tuning: the batch log line is for people, these records
    #: for programs (record format in docs/worker.md).
    worker_stats_dir: Path | None = None
    #: Testing only: a worker process that receives an item with exactly this text kills
    #: itself with SIGKILL before storing it, as the OOM killer would. Empty = off.
    worker_test_crash_text: str = ""
    #: How often a worker re-reads the cancelled jobs, checked before each micro-batch: on
    #: Redis the set `<queue>.cancelled` (one round trip), on amqp:// the jobs cancelled in
    #: the last `cancel_keep_s` from SQL (one indexed, bounded query). A cancel reaches every
    #: worker within this, and at most one read per interval is added to the work. 0 = before
    #: every micro-batch.
    worker_cancel_refresh_ms: int = Field(default=500, ge=0, le=1000)
    #: Seconds a cancelled job id stays in that set (on amqp://: how far back the SQL read
    #: looks). Messages of a job cancelled
    #: longer ago are classified again if they are still queued, but never stored (its items
    #: already have their `cancelled` rows in SQL).
    cancel_keep_s: int = Field(default=7 * 86400, ge=60)
    #: First and longest pause between retries while the database is unreachable.
    worker_db_retry_initial_s: float = Field(default=0.5, gt=0)
    worker_db_retry_max_s: float = Field(default=10.0, gt=0)
    # -- completion events and webhooks (docs/notify.md) ------------------------------
    #: Key of the HMAC-SHA256 signature on every webhook POST (`X-Textlstm-Signature`). Unset:
    #: webhooks are not sent (their deliveries fail with that reason). Never logged or stored.
    webhook_secret: pydantic.SecretStr | None = Field(default=None, repr=False)
    #: Hosts and networks a webhook may be delivered to beyond the public internet, separated
    #: by commas: host names (`hooks.internal`), addresses (`127.0.0.1`) or CIDR networks
    #: (`10.1.0.0/16`). By default every loopback, link-local, private, shared, reserved or
    #: multicast address is refused, whatever name resolves to it, so a producer cannot aim the
    #: workers at internal services.
    webhook_allow: str = ""
    #: Seconds one delivery attempt may take (connect, and then the response).
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    #: Attempts before a delivery is recorded as `failed` (the first one included).
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    #: Pause before the second attempt; doubled after each failure (with jitter), up to max.
    webhook_backoff_initial_s: float = Field(default=1.0, gt=0)
    webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    #: How often a worker process's webhook sender looks in SQL for due deliveries (retries,
    #: and those a stopped worker left) besides those its own batches hand it.
    webhook_sweep_interval_s: float = Field(default=5.0, gt=0)

    # -- HTTP gateway (docs/gateway.md) ------------------------------------------------
    #: Who may call the gateway's `/v1` endpoints: `<sha256 hex of a token>:<scope>` entries
    #: separated by commas, scope `read` (status, results, models) or `submit` (also submit
    #: and cancel). Only digests are stored: `textlstm-admin api-token` makes a token and its
    #: entry. With neither this nor TEXTLSTM_API_TOKENS_FILE, every `/v1` request is refused
    #: (401); `/healthz` and `/metrics` stay open.
    api_tokens: str = Field(default="", repr=False)
    #: A file of the same entries, one a line (blank lines and `#` comments allowed), such as
    #: a Docker secret. Its entries are added to TEXTLSTM_API_TOKENS's (a token in either is
    #: admitted). Read once when the settings are read: a bad line stops the gateway with the
    #: file's name and the line's number (never its text); restart it after editing the file.
    api_tokens_file: Path | None = None
    #: Largest request body the gateway reads, in bytes; a longer one is refused with 413
    #: before it is read (by its Content-Length, and by counting as it streams in).
    api_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=INT32_MAX)
    #: Seconds a client refused by backpressure (429, TEXTLSTM_QUEUE_MAX_PENDING) is told to
    #: wait (`Retry-After`).
    api_retry_after_s: int = Field(default=5, ge=1, le=3600)
    #: Most jobs one `POST /v1/jobs:batch` may carry (each also within the job limits, and
    #: the body within TEXTLSTM_API_MAX_BODY_BYTES); more is refused with 422.
    api_max_batch_jobs: int = Field(default=1000, ge=1, le=100_000)

    #: Prefix of each worker process's Celery node name (`<name><index>@<host>`): give
    #: workers sharing a host different names so `textlstm-admin status` tells them apart.
    worker_name: str = Field(default="textlstm", pattern=r"^[A-Za-z0-9_.-]+$")

    # -- retention (docs/operations.md#retention) ---------------------------------------
    #: Workers delete jobs finished longer ago than this (`30d`, `12h`), with their
    #: predictions, as `textlstm-admin jobs purge --older-than` does, in every final status;
    #: unset or empty = off (nothing is ever deleted).
    retention_purge_after: timedelta | None = None
    #: How often the fleet purges: one worker process at a time, about once per interval,
    #: whatever the number of workers (a Redis lease; worker/retention.py).
    retention_purge_interval_s: float = Field(default=3600.0, gt=0)
    #: Most prediction rows deleted in one transaction (by the workers and by `jobs purge`):
    #: each transaction stays short, so no lock is held for long (bench/results/purge.md).
    retention_batch_rows: int = Field(default=5000, ge=1, le=1_000_000)

    @field_validator("database_url")
    @classmethod
    def _use_psycopg3(cls, value: str) -> str:
        # psycopg 3 is the installed driver; a bare postgresql:// would ask SQLAlchemy for psycopg2.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                value = "postgresql+psycopg://" + value[len(prefix) :]
                break
        check_database_url(value)  # here, not at the first connection: one line, no traceback
        return value

    @field_validator("broker_url")
    @classmethod
    def _supported_broker(cls, value: str) -> str:
        check_broker_url(value)
        # sentinel://: the master's password on every URL, so a reconnection through another
        # Sentinel's URL authenticates too (broker_options.with_master_auth_on_every_url).
        return with_master_auth_on_every_url(value)

    @field_validator("rabbitmq_management_url")
    @classmethod
    def _management_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"must be an http(s):// URL of the RabbitMQ management API, got {mask_url(value)}"
                " (e.g. http://user:password@rabbitmq:15672)"
            )
        return value.strip().rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _strong_secret(cls, value: pydantic.SecretStr | None) -> pydantic.SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (a random string, e.g. 32 bytes hex)")
        return value

    @field_validator("webhook_allow")
    @classmethod
    def _allow_list(cls, value: str) -> str:
        from textlstm.wire.events import parse_allow_list

        parse_allow_list(value)  # ValueError names the entry
        return value

    @field_validator("broker_transport_options", mode="before")
    @classmethod
    def _transport_options(cls, value: Any) -> dict[str, Any]:
        return parse_transport_options(value)

    @field_validator("broker_use_ssl", mode="before")
    @classmethod
    def _use_ssl(cls, value: Any) -> dict[str, Any]:
        return parse_use_ssl(value)

    @model_validator(mode="after")
    def _sentinel_needs(self) -> Settings:
        """A sentinel:// URL without a master name would fail in kombu at the first
        connection, in every process, with "'master_name' transport option must be
        specified"; said here instead, once, naming the settings."""
        problem = sentinel_problem(self.broker_url, self.broker_transport_options)
        if problem:
            raise ValueError(problem)
        if self.broker_use_ssl and not is_sentinel(self.broker_url):
            raise ValueError(
                "TEXTLSTM_BROKER_USE_SSL: is for a sentinel:// TEXTLSTM_BROKER_URL; a "
                "rediss:// URL takes its TLS options in its query (?ssl_ca_certs=...)"
            )
        return self

    @property
    def wait_replicas(self) -> int:
        """Replicas a producer waits for (`broker_wait_replicas`, resolved)."""
        if self.broker_wait_replicas is not None:
            return self.broker_wait_replicas
        return 1 if is_sentinel(self.broker_url) else 0

    @field_validator("api_tokens")
    @classmethod
    def _api_tokens(cls, value: str) -> str:
        from textlstm.gateway.auth import parse_tokens

        parse_tokens(value)  # ValueError names the entry by position, never its digest
        return value

    @model_validator(mode="after")
    def _read_api_tokens_file(self) -> Settings:
        """Read and check the tokens file now, so a mistake stops the process at start-up."""
        if self.api_tokens_file is not None:
            self._file_tokens = _read_token_file(self.api_tokens_file)
        return self

    @property
    def api_token_entries(self) -> tuple[TokenEntry, ...]:
        """Every token the gateway admits: TEXTLSTM_API_TOKENS's entries, then the file's."""
        from textlstm.gateway.auth import parse_tokens

        return (*parse_tokens(self.api_tokens), *self._file_tokens)

    @field_validator("worker_device")
    @classmethod
    def _device_spec(cls, value: str) -> str:
        # The syntax only (textlstm.serving.device imports torch); whether the GPU exists is
        # decided in the worker process. Same rule as textlstm.serving.device._DEVICE_RE.
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("worker_gpus")
    @classmethod
    def _gpu_list(cls, value: str) -> str:
        # textlstm.serving.device.parse_gpus's rule, without importing torch.
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise ValueError(f"must be GPU indices separated by commas like 0,1, got {value!r}")
        if len(set(map(int, parts))) != len(parts):
            raise ValueError(f"repeats a GPU index: {value!r}")
        return value

    @field_validator("default_model", "worker_warmup_model")
    @classmethod
    def _model_ref(cls, value: str | None) -> str | None:
        if value:  # unset / empty = none
            from textlstm.errors import ValidationError
            from textlstm.wire.refs import parse_model_ref

            try:
                parse_model_ref(value)
            except ValidationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("retention_purge_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """`30d` as the CLI writes it (pydantic alone takes seconds or ISO 8601 `P30D`)."""
        if value is None or isinstance(value, timedelta):
            return value
        if isinstance(value, str) and not value.strip():
            return None  # `TEXTLSTM_RETENTION_PURGE_AFTER=` (empty) means off
        try:
            after = parse_duration(str(value))
        except ValidationError as exc:
            raise ValueError(str(exc)) from None
        if after <= timedelta(0):
            raise ValueError(f"must be more than 0 (unset it to turn purging off), got {value!r}")
        return after

    @field_validator("worker_stats_dir", "api_tokens_file", mode="before")
    @classmethod
    def _empty_is_off(cls, value: Any) -> Any:
        """`TEXTLSTM_WORKER_STATS_DIR=` (empty) means off, not the working directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("model_cache_dir", "worker_stats_dir", "api_tokens_file")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @property
    def database_configured(self) -> bool:
        """True when the database URL was given explicitly (env, .env or argument).

        The producer records job rows only then: a default `./textlstm.db` on a producer machine
        would be a file no worker ever reads.
        """
        return "database_url" in self.model_fields_set

    def __repr_args__(self) -> Any:
        yield "database_url", mask_url(self.database_url)
        yield "broker_url", mask_url(self.broker_url)
        yield "broker_transport_options", masked_options(self.broker_transport_options)
        yield from super().__repr_args__()


#: Settings whose values are secrets (URLs with passwords): echoed masked, or not at all.
_SECRET_FIELDS = frozenset(
    {
        "database_url",
        "broker_url",
        "broker_transport_options",
        "rabbitmq_management_url",
        "webhook_secret",
        "api_tokens",
    }
)


def _check_env_files(env_file: Any, encoding: str | None) -> None:
    """Refuse a `.env` that exists but cannot be read as text: pydantic-settings skips a
    directory silently and fails on bad bytes with a UnicodeDecodeError traceback."""
    if env_file is ENV_FILE_SENTINEL:
        env_file = Settings.model_config.get("env_file")
    if env_file is None:
        return
    encoding = encoding or Settings.model_config.get("env_file_encoding") or "utf-8"
    files = [env_file] if isinstance(env_file, str | Path) else list(env_file)
    for file in files:
        path = Path(file).expanduser()
        if not path.exists():
            continue  # no .env is fine: the environment alone is used
        where = f"settings file {path.absolute()}"
        if not path.is_file():
            raise SettingsError([f"{where}: not a file (TEXTLSTM_* settings are read from it)"])
        try:
            path.read_bytes().decode(encoding)
        except UnicodeDecodeError as exc:
            raise SettingsError(
                [
                    f"{where}: not {encoding} text (byte 0x{exc.object[exc.start]:02x} at "
                    f"offset {exc.start}); save it as {encoding} to set TEXTLSTM_* settings"
                ]
            ) from None
        except OSError as exc:
            raise SettingsError([f"{where}: cannot read it ({exc.strerror or exc})"]) from None


def _read_token_file(path: Path) -> tuple[TokenEntry, ...]:
    """TEXTLSTM_API_TOKENS_FILE's entries; ValueError (one line, naming the variable, the file
    and the line) when it cannot be read or a line is not an entry."""
    from textlstm.gateway.auth import parse_token_lines

    where = f"TEXTLSTM_API_TOKENS_FILE: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    try:
        return parse_token_lines(text)
    except ValueError as exc:
        raise ValueError(f"{where}, {exc}") from None


def _shown(field: str, value: Any) -> str:
    """A bad value as it may appear in an error: short, and never a secret."""
    if field in _SECRET_FIELDS:
        return "(value hidden)"  # mask_url cannot be trusted with a URL that did not parse
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(exc: pydantic.ValidationError) -> list[str]:
    """One line per problem: `TEXTLSTM_<FIELD>: what is wrong, got <value>`."""
    lines = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err.get("loc") else ""
        name = f"TEXTLSTM_{field.upper()}" if field else "TEXTLSTM settings"
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error" and isinstance(ctx.get("error"), ValueError):
            # Raised by this module's validators (URL checks included): already worded and
            # masked, and it names the bad value where that is safe.
            # A check of several settings (a model validator) names them itself.
            lines.append(f"{name}: {ctx['error']}" if field else str(ctx["error"]))
            continue
        kind = err["type"]
        if kind in ("int_parsing", "int_from_float", "int_type"):
            what = "must be a whole number"
        elif kind in ("float_parsing", "float_type", "finite_number"):
            what = "must be a number"
        elif kind == "greater_than_equal":
            what = f"must be at least {ctx['ge']}"
        elif kind == "greater_than":
            what = f"must be more than {ctx['gt']}"
        elif kind == "less_than_equal":
            what = f"must be at most {ctx['le']}"
        elif kind == "less_than":
            what = f"must be less than {ctx['lt']}"
        elif kind == "literal_error":
            what = f"must be {ctx['expected']}"
        elif kind == "string_pattern_mismatch":
            what = f"must match {ctx['pattern']}"
        elif kind == "string_too_short":
            what = "must not be empty"
        else:
            msg = str(err.get("msg") or kind)
            what = msg[:1].lower() + msg[1:]
        lines.append(f"{name}: {what}, got {_shown(field, err.get('input'))}")
    return lines


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use (call `get_settings.cache_clear()` in
    tests after changing the environment). Raises SettingsError (not cached) on a mistake."""
    return Settings()


def subprocess_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `overrides`: for commands that start other textlstm
    processes (the worker supervisor), so that env reads stay in this module."""
    import os

    return {**os.environ, **overrides}
