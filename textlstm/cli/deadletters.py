"""`textlstm-admin dead-letters`: what the workers refused or quarantined, and why; put a
message back on its queue once its cause is fixed, or purge it (textlstm/wire/deadletters.py).

On Redis the records are the dead-letter list (`textlstm.ops.deadletters`); on amqp:// they are
the messages of the dead-letter queue (`textlstm.ops.amqp_deadletters`), read with `basic.get`
and put back. The same subcommands and output on both."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from redis.exceptions import RedisError

from textlstm.broker_options import is_amqp
from textlstm.cli.results import format_table
from textlstm.errors import BrokerError, NotFoundError


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _amqp_settings() -> Any:
    """The settings when the broker is RabbitMQ (its queues checked first, so a queue declared
    by an older version is one line: `textlstm.client.publisher.broker_answers`), else None."""
    from textlstm.client.publisher import broker_answers
    from textlstm.settings import get_settings

    settings = get_settings()
    if not is_amqp(settings.broker_url):
        return None
    broker_answers(settings)
    return settings


def _amqp(settings: Any, doing: str, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fun(broker_url, queue, options, ...)` of `textlstm.ops.amqp_deadletters`; a broker
    failure as one line."""
    from textlstm.client.publisher import broker_error

    try:
        return fun(
            settings.broker_url, settings.queue, settings.broker_transport_options, *args, **kwargs
        )
    except OSError as exc:  # a refused or lost connection
        raise broker_error(settings, doing, exc) from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("amqp", "kombu"):
            raise broker_error(settings, doing, exc) from None
        raise


def _client_and_key() -> tuple[Any, str, Any]:
    from textlstm.settings import get_settings
    from textlstm.wire.redis_layout import broker_client, dead_letter_key

    settings = get_settings()
    try:  # on sentinel://, the Sentinels are asked for the master here
        client = broker_client(settings)
    except RedisError as exc:
        raise _broker_error(exc, settings) from None
    return client, dead_letter_key(settings.queue), settings


def _broker_error(exc: Exception, settings: Any) -> BrokerError:
    from textlstm.settings import mask_url

    return BrokerError(f"could not reach the broker {mask_url(settings.broker_url)}: {exc}")


@click.group("dead-letters")
def dead_letters() -> None:
    """Messages the workers refused or quarantined, with why."""


@dead_letters.command("list")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (no entries).")
def list_(limit: int, as_json: bool) -> None:
    """Newest first: id, when, stage, job and reason."""
    from textlstm.ops import amqp_deadletters, deadletters

    if (amqp := _amqp_settings()) is not None:
        every = _amqp(amqp, "read the dead-letter queue", amqp_deadletters.read)
        total, records = len(every), every[:limit]
    else:
        client, key, settings = _client_and_key()
        try:
            total = deadletters.count(client, key)
            records = [r for _, r in deadletters.read(client, key, limit)]
        except RedisError as exc:  # one line, not a traceback
            raise _broker_error(exc, settings) from None
        finally:
            client.close()
    if as_json:
        for r in records:
            doc = {k: v for k, v in r.__dict__.items() if k not in ("entry", "body")}
            click.echo(json.dumps({**doc, "job_id": r.readable_job_id()}))
        return
    if not records:
        click.echo("no dead letters")
        return
    rows = [
        (r.id, _when(r.at), r.stage, r.readable_job_id(), r.deliveries, r.reason[:90])
        for r in records
    ]
    click.echo(format_table(("id", "at", "stage", "job", "deliveries", "reason"), rows))
    if total > len(records):
        click.echo(f"... {total - len(records)} older (--limit)")


@dead_letters.command()
@click.argument("record_id")
@click.option("--full", is_flag=True, help="Print the whole stored entry, however long.")
def show(record_id: str, full: bool) -> None:
    """One record as JSON, with the refused message itself."""
    from textlstm.ops import amqp_deadletters, deadletters

    found: tuple[Any, Any] | None
    if (amqp := _amqp_settings()) is not None:
        every = _amqp(amqp, "read the dead-letter queue", amqp_deadletters.read)
        found = next(((None, r) for r in every if r.id == record_id), None)
    else:
        client, key, settings = _client_and_key()
        try:
            found = deadletters.find(client, key, record_id)
        except RedisError as exc:
            raise _broker_error(exc, settings) from None
        finally:
            client.close()
    if found is None:
        raise NotFoundError(f"dead letter {record_id} not found (textlstm-admin dead-letters list)")
    doc: dict[str, Any] = dict(found[1].__dict__)
    doc["job_id"] = found[1].readable_job_id()
    doc["at_utc"] = _when(found[1].at)
    entry = doc.get("entry")
    if isinstance(entry, str) and len(entry) > 4000 and not full:
        doc["entry"] = entry[:4000] + f"... ({len(entry)} characters; --full shows all)"
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


