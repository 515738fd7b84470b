"""bench/pipeline.py --broker: the same modes on Redis Sentinel and on RabbitMQ, each a private
server set the bench starts itself (master, replica and three Sentinels; a RabbitMQ node on free
ports), against the one ceiling, reported as one broker × mode table. Smoke runs of 300 texts:
the numbers mean nothing; what is checked is that every mode that makes sense on the broker ran
to its last row, the others are reported n/a with a reason, and the report holds the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench.runner import run_bench
from textlstm.testing.rabbitmq import rabbitmq_available

#: Every broker mode asked for: raw and naive are cheap when they do not run.
MODES = "ceiling,bulk,producer,raw,light,naive"


def _run(broker: str, out: Path, pg_admin_url: str) -> dict:
    proc = run_bench(
        "pipeline.py", "--quick", "--broker", broker, "--modes", MODES, "--no-int8",
        "--out", str(out), "--pg-admin-url", pg_admin_url, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.with_suffix(".json").read_text())


def _check_ran(report: dict, broker: str, ran: list[str]) -> dict[str, dict]:
    """The modes in `ran` ran on `broker` to their last row; the table's rows by mode."""
    summary = report["summary"]
    assert {"ceiling 1x1", "ceiling 1x2", "ceiling 2x1"} <= set(summary)
    rows = {r["mode"]: r for r in report["brokers"]["rows"] if r["broker"] == broker}
    top = report["brokers"]["ceiling_texts_per_s"]
    assert top > 0
    for mode in ran:
        run = report["runs"][f"{broker} {mode}"][0]
        assert run["broker"] == broker
        assert run["n"] == (60 if mode == "light" else 300), mode
        assert 0 < run["p50_ms"] <= run["p99_ms"], mode
        assert run["cores_used"]["workers"] > 0, mode
        row = rows[mode]
        assert row["texts_per_s"] == summary[f"{broker} {mode}"]["texts_per_s"] > 0
        assert row["p50_ms"] <= row["p99_ms"], mode
        if mode == "light":  # an offered rate, not a capacity: no ratio, no send time
            assert row["vs_ceiling"] is None and row["send_s"] is None
        else:
            assert row["vs_ceiling"] == round(row["texts_per_s"] / top, 2)
            if mode in ("bulk", "raw"):  # the time to have every text accepted
                assert row["send_s"] is not None and row["send_s"] >= 0, mode
            assert row["mean_batch"] > 1, mode
    for mode in ("bulk", "producer"):
        assert summary[f"{broker} {mode}"]["stages_pct"]["forward"] > 0, mode
    targets = report["brokers"]["targets"][broker]
    assert {"bulk_vs_ceiling", "producer_vs_ceiling", "light_p99"} <= set(targets)
    return rows


@pytest.mark.slow
@pytest.mark.timeout(320)
def test_rabbitmq_modes_run_and_the_rest_is_na(tmp_path: Path, pg_admin_url: str) -> None:
    if not rabbitmq_available():
        pytest.skip("RabbitMQ is not installed (rabbitmq-server, rabbitmqctl)")
    out = tmp_path / "pipeline_brokers"
    report = _run("rabbitmq", out, pg_admin_url)
    assert report["command"].endswith("--quick --broker rabbitmq")
    rows = _check_ran(report, "rabbitmq", ["bulk", "producer", "light"])
    assert "basic.publish" in rows["raw"]["na"] and "redis only" in rows["naive"]["na"]
    # the node's own CPU is counted apart (not the machine's shared node: its process group)
    assert "rabbitmq" in report["runs"]["rabbitmq bulk"][0]["cores_used"]
    assert "confirm" in report["brokers"]["notes"]["rabbitmq"]
    md = out.with_suffix(".md").read_text()
    assert "| broker | mode | texts/s | × ceiling | p50 ms | p99 ms |" in md
    assert "| rabbitmq | bulk |" in md and "| rabbitmq | raw | n/a (" in md
    assert "offered rate" in md and "## What each broker does per message" in md


@pytest.mark.slow
@pytest.mark.timeout(320)
def test_sentinel_modes_run_raw_included(tmp_path: Path, pg_admin_url: str) -> None:
    out = tmp_path / "pipeline_brokers"
    report = _run("sentinel", out, pg_admin_url)
    rows = _check_ran(report, "sentinel", ["bulk", "producer", "raw", "light"])
    assert "redis only" in rows["naive"]["na"]
    assert "WAIT 1" in report["brokers"]["notes"]["sentinel"]
    assert "| sentinel | raw |" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("value", ["kafka", "redis,redis", ""])
def test_an_unknown_or_repeated_broker_is_refused(value: str) -> None:
    proc = run_bench("pipeline.py", "--broker", value, "--out", "unused", timeout=60)
    assert proc.returncode == 2
    assert "--broker" in proc.stderr and "redis, sentinel, rabbitmq" in proc.stderr


@pytest.mark.slow
def test_broker_accept_quick(tmp_path: Path) -> None:
    """bench/broker_accept.py: per-call cost of accepting a single-text job on each broker."""
    wanted = ["redis (default)", "sentinel (default)", "sentinel (WAIT off)"]
    brokers = "redis,sentinel"
    if rabbitmq_available():
        wanted.append("rabbitmq (default)")
        brokers += ",rabbitmq"
    out = tmp_path / "broker_accept"
    proc = run_bench("broker_accept.py", "--quick", "--broker", brokers, "--out", str(out),
                     timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert list(rows) == wanted
    for key, row in rows.items():
        assert row["calls"] == 30 and 0 < row["p50_ms"] <= row["p99_ms"], key
    assert (
        "| rabbitmq (default) |" in out.with_suffix(".md").read_text() or "rabbitmq" not in brokers
    )
