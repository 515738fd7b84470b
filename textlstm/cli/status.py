"""`textlstm-admin status`: queues, workers, jobs and aliases at a glance (`--json` for scripts).

Exit status 0 when every source answered, 2 when some did not (the rest is still printed), so
a health check can tell "down" from "idle".
"""

from __future__ import annotations

import json
from typing import Any

import click

from textlstm.cli.results import format_table


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _queue_lines(st: Any) -> list[str]:
    if "queues" in st.errors:
        return [f"queues: unavailable ({st.errors['queues']})"]
    rows = [(name, n) for name, n in st.queues.items()]
    # amqp:// (broker_options.amqp_queue_depths): no unacked count to a client; the RabbitMQ
    # management API gives one when TEXTLSTM_RABBITMQ_MANAGEMENT_URL is set.
    if "unacked" in st.errors:  # TEXTLSTM_RABBITMQ_MANAGEMENT_URL did not answer
        unacked = f"unavailable ({st.errors['unacked']})"
    elif st.unacked is None:
        unacked = "not counted on this broker"
        if st.broker.startswith("amqp"):
            unacked += " (set TEXTLSTM_RABBITMQ_MANAGEMENT_URL)"
    elif st.broker.startswith("amqp"):
        unacked = f"{st.unacked}  (RabbitMQ management API)"
    else:
        unacked = str(st.unacked)
    dead = "not counted on this broker" if st.dead_letters is None else st.dead_letters
    return [
        format_table(("queue", "waiting"), rows),
        f"delivered, not yet acked: {unacked}",
        f"dead letters: {dead}"
        + ("  (textlstm-admin dead-letters list)" if st.dead_letters else ""),
    ]


def _worker_lines(st: Any) -> list[str]:
    if "workers" in st.errors:
        return [f"workers: unavailable ({st.errors['workers']})"]
    if not st.workers:
        return ["workers: none answered (none running, or all busy past the timeout)"]
    rows = [
        (
            w.node,
            w.device or "-",
            ", ".join(w.models) or "-",
            ",".join(w.queues),
            w.items,
            w.buffered_messages,
        )
        for w in st.workers
    ]
    return [
        f"workers online: {len(st.workers)}",
        format_table(("worker", "device", "models", "queues", "items", "buffered"), rows),
    ]


def render(st: object) -> str:
    """The human-readable report of a `textlstm.ops.fleet.FleetStatus` (pure)."""
    from textlstm.ops.fleet import FleetStatus

    assert isinstance(st, FleetStatus)
    lines = [f"broker    {st.broker}", f"database  {st.database}", ""]
    if "broker" in st.errors:  # the Sentinels did not answer: neither queues nor workers
        lines += [f"queues, workers: unavailable ({st.errors['broker']})", ""]
    else:
        lines += [*_queue_lines(st), "", *_worker_lines(st), ""]
    if "database" in st.errors:
        lines.append(f"jobs: unavailable ({st.errors['database']})")
    else:
        lines.append(
            "jobs: " + ", ".join(f"{n} {status}" for status, n in st.jobs.items() if n)
            if any(st.jobs.values())
            else "jobs: none"
        )
        o = st.oldest_in_flight
        if o is not None:
            lines.append(
                f"oldest in flight: {o['job_id']} ({o['status']}, {o['done']}/{o['expected']} "
                f"items, submitted {_age(o['age_s'])} ago)"
            )
        if st.aliases:
            lines.append(
                "aliases: " + ", ".join(f"{k} -> v{v}" for k, v in sorted(st.aliases.items()))
            )
        if any(st.webhooks.values()):
            lines.append(
                "webhooks: " + ", ".join(f"{n} {state}" for state, n in st.webhooks.items() if n)
            )
        for f in st.webhook_failures:
            lines.append(
                f"  webhook failed: job {f['job_id']} -> {f['url']} after {f['attempts']} "
                f"attempt(s): {f['error']} ({f['at']})"
            )
    return "\n".join(lines)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1),
    default=2.0,
    show_default=True,
    help="Seconds to wait for workers to answer.",
)
def status(as_json: bool, timeout: float) -> None:
    """Queue depths, workers online (device, loaded models), jobs by status, aliases."""
    from textlstm.ops.fleet import collect
    from textlstm.settings import get_settings

    st = collect(get_settings(), timeout=timeout)
    if as_json:
        click.echo(json.dumps(st.to_json(), indent=2))
    else:
        click.echo(render(st))
    if st.errors:
        raise SystemExit(2)
