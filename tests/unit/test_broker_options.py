"""TEXTLSTM_BROKER_TRANSPORT_OPTIONS and sentinel:// settings: every mistake is one line naming
the variable, no secret is ever shown, and a multi-URL Sentinel setting is masked URL by URL.
Pure: no Sentinel is asked (tests/cli/test_sentinel_errors.py asks unreachable ones)."""

from __future__ import annotations

import json

import pytest

from textlstm.broker_options import (
    _tls_hint,
    is_sentinel,
    masked_options,
    parse_transport_options,
    sentinel_problem,
    sentinel_target,
    with_master_auth_on_every_url,
)
from textlstm.errors import SettingsError
from textlstm.settings import Settings, mask_url

PW = "pa55-Secret-9"
SENTINELS = f"sentinel://:{PW}@s1:26379/2;sentinel://u:{PW}@s2:26380;sentinel://s3"


def settings(**env: object) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[arg-type]


def one_line(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(f"TEXTLSTM_{key}", value)
    with pytest.raises(SettingsError) as err:
        settings()
    text = str(err.value)
    assert len(text.splitlines()) == 1 and PW not in text, text
    return text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"master_name": ', "TEXTLSTM_BROKER_TRANSPORT_OPTIONS: is not valid JSON (Expecting"),
        ("master_name=m", "is not valid JSON"),
        ('["master_name"]', "must be a JSON object of kombu transport options, got a JSON array"),
        ('"m"', "must be a JSON object of kombu transport options, got a string"),
        ('{"master_name": 1}', "option 'master_name' must be a string, got a whole number"),
        ('{"visibility_timeout": "10"}', "option 'visibility_timeout' must be a number"),
        ('{"visibility_timeout": true}', "must be a number, got true/false"),
        ('{"sentinel_kwargs": "pw"}', "option 'sentinel_kwargs' must be a JSON object"),
        ('{"max_pop": 1.5}', "option 'max_pop' must be a whole number, got a number"),
        ('{"mastername": "m"}', "unknown option 'mastername' (known: brpop_timeout,"),
        ('{"global_keyprefix": "a:"}', "option 'global_keyprefix' is not supported"),
    ],
)
def test_each_mistake_is_one_line(monkeypatch: pytest.MonkeyPatch, raw: str, expected: str) -> None:
    assert expected in one_line(monkeypatch, BROKER_TRANSPORT_OPTIONS=raw)


def test_a_secret_in_a_wrong_option_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line(monkeypatch, BROKER_TRANSPORT_OPTIONS=f'{{"sentinel_kwargs": "{PW}"}}')
    assert "sentinel_kwargs" in line


def test_options_parse_and_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {"master_name": "mymaster", "sentinel_kwargs": {"password": PW}, "max_pop": 8}
    monkeypatch.setenv("TEXTLSTM_BROKER_TRANSPORT_OPTIONS", json.dumps(options))
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", SENTINELS)
    s = settings()
    assert s.broker_transport_options == options
    assert s.wait_replicas == 1  # the Sentinel default: a job is accepted once replicated
    assert PW not in repr(s) and "'password': '***'" in repr(s)
    assert settings().model_copy(update={"broker_wait_replicas": 0}).wait_replicas == 0
    monkeypatch.delenv("TEXTLSTM_BROKER_URL")
    assert settings().wait_replicas == 0  # plain Redis: no wait unless asked
    assert parse_transport_options("") == {} and parse_transport_options(None) == {}


def test_a_sentinel_url_without_master_name_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line(monkeypatch, BROKER_URL=SENTINELS)
    assert line.startswith("TEXTLSTM_BROKER_TRANSPORT_OPTIONS: a sentinel:// broker")
    assert '{"master_name": "mymaster"}' in line
    line = one_line(
        monkeypatch,
        BROKER_URL=f"sentinel://:{PW}@s1:26379;redis://s2:6379/0",
        BROKER_TRANSPORT_OPTIONS='{"master_name": "m"}',
    )
    assert line.startswith("TEXTLSTM_BROKER_URL: a sentinel:// broker lists only sentinel://")
    line = one_line(
        monkeypatch, BROKER_URL=f"sentinel://:{PW}@s1:port", BROKER_TRANSPORT_OPTIONS="{}"
    )
    assert line.startswith("TEXTLSTM_BROKER_URL: bad host or port")


