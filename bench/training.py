"""Training speed of the default `textlstm-admin train` configuration on each shared dataset:
train examples/s, wall time, epochs and rows.

    python bench/training.py                          # render from bench/results/accuracy.json
    python bench/training.py --data-dir DATA --run trec[,sst5]  # time the defaults now
    python bench/training.py --quick --out /tmp/t     # a tiny timed training: the CI smoke test

By default nothing is trained: the numbers are those bench/accuracy.py measured (it trains the
shipped defaults on every dataset) and the report says which run they come from. `--run` trains
again with bench/accuracy.py's own `run_dataset` (the same code path, `fit_classifier` with the
defaults the CLI reads) on `--threads` threads, 1 by default as in the recorded accuracy run.
`--quick` does the same for one epoch on examples/data/news_train.csv (test: news_test.csv).
Writes <out>.md and <out>.json (default bench/results/training, training_quick with --quick).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SAMPLE = ROOT / "examples" / "data"


def accuracy_bench() -> ModuleType:
    """bench/accuracy.py as a module (bench/ is a namespace package under the repo root)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.accuracy")


def speed_row(row: dict[str, Any]) -> dict[str, Any]:
    """The training-speed fields of one bench/accuracy.py result row (its first seed's run,
    for rows that hold one run per seed)."""
    lstm = row["lstm_runs"][0] if "lstm_runs" in row else row["lstm"]
    return {
        "dataset": row["dataset"],
        "train_rows": row["train_rows"],
        "validation": row["validation"],
        "epochs_run": lstm["epochs_run"],
        "best_epoch": lstm["best_epoch"],
        "train_seconds": lstm["train_seconds"],
        "seconds_per_epoch": lstm["train_seconds"] / max(lstm["epochs_run"], 1),
        "train_examples_per_s": lstm["train_examples_per_s"],
        "test_accuracy": lstm["accuracy"],
    }


