"""The Celery app's contract: JSON only, no result backend, acks after work, Redis timeouts."""

from __future__ import annotations

from textlstm.settings import Settings
from textlstm.wire.messages import TASK_NAME
from worker.app import celery_config, create_app


def test_config_is_json_only_without_results_and_with_a_long_visibility_timeout() -> None:
    s = Settings(broker_url="redis://h:1/2", queue="q", worker_batch_max_items=512, _env_file=None)  # type: ignore[call-arg]
    conf = celery_config(s)
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["result_backend"] is None and conf["task_ignore_result"] is True
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["broker_transport_options"]["visibility_timeout"] == 600
    # A sweep lock left in Redis's append-only file by a restart must not block restores long.
    assert conf["broker_transport_options"]["unacked_mutex_expire"] <= 10
    assert conf["worker_pool"] == "solo" and conf["task_default_queue"] == "q"
    assert conf["worker_prefetch_multiplier"] == 512  # never below one batch of messages
    # On amqp:// each consumer starts at 1 (worker.strategy.Prefetch opens the window later).
    amqp = s.model_copy(update={"broker_url": "amqp://guest:guest@h:5672//"})
    assert celery_config(amqp)["worker_prefetch_multiplier"] == 1


def test_app_registers_the_task_lazily_from_settings() -> None:
    app = create_app(Settings(broker_url="redis://h:1/3", _env_file=None))  # type: ignore[call-arg]
    app.loader.import_default_modules()
    assert TASK_NAME in app.tasks
    assert app.conf.broker_url == "redis://h:1/3"
    assert "FlushOnShutdown" in {s.__name__ for s in app.steps["consumer"]}


def test_sentinel_gets_our_transport_the_operators_options_and_tls() -> None:
    """sentinel:// runs on worker.transport's Sentinel variant (the atomic pop), with
    TEXTLSTM_BROKER_TRANSPORT_OPTIONS merged over the project's (the operator's word wins) and
    TEXTLSTM_BROKER_USE_SSL as Celery's broker_use_ssl, verifying certificates by default."""
    import ssl

    s = Settings(
        broker_url="sentinel://s1:26379;sentinel://s2:26379",
        broker_transport_options={"master_name": "m", "visibility_timeout": 30},
        broker_use_ssl={"ssl_ca_certs": "/etc/ca.pem"},
        _env_file=None,  # type: ignore[call-arg]
    )
    conf = celery_config(s)
    assert conf["broker_transport"] == "worker.transport:SentinelTransport"
    options = conf["broker_transport_options"]
    assert options["master_name"] == "m" and options["visibility_timeout"] == 30
    assert options["max_deliveries"] == s.worker_max_deliveries  # the project's own stay
    assert conf["broker_use_ssl"] == {
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    assert "broker_use_ssl" not in celery_config(s.model_copy(update={"broker_use_ssl": {}}))


def test_a_failover_switch_keeps_the_worker_on_our_transport(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Celery reconnects to the next URL of a `;` list with kombu's Connection.switch, which
    takes the transport from the URL's scheme: without KeepOurTransport a Sentinel worker
    ran kombu's BRPOP transport after its first reconnection."""
    from types import SimpleNamespace

    from kombu import Connection
    from kombu import transport as kombu_transport

    from worker.app import KeepOurTransport

    monkeypatch.setattr(
        kombu_transport, "TRANSPORT_ALIASES", dict(kombu_transport.TRANSPORT_ALIASES)
    )
    monkeypatch.setattr(kombu_transport, "_transport_cache", {})
    s = Settings(
        broker_url="sentinel://127.0.0.1:1;sentinel://127.0.0.1:2",
        broker_transport_options={"master_name": "m"},
        _env_file=None,  # type: ignore[call-arg]
    )
    app = create_app(s)
    conf = celery_config(s)
    conn = Connection(
        s.broker_url, transport=conf["broker_transport"], transport_options={"master_name": "m"}
    )
    conn.switch("sentinel://127.0.0.1:2")
    assert type(conn.transport).__module__ == "kombu.transport.redis"  # what kombu does

    app.conf.update(conf)
    KeepOurTransport(SimpleNamespace(app=app))
    conn.switch("sentinel://127.0.0.1:1")
    assert type(conn.transport).__module__ == "worker.transport"
    assert conn.alt == s.broker_url.split(";")  # every Sentinel is still asked