def test_sentinel_urls_are_masked_one_by_one() -> None:
    masked = mask_url(SENTINELS)
    assert PW not in masked
    assert masked == "sentinel://:***@s1:26379/2;sentinel://u:***@s2:26380;sentinel://s3"
    assert mask_url(f"redis://:{PW}@a:6379/0;redis://:{PW}@b:6379/0").count("***") == 2
    assert masked_options({"sentinel_kwargs": {"password": PW, "ssl": True}}) == {
        "sentinel_kwargs": {"password": "***", "ssl": True}
    }


def test_sentinel_target_reads_the_masters_credentials_from_the_first_url() -> None:
    hosts, master = sentinel_target(SENTINELS)
    assert hosts == [("s1", 26379), ("s2", 26380), ("s3", 26379)]
    assert master == {"db": 2, "password": PW}
    assert is_sentinel(SENTINELS) and not is_sentinel("redis://a:6379/0")
    assert sentinel_problem("redis://a:6379/0", {}) is None
    assert sentinel_problem(SENTINELS, {"master_name": "m"}) is None


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BROKER_USE_SSL": "{"}, "TEXTLSTM_BROKER_USE_SSL: is not valid JSON"),
        ({"BROKER_USE_SSL": "[]"}, "TEXTLSTM_BROKER_USE_SSL: must be a JSON object of ssl_*"),
        ({"BROKER_USE_SSL": '{"ca": "x"}'}, "TEXTLSTM_BROKER_USE_SSL: unknown option 'ca'"),
        ({"BROKER_USE_SSL": '{"ssl_cert_reqs": "maybe"}'}, "must be one of required, optional"),
        ({"BROKER_USE_SSL": '{"ssl_ca_certs": 1}'}, "'ssl_ca_certs' must be a string"),
        (
            {"BROKER_USE_SSL": '{"ssl_ca_certs": "/ca.pem"}'},
            "TEXTLSTM_BROKER_USE_SSL: is for a sentinel:// TEXTLSTM_BROKER_URL",
        ),
    ],
)
def test_tls_mistakes_are_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    assert expected in one_line(monkeypatch, **env)


def test_tls_to_the_master_is_verified_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTLSTM_BROKER_URL", SENTINELS)
    monkeypatch.setenv("TEXTLSTM_BROKER_TRANSPORT_OPTIONS", '{"master_name": "m"}')
    monkeypatch.setenv("TEXTLSTM_BROKER_USE_SSL", '{"ssl_ca_certs": "/ca.pem"}')
    assert settings().broker_use_ssl == {"ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required"}


def test_the_masters_password_and_database_reach_every_sentinel_url() -> None:
    """kombu takes the master's credentials from whichever URL of the list it is on, and a
    reconnection moves to the next one: given once on the first URL (as documented), the
    settings copy them onto the others, so the switch keeps them."""
    from kombu import Connection

    given = f"sentinel://:{PW}@s1:26379/2;sentinel://s2:26380;sentinel://s3"
    as_given = Connection(given, transport_options={"master_name": "m"})
    as_given.switch(as_given.alt[1])
    assert as_given.password is None  # why: kombu's own reading of the list

    url = settings(broker_url=given, broker_transport_options={"master_name": "m"}).broker_url
    assert url.split(";") == [
        f"sentinel://:{PW}@s1:26379/2",
        f"sentinel://:{PW}@s2:26380/2",
        f"sentinel://:{PW}@s3/2",
    ]
    conn = Connection(url, transport_options={"master_name": "m"})
    for alt in conn.alt[1:]:
        conn.switch(alt)
        assert (conn.password, conn.virtual_host) == (PW, "2")
    # A URL naming its own user, password or database keeps them; other schemes are left be.
    own = f"sentinel://:{PW}@s1/2;sentinel://u:other@s2/3"
    assert with_master_auth_on_every_url(own) == own
    assert with_master_auth_on_every_url("redis://:p@a/0;redis://b") == "redis://:p@a/0;redis://b"
    assert PW not in mask_url(url)


def test_a_tls_looking_sentinel_failure_points_at_where_tls_is_set() -> None:
    """A TLS-only Sentinel resets a plain connection; a foreign CA fails verification: both
    name sentinel_kwargs and TEXTLSTM_BROKER_USE_SSL. A refused connection says nothing of TLS."""
    reset = "Error while reading from 127.0.0.1:26379 : (104, 'Connection reset by peer')"
    verify = "Error 1 connecting to s1:26379. [SSL: CERTIFICATE_VERIFY_FAILED] certificate …"
    for problem in (reset, verify):
        hint = _tls_hint([problem])
        assert 'sentinel_kwargs {"ssl": true' in hint and "TEXTLSTM_BROKER_USE_SSL" in hint
    assert _tls_hint(["Error 111 connecting to s1:26379. Connection refused."]) == ""
    assert _tls_hint([]) == ""