def defaults_line() -> str:
    from textlstm.training.config import ModelOptions, TokenizerOptions, TrainConfig

    m, t, c = asdict(ModelOptions()), asdict(TokenizerOptions()), TrainConfig()
    return (
        f"embedding {m['embedding_dim']}, LSTM {m['hidden_size']} × {m['num_layers']} layer "
        f"{'bidirectional' if m['bidirectional'] else 'unidirectional'}, {m['pooling']} pooling"
        f"{' + embedding skip' if m['embedding_skip'] else ''}, max length {t['max_length']}, "
        f"batch {c.batch_size}, up to {c.epochs} epochs with patience {c.patience}, "
        f"EMA {c.ema_decay}"
        + (
            f"; an n-gram bag ({m['ngram_weighting']} tf-idf, at most {m['ngram_buckets']:,} "
            f"buckets, {m['ngram_fusion']})"
            if m["ngram_buckets"] and m["ngram_dim"]
            else ""
        )
    )


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Training speed: default `textlstm-admin train` configuration",
        "",
        meta["provenance"],
        "",
        f"Configuration: the shipped defaults{meta['overrides_note']} (today's "
        f"textlstm/training/config.py: {meta['defaults']}).",
        "",
        "| dataset | train rows | epochs run (best) | wall time | s / epoch | train examples/s "
        "| test acc % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['train_rows']:,} | {r['epochs_run']} ({r['best_epoch']}) | "
            f"{r['train_seconds']:.0f} s | {r['seconds_per_epoch']:.1f} | "
            f"{r['train_examples_per_s']:,.0f} | {100 * r['test_accuracy']:.1f} |"
        )
    total = sum(r["train_seconds"] for r in rows)
    lines += [
        "",
        f"All datasets together: {total:.0f} s of training.",
        "",
        "Wall time: `fit_classifier` end to end (vocabulary, encoding, the epochs with their "
        "validation passes, temperature calibration); CLI start-up, reading the CSV, writing "
        "the bundle and its PNG plots are not in it; with a stacked bag it includes the bag's "
        "own epochs, which run first (epochs run and s / epoch count the LSTM's). "
        "Train examples/s: train rows × epochs run "
        "÷ the summed epoch times (each epoch's training steps plus its validation pass), as "
        "bench/accuracy.py computes it. Validation: "
        + "; ".join(f"{r['dataset']}: {r['validation']}" for r in rows)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def machine() -> str:
    return f"{platform.machine()} CPU, {os.cpu_count()} cores"


def from_accuracy(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = json.loads(path.read_text())
    src = data["meta"]
    overrides = src.get("overrides") or {}
    meta = {
        "source": "accuracy run",
        "source_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
        "date": src["date"],
        "command": src["command"],
        "torch": src["torch"],
        "threads": src["threads"],
        "machine": src["machine"],
        "overrides": overrides,
        "rendered": time.strftime("%Y-%m-%d"),
        "render_command": "python bench/training.py",
    }
    meta["provenance"] = (
        f"Numbers from the accuracy run of {src['date']} (`{src['command']}`, on "
        f"{src['machine']}, torch {src['torch']}, {src['threads']} thread(s)), read from "
        f"`{meta['source_file']}`; no training was run for this file. Rendered "
        f"{meta['rendered']} by `python bench/training.py`; `python bench/training.py --run "
        "DATASET` times the same thing again."
    )
    return [speed_row(r) for r in data["rows"]], meta


def measure(
    folders: list[Path], overrides: dict[str, Any], threads: int, command: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import torch

    torch.set_num_threads(threads)
    bench = accuracy_bench()
    rows = []
    for folder in folders:
        seeds = [int(overrides.get("seed", 13))]
        row = speed_row(bench.run_dataset(folder, overrides, seeds, False))
        print(
            f"{row['dataset']}: {row['train_seconds']:.1f} s, {row['epochs_run']} epochs, "
            f"{row['train_examples_per_s']:,.0f} train examples/s",
            flush=True,
        )
        rows.append(row)
    meta = {
        "source": "measured",
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "torch": torch.__version__,
        "threads": threads,
        "machine": machine(),
        "overrides": overrides,
    }
    meta["provenance"] = (
        f"Measured {meta['date']} by `{command}` on {meta['machine']}, torch "
        f"{meta['torch']}, {threads} thread(s), with bench/accuracy.py's `run_dataset`."
    )
    return rows, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--run", metavar="DATASET[,DATASET]", help="train now on these datasets")
    mode.add_argument("--quick", action="store_true", help="one epoch on examples/data (seconds)")
    parser.add_argument("--data-dir", type=Path, help="the datasets' folder (needed by --run)")
    parser.add_argument("--accuracy-json", type=Path, default=RESULTS / "accuracy.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or RESULTS / ("training_quick" if args.quick else "training")

    if args.quick:
        with tempfile.TemporaryDirectory(prefix="textlstm-training-") as tmp:
            folder = Path(tmp) / "news_sample"
            folder.mkdir()
            shutil.copyfile(SAMPLE / "news_train.csv", folder / "train.csv")
            shutil.copyfile(SAMPLE / "news_test.csv", folder / "test.csv")
            rows, meta = measure(
                [folder], {"epochs": 1}, args.threads, "python bench/training.py --quick"
            )
        rows[0]["dataset"] = "examples/data news sample (1 epoch)"
    elif args.run:
        if args.data_dir is None:
            parser.error("--run needs --data-dir (the folder of the benchmark datasets)")
        folders = [args.data_dir / name for name in args.run.split(",")]
        command = (
            f"python bench/training.py --data-dir DATA --run {args.run} --threads {args.threads}"
        )
        rows, meta = measure(folders, {}, args.threads, command)
    else:
        rows, meta = from_accuracy(args.accuracy_json)
    meta["defaults"] = defaults_line()
    meta["overrides_note"] = (
        ", except " + ", ".join(f"{k}={v}" for k, v in meta["overrides"].items())
        if meta["overrides"]
        else ""
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(rows, meta))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
