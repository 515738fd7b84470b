"""Redis Sentinel failover: how many accepted messages a SIGKILLed master takes with it, with and
without the producer waiting for a replica (`TEXTLSTM_BROKER_WAIT_REPLICAS`), and how long the
failover takes.

    python bench/sentinel_failover.py            # 3 runs of each mode
    python bench/sentinel_failover.py --runs 5

Each run is one of the two tests of tests/faults/test_sentinel.py (a private master, replica
and three Sentinels; two workers and a producer thread; the master SIGKILLed mid-run and
restarted once the replica is promoted), so the scenario is the fault test's, not a copy. The
tests append one JSON record per run to the file named by `SENTINEL_FAILOVER_RECORD`; this
script runs them, gathers the records and writes bench/results/sentinel_failover.{json,md}.
Needs PostgreSQL as the tests do (TEXTLSTM_TEST_PG_ADMIN_URL or the default local one).

Lost = items of jobs the producer had been told were accepted that are, once the workers have
drained everything, in no row, no queue and no unacked entry (`jobs requeue --dry-run`). Times
are wall-clock on this machine, for orientation, not asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TESTS = {
    1: "test_failover_with_wait_for_a_replica_loses_nothing",
    0: "test_failover_without_wait_is_measured_and_requeue_recovers_it",
    -1: "test_a_lagging_replica_loses_unwaited_messages_and_wait_refuses_them",
}


def one_run(wait: int, record: Path) -> bool:
    test = f"tests/faults/test_sentinel.py::{TESTS[wait]}"
    env = {**os.environ, "SENTINEL_FAILOVER_RECORD": str(record)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode == 0


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float]:
        values = [float(r[key]) for r in records]
        return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}

    return {
        "runs": len(records),
        "messages": sum(int(r["messages"]) for r in records),
        "lost_messages": sum(int(r["lost_messages"]) for r in records),
        "lost_items": sum(int(r["lost_items"]) for r in records),
        "producer_retries": sum(int(r["producer_retries"]) for r in records),
        "failover_s": stat("failover_s"),
        "rejoin_s": stat("rejoin_s"),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Redis Sentinel failover: messages lost, with and without WAIT",
        "",
        f"Written by `bench/sentinel_failover.py` on {result['when']} ({result['machine']}). "
        "One master, one replica, three Sentinels (down-after-milliseconds 2000, "
        "failover-timeout 4000) on loopback; two workers and a producer thread; the master "
        "SIGKILLed mid-run, restarted as a replica of the promoted one.",
        "",
        "| producer waits for | runs | messages accepted | lost messages (items) | "
        "producer retries | failover s (min-max) | old master rejoins s |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, s in result["modes"].items():
        if not s["runs"]:
            continue
        lines.append(
            f"| {mode} | {s['runs']} | {s['messages']} | {s['lost_messages']} "
            f"({s['lost_items']}) | {s['producer_retries']} | "
            f"{s['failover_s']['min']:.1f}-{s['failover_s']['max']:.1f} | "
            f"{s['rejoin_s']['mean']:.1f} |"
        )
    lag = result.get("lag") or []
    if lag:
        lines += [
            "",
            "A lagging replica (`test_a_lagging_replica_…`: the replication link cut while a "
            "producer sends one 10-message job without WAIT and one with WAIT 1, then the "
            "master SIGKILLed and the replica promoted):",
            "",
            "| runs | messages lost without WAIT | with WAIT 1 | failover s |",
            "|---|---|---|---|",
            f"| {len(lag)} | {sum(r['unwaited_lost'] for r in lag)} of {10 * len(lag)} | "
            f"0 (refused with BrokerError, accepted when sent again after the failover) | "
            f"{min(r['failover_s'] for r in lag):.1f}-{max(r['failover_s'] for r in lag):.1f} |",
        ]
    lines += [
        "",
        "Lost: accepted items in no row, no queue and no unacked entry once everything drained. "
        "Producer retries: submits that raised BrokerError and were sent again under the same "
        "job id; with WAIT they are the sends no replica confirmed while the only replica was "
        "the one being promoted (until the old master rejoined).",
        "",
    ]
    if result.get("failed_runs"):
        lines.append(f"Failed runs (test failures): {result['failed_runs']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    modes: dict[str, Any] = {}
    failed: list[str] = []
    for wait, label in ((0, "nothing (WAIT off)"), (1, "one replica (WAIT 1)")):
        with tempfile.TemporaryDirectory() as tmp:
            record = Path(tmp) / "records.jsonl"
            for i in range(args.runs):
                if not one_run(wait, record):
                    failed.append(f"{label} run {i + 1}")
            text = record.read_text() if record.exists() else ""
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        modes[label] = {**summary(records), "records": records} if records else {"runs": 0}
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "records.jsonl"
        for i in range(args.runs):
            if not one_run(-1, record):
                failed.append(f"lagging replica run {i + 1}")
        lag = [json.loads(x) for x in (record.read_text() if record.exists() else "").split("\n")
               if x.strip()]  # fmt: skip
    result = {
        "lag": lag,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "modes": modes,
        "failed_runs": failed,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sentinel_failover.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "sentinel_failover.md").write_text(render(result))
    print(render(result))  # noqa: T201 - the script's report


if __name__ == "__main__":
    main()