def test_management_url_is_http_and_its_password_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = one_line(monkeypatch, RABBITMQ_MANAGEMENT_URL=f"amqp://mon:{PW}@rabbitmq:15672")
    assert line.startswith(
        "TEXTLSTM_RABBITMQ_MANAGEMENT_URL: must be an http(s):// URL of the RabbitMQ management"
    )
    monkeypatch.setenv("TEXTLSTM_RABBITMQ_MANAGEMENT_URL", f"http://mon:{PW}@rabbitmq:15672/")
    s = settings()
    assert s.rabbitmq_management_url == f"http://mon:{PW}@rabbitmq:15672"
    assert PW not in repr(s)
    monkeypatch.setenv("TEXTLSTM_RABBITMQ_MANAGEMENT_URL", "")
    assert settings().rabbitmq_management_url is None


# -- RabbitMQ (issue 17 deliverable 2) -------------------------------------------------------

AMQP = "amqp://guest:guest@rabbit:5672//"


def test_amqp_schemes() -> None:
    from textlstm.broker_options import is_amqp

    assert is_amqp(AMQP) and is_amqp("amqps://r:5671//") and is_amqp("pyamqp://r//")
    assert not is_amqp("redis://a:6379/0") and not is_amqp(SENTINELS)


WANT_ARGS = {
    "x-queue-type": "quorum",
    "x-delivery-limit": 3,
    "x-dead-letter-exchange": "tl.dead-letters",
    "x-dead-letter-routing-key": "tl.dead-letters",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


def test_worker_declares_three_durable_quorum_queues_with_confirms() -> None:
    from worker.app import celery_config

    conf = celery_config(Settings(broker_url=AMQP, queue="tl", _env_file=None))  # type: ignore[call-arg]
    queues = {q.name: q for q in conf["task_queues"]}
    assert list(queues) == ["tl.high", "tl", "tl.bulk"]
    for name, q in queues.items():
        assert q.durable and not q.auto_delete and not q.exclusive
        # One dead-letter queue for the three, a delivery limit of worker_max_deliveries.
        assert q.queue_arguments == WANT_ARGS
        assert (q.exchange.name, q.exchange.type, q.routing_key) == (name, "direct", name)
    assert conf["task_default_queue_type"] == "quorum"
    # Publisher confirms, and none of the Redis transport's options.
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert "broker_transport" not in conf
    # Each consumer starts at 1 (worker.strategy.Prefetch opens the full window later).
    assert conf["worker_prefetch_multiplier"] == 1


def test_the_delivery_limit_follows_worker_max_deliveries() -> None:
    from worker.app import celery_config

    s = Settings(broker_url=AMQP, queue="tl", worker_max_deliveries=5, _env_file=None)  # type: ignore[call-arg]
    assert {q.queue_arguments["x-delivery-limit"] for q in celery_config(s)["task_queues"]} == {5}


def test_the_dead_letter_queue_is_a_plain_quorum_queue_bound_to_its_exchange() -> None:
    from textlstm.broker_options import amqp_dead_letter_queues, amqp_topology

    dead = amqp_dead_letter_queues("tl")
    assert (dead.name, dead.exchange.name, dead.exchange.type, dead.routing_key) == (
        "tl.dead-letters", "tl.dead-letters", "direct", "tl.dead-letters"
    )  # fmt: skip
    assert dead.queue_arguments == {"x-queue-type": "quorum"} and dead.durable
    assert [q.name for q in amqp_topology("tl", 3)] == [
        "tl.high", "tl", "tl.bulk", "tl.dead-letters"
    ]  # fmt: skip


def test_redis_worker_config_is_unchanged_by_amqp_support() -> None:
    from worker.app import celery_config

    conf = celery_config(Settings(broker_url="redis://a:6379/0", _env_file=None))  # type: ignore[call-arg]
    assert "task_queues" not in conf and "confirm_publish" not in conf["broker_transport_options"]
    assert conf["broker_transport_options"]["queue_order_strategy"] == "priority"


def test_client_publishes_to_the_queues_the_worker_declares() -> None:
    """The client app names no queue; the publisher names each as the kombu Queue of
    `amqp_queue`, which Celery declares as given. It must be what the worker declares, or
    RabbitMQ refuses the second declaration (PRECONDITION_FAILED)."""
    from celery import Celery

    from textlstm.broker_options import amqp_celery_config, amqp_queue
    from worker.app import celery_config

    app = Celery("t", broker=AMQP, set_as_current=False)
    app.conf.update(amqp_celery_config(None))
    worker = celery_config(Settings(broker_url=AMQP, queue="tl", _env_file=None))  # type: ignore[call-arg]
    for want in worker["task_queues"]:
        route = app.amqp.router.route({"queue": amqp_queue("tl", want.name, 3)}, "x")
        got = route["queue"]
        assert got.queue_arguments == want.queue_arguments == WANT_ARGS
        assert (got.durable, got.auto_delete, got.exclusive) == (True, False, False)
        assert (got.exchange.name, got.exchange.type, got.exchange.durable) == (
            want.exchange.name,
            want.exchange.type,
            want.exchange.durable,
        )
        assert got.routing_key == want.routing_key


def test_client_app_confirms_publishes_on_amqp() -> None:
    from textlstm.client.celery_app import client_app

    app = client_app(Settings(broker_url=AMQP, _env_file=None))  # type: ignore[call-arg]
    assert app.conf.broker_transport_options == {"confirm_publish": True}
    assert app.conf.task_create_missing_queue_type == "quorum"


def test_a_queue_declared_with_other_arguments_is_one_line_naming_it() -> None:
    from textlstm.broker_options import mismatch_line

    reply = (
        "Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for "
        "queue 'tl' in vhost '/': received the value '3' of type 'signedint' but current is none"
    )
    line = mismatch_line("tl", reply)
    assert "\n" not in line and line.startswith("RabbitMQ queue 'tl' exists with other arguments")
    assert "inequivalent arg 'x-delivery-limit'" in line and "Queue.declare" not in line
    assert "rabbitmqctl delete_queue tl" in line and "docs/brokers.md" in line


def test_a_dead_letter_of_rabbitmq_reads_as_a_record() -> None:
    """A message RabbitMQ dead-lettered itself (delivery limit) is the Celery message with
    `x-death`: read as a poison record with its job, task id and a stable id."""
    import datetime

    from textlstm.wire.deadletters import RECORD_HEADER, DeadLetter, from_amqp

    body = json.dumps([[{"job_id": "j-1", "items": []}], {}, {}]).encode()
    death = {"reason": "delivery_limit", "queue": "tl", "count": 1,
             "time": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)}  # fmt: skip
    headers = {"id": "task-1", "x-death": [death]}
    record = from_amqp(body, headers)
    assert (record.stage, record.list, record.task_id) == ("poison", "tl", "task-1")
    assert record.readable_job_id() == "j-1" and record.entry == body.decode()
    assert from_amqp(body, headers).id == record.id  # the same on every read
    assert "x-delivery-limit" in record.reason
    ours = DeadLetter.new("store", "the write failed", job_id="j-2")
    assert from_amqp(ours.to_json().encode(), {RECORD_HEADER: 1}) == ours
    assert from_amqp(b"not json", {}).stage == "body"  # still listed, with what it holds


