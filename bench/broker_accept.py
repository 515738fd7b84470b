"""What each broker costs a producer per accepted job: `Client.submit` of one single-text job,
called --calls times in a row, on each broker with its own guarantee on.

    python bench/broker_accept.py                 # 300 calls per broker, ~1 min
    python bench/broker_accept.py --quick         # 30 calls: a smoke run

- redis: one LPUSH, acknowledged by the server alone;
- sentinel: LPUSH on the master then `WAIT 1` (TEXTLSTM_BROKER_WAIT_REPLICAS, the default
  on sentinel://), and the same with WAIT off, to show what the replica round trip adds;
- rabbitmq: basic.publish on a durable quorum queue, then the publisher confirm (`basic.ack`,
  sent once the message is in the queue's log).

Each broker is a private one (`bench.pipeline.own_broker`); no worker runs and no database is
written (`record_job=False`). It complements bench/pipeline.py --broker, where the same costs
hide in the end-to-end throughput. Results: bench/results/broker_accept.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, scratch_dir, shown  # noqa: E402 - runnable as a script
from bench.pipeline import BROKERS, own_broker  # noqa: E402


def accept_ms(settings: Any, calls: int) -> list[float]:
    """Milliseconds of each of `calls` single-text `Client.submit` calls, after 20 to warm up."""
    from textlstm.client import Client

    client = Client(settings)
    for _ in range(20):
        client.submit(["warm up"], model="bench", record_job=False)
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        client.submit([f"text {i}"], model="bench", record_job=False)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"calls": len(ms), "mean_ms": round(statistics.mean(ms), 2),
            "p50_ms": round(q[49], 2), "p99_ms": round(q[98], 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--broker", default=",".join(BROKERS), help="comma-separated")
    ap.add_argument("--quick", action="store_true", help="30 calls: a smoke run")
    ap.add_argument("--out", type=Path, default=None, help="results stem")
    args = ap.parse_args()
    if args.quick:
        args.calls = 30
    args.out = args.out or RESULTS / ("broker_accept_quick" if args.quick else "broker_accept")
    brokers = [b.strip() for b in args.broker.split(",") if b.strip()]
    if not brokers or set(brokers) - set(BROKERS):
        ap.error(f"--broker {args.broker!r}: one or more of {', '.join(BROKERS)}")
    from textlstm.settings import Settings

    rows: dict[str, dict[str, float]] = {}
    started = time.monotonic()
    for broker in brokers:
        work = scratch_dir(f"textlstm-accept-{broker}-")
        with own_broker(broker, work) as (url, options, _groups):
            variants: list[tuple[str, dict[str, Any]]] = [("default", {})]
            if broker == "sentinel":
                variants.append(("WAIT off", {"broker_wait_replicas": 0}))
            for name, extra in variants:
                more = {"broker_transport_options": options} if options else {}
                settings = Settings(
                    database_url=f"sqlite:///{work / 'unused.db'}", broker_url=url,
                    queue="accept", _env_file=None, **more, **extra,  # type: ignore[call-arg]
                )  # fmt: skip
                key = f"{broker} ({name})"
                rows[key] = summary(accept_ms(settings, args.calls))
                print(key, json.dumps(rows[key]), flush=True)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), shared with other work",
        "command": "python bench/broker_accept.py" + (" --quick" if args.quick else ""),
        "config": {k: shown(v) for k, v in vars(args).items()},
        "wall_s": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# What a broker costs a producer per accepted job ({args.calls} calls each)",
        "",
        f"`{report['command']}` on {report['when']}, {report['machine']}; each broker a private "
        "one on loopback. One `Client.submit` of a single-text job at a time, until it returns "
        "(the job accepted, with the broker's guarantee).",
        "",
        "| broker (producer setting) | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {v['p50_ms']} | {v['p99_ms']} | {v['mean_ms']} |" for k, v in rows.items()],
        "",
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
