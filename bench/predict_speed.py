"""In-process `Classifier.predict` throughput: the previous default network against today's.

    python bench/predict_speed.py --data-dir DATA [--datasets ag_news_small,imdb_10k]

Speed does not depend on what the weights learned, so both networks get random weights over
the same vocabulary (built from the training split like `train` does) and classify the test
split; the best of `--repeats` runs counts. One process, one torch thread: a worker process's
shape (run two for two cores). Writes bench/results/predict_speed.md and .json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from textlstm.classifier.config import LEGACY_VALUES
from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.ngrams import bigram_buckets_for, distinct_bigrams
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.training.config import ModelOptions, TokenizerOptions
from textlstm.training.datasets import read_texts

ROOT = Path(__file__).resolve().parents[1]
# The defaults before issue 16: biLSTM 128 over the first 256 tokens, packed, no bag.
PREVIOUS = {"hidden_size": 128, **LEGACY_VALUES}
PREVIOUS_MAX_LENGTH = 256


def throughput(clf: Classifier, texts: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        clf.predict(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def measure(folder: Path, repeats: int) -> dict[str, Any]:
    train, test = read_texts(folder / "train.csv"), read_texts(folder / "test.csv")
    options = TokenizerOptions()
    tokenizer = Tokenizer.build(train.texts, min_freq=options.min_freq, max_size=options.max_vocab)
    labels = sorted({str(x) for x in train.labels})
    defaults = ModelOptions()
    sequences = [tokenizer.encode(t, options.max_length) for t in train.texts]
    buckets = bigram_buckets_for(distinct_bigrams(sequences), defaults.ngram_buckets)
    base = LSTMConfig(vocab_size=len(tokenizer), num_classes=len(labels), **defaults.to_dict())
    shapes = {
        "previous": (replace(base, **PREVIOUS), PREVIOUS_MAX_LENGTH),
        # The defaults of 2026-12-04: the same network with a plain-mean bag, which was left
        # out for short texts (ngram_min_mean_tokens 32).
        "mean_bag": (
            replace(base, ngram_buckets=buckets, ngram_weighting="mean"),
            options.max_length,
        ),
        "current": (replace(base, ngram_buckets=buckets), options.max_length),
    }
    row: dict[str, Any] = {"dataset": folder.name, "texts": len(test.texts)}
    for name, (config, max_length) in shapes.items():
        torch.manual_seed(0)
        clf = Classifier(LSTMClassifier(config), tokenizer, labels, max_length=max_length)
        row[name] = {
            "texts_per_s": throughput(clf, test.texts, repeats),
            "max_length": max_length,
            "model": config.to_dict(),
        }
        print(f"{folder.name} {name}: {row[name]['texts_per_s']:,.0f} texts/s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--datasets", default="ag_news_small,imdb_10k,trec")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_speed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [measure(args.data_dir / name, args.repeats) for name in args.datasets.split(",")]
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU",
        "torch": torch.__version__,
    }
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        "# `Classifier.predict` throughput: previous vs current default network",
        "",
        f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, 1 process x 1 "
        "thread pinned to one core, best of "
        f"{args.repeats} passes over the test split. Command: `python bench/predict_speed.py "
        "--data-dir DATA`. Previous: biLSTM 128, first 256 tokens, packed, no bag. Mean bag: "
        "biLSTM 64 over 64-token windows of up to 1,024 tokens, a plain-mean n-gram bag. "
        "Current: the defaults (the same network with the bag built for short texts too, "
        "weighted by sublinear tf-idf, in a table of at most 2^20 rows, and stacked: its own "
        "output layer, mixed with the LSTM's).",
        "",
        "| dataset | test texts | previous texts/s | mean bag texts/s | current texts/s "
        "| current / previous | current / mean bag |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        prev, mean, cur = (r[k]["texts_per_s"] for k in ("previous", "mean_bag", "current"))
        lines.append(
            f"| {r['dataset']} | {r['texts']:,} | {prev:,.0f} | {mean:,.0f} | {cur:,.0f} "
            f"| {cur / prev:.2f}x | {cur / mean:.2f}x |"
        )
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