def test_amqp_target_names_no_password() -> None:
    from textlstm.broker_options import amqp_target

    assert amqp_target("amqp://app:s3cret@rabbit:5673/prod") == ("rabbit:5673", "app", "prod")
    assert amqp_target("amqps://app:s3cret@rabbit/") == ("rabbit:5671", "app", "/")
    assert amqp_target("amqp://rabbit//") == ("rabbit:5672", "guest", "/")
    assert amqp_target("amqp://app:pw@rabbit/a%2Fb") == ("rabbit:5672", "app", "a/b")


def test_amqp_refusal_says_which_part_of_the_url_is_wrong() -> None:
    """py-amqp's errors by reply code and class (the real ones: tests/cli/test_amqp_errors.py)."""
    from amqp.exceptions import AccessRefused, NotAllowed

    from textlstm.broker_options import amqp_refusal

    url = "amqp://app:s3cret@rabbit:5672/prod"
    line = amqp_refusal(url, AccessRefused("Login was refused"), 3.0)
    assert "refused the login of user 'app' (ACCESS_REFUSED)" in line
    line = amqp_refusal(url, NotAllowed("vhost prod not found"), 3.0)
    assert "no virtual host 'prod' that user 'app' may use (NOT_ALLOWED)" in line
    assert "(connection refused)" in amqp_refusal(url, ConnectionRefusedError(111, "x"), 3.0)
    assert "(no answer within 3s)" in amqp_refusal(url, TimeoutError("timed out"), 3.0)
    for exc in (AccessRefused("x"), NotAllowed("x"), OSError("boom"), TimeoutError()):
        line = amqp_refusal(url, exc, 3.0)
        assert "TEXTLSTM_BROKER_URL" in line and "s3cret" not in line and "\n" not in line