@dead_letters.command()
@click.argument("record_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every record on the list.")
def requeue(record_ids: tuple[str, ...], everything: bool) -> None:
    """Put messages back on the queue they came from (fix what refused them first: a
    refused message that is still bad is dead-lettered again)."""
    from textlstm.client import republish
    from textlstm.ops import deadletters

    if not record_ids and not everything:
        raise click.UsageError("name the records to requeue, or --all")
    if (amqp := _amqp_settings()) is not None:
        _requeue_amqp(amqp, set(record_ids), everything)
        return
    client, key, settings = _client_and_key()
    done = 0
    try:
        pairs = deadletters.read(client, key)
        wanted = set(record_ids)
        chosen = [(raw, r) for raw, r in pairs if everything or r.id in wanted]
        missing = wanted - {r.id for _, r in chosen}
        if missing:
            raise NotFoundError(f"dead letter(s) not found: {', '.join(sorted(missing))}")
        for raw, record in chosen:
            if record.entry is not None and record.list is not None:
                done += deadletters.requeue_entry(client, key, raw, record)
            elif record.body is not None:
                republish(settings, record.body)  # validated again; raises if still bad
                done += deadletters.remove(client, key, raw)
            else:
                click.echo(f"{record.id}: holds no message to requeue; left on the list")
    except RedisError as exc:
        raise _broker_error(exc, settings) from None
    finally:
        client.close()
    click.echo(f"requeued {done} message(s)")


@dead_letters.command()
@click.argument("record_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every record on the list.")
def purge(record_ids: tuple[str, ...], everything: bool) -> None:
    """Delete records for good."""
    from textlstm.ops import deadletters

    if not record_ids and not everything:
        raise click.UsageError("name the records to purge, or --all")
    if (amqp := _amqp_settings()) is not None:
        from textlstm.ops import amqp_deadletters

        if everything:
            n = _amqp(amqp, "purge the dead-letter queue", amqp_deadletters.purge_all)
        else:
            wanted = set(record_ids)
            n = len(_amqp(amqp, "purge dead letters", amqp_deadletters.settle,
                          lambda r: r.id in wanted, lambda r: True))  # fmt: skip
        click.echo(f"purged {n} dead letter(s)")
        return
    client, key, settings = _client_and_key()
    try:
        if everything:
            n = deadletters.count(client, key)
            client.delete(key)
        else:
            wanted = set(record_ids)
            chosen = [raw for raw, r in deadletters.read(client, key) if r.id in wanted]
            n = sum(deadletters.remove(client, key, raw) for raw in chosen)
    except RedisError as exc:
        raise _broker_error(exc, settings) from None
    finally:
        client.close()
    click.echo(f"purged {n} dead letter(s)")


def _requeue_amqp(settings: Any, wanted: set[str], everything: bool) -> None:
    """`requeue` on amqp://: each chosen record's textlstm message is sent again to its
    priority's queue (validated again, so one still bad raises and stays), then its message
    leaves the dead-letter queue. A record that holds no readable message stays."""
    from textlstm.client import republish
    from textlstm.errors import ValidationError
    from textlstm.ops import amqp_deadletters
    from textlstm.wire.messages import Limits, parse_body

    seen: set[str] = set()
    skipped: list[str] = []

    def chosen(record: Any) -> bool:
        seen.add(record.id)
        return everything or record.id in wanted

    def resend(record: Any) -> bool:
        if not isinstance(record.body, dict):
            skipped.append(record.id)
            return False
        parsed = parse_body(record.body, limits=Limits.from_settings(settings))
        if parsed.rejected:  # still bad: it stays, and the operator sees why
            raise ValidationError(f"dead letter {record.id}: {parsed.rejected[0][1]}")
        for msg in parsed.messages:
            republish(settings, msg.to_json())
        return True

    done = _amqp(settings, "requeue dead letters", amqp_deadletters.settle, chosen, resend)
    missing = wanted - seen
    for record_id in skipped:
        click.echo(f"{record_id}: holds no message to requeue; left on the queue")
    click.echo(f"requeued {len(done)} message(s)")
    if missing:
        raise NotFoundError(f"dead letter(s) not found: {', '.join(sorted(missing))}")
