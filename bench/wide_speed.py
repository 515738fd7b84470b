"""`Classifier.predict` throughput of the wide (n-gram bag) variants against the bag off.

    python bench/wide_speed.py --data-dir DATA [--datasets imdb_10k,ag_news_small] [--repeats 3]

Like bench/predict_speed.py: random weights over the training split's vocabulary (speed does
not depend on what was learned), the test split, one torch thread. The variants' passes are
interleaved (A B C A B C ...) and the best pass of each counts, so a machine shared with other
jobs slows every variant alike instead of whichever ran during a busy minute.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from textlstm.classifier.network import LSTMClassifier, LSTMConfig
from textlstm.classifier.ngrams import bigram_buckets_for, distinct_ngrams
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import Tokenizer
from textlstm.training.config import ModelOptions, TokenizerOptions
from textlstm.training.datasets import read_texts

ROOT = Path(__file__).resolve().parents[1]
# name → (ModelOptions overrides, LSTM max_length); the bag reads ngram_max_length if larger.
VARIANTS: dict[str, tuple[dict[str, Any], int]] = {
    "bag off": ({"ngram_buckets": 0}, 1024),
    "bag, bigrams (default)": ({}, 1024),
    "bag, trigrams": ({"ngram_order": 3}, 1024),
    "bag reads 4,096": ({"ngram_max_length": 4096}, 1024),
    "LSTM 256, bag off": ({"ngram_buckets": 0}, 256),
    "LSTM 256, bag reads 4,096": ({"ngram_max_length": 4096}, 256),
}


def build(tokenizer: Tokenizer, labels: list[str], sequences: list[list[int]]) -> dict[str, Any]:
    out = {}
    for name, (overrides, max_length) in VARIANTS.items():
        options = replace(ModelOptions(), **overrides)
        reach = max(max_length, options.ngram_max_length) if options.uses_ngrams else max_length
        buckets = bigram_buckets_for(
            distinct_ngrams([s[:reach] for s in sequences], options.ngram_order),
            options.ngram_buckets,
        )
        config = LSTMConfig(
            vocab_size=len(tokenizer),
            num_classes=len(labels),
            **{**options.to_dict(), "ngram_buckets": buckets},
            lstm_max_length=max_length if reach > max_length else 0,
        )
        torch.manual_seed(0)
        out[name] = Classifier(LSTMClassifier(config), tokenizer, labels, max_length=reach)
    return out


def measure(folder: Path, repeats: int) -> dict[str, float]:
    train, test = read_texts(folder / "train.csv"), read_texts(folder / "test.csv")
    options = TokenizerOptions()
    tokenizer = Tokenizer.build(train.texts, min_freq=options.min_freq, max_size=options.max_vocab)
    labels = sorted({str(x) for x in train.labels})
    sequences = [tokenizer.encode(t, 4096) for t in train.texts]
    classifiers = build(tokenizer, labels, sequences)
    best = dict.fromkeys(classifiers, float("inf"))
    for _ in range(repeats):
        for name, clf in classifiers.items():
            started = time.perf_counter()
            clf.predict(test.texts)
            best[name] = min(best[name], time.perf_counter() - started)
    rates = {name: len(test.texts) / seconds for name, seconds in best.items()}
    for name, rate in rates.items():
        print(f"{folder.name} {name}: {rate:,.0f} texts/s", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--datasets", default="imdb_10k,ag_news_small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "wide_speed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {name: measure(args.data_dir / name, args.repeats) for name in args.datasets.split(",")}
    meta = {"date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "repeats": args.repeats}
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    names = list(VARIANTS)
    lines = [
        "| dataset | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        *(f"| {d} | " + " | ".join(f"{r[n]:,.0f}" for n in names) + " |" for d, r in rows.items()),
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
