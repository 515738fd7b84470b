"""Accuracy of the default `textlstm-admin train` configuration on every shared dataset,
beside a TF-IDF (1–2-grams) + logistic-regression baseline trained in the same run.

    python bench/accuracy.py [--data-dir ../shared/data] [--datasets trec,sst5] [--threads 2]

Writes bench/results/accuracy.md and accuracy.json. Each dataset's `train.csv` trains, its
`dev.csv` (when present) validates, else the same stratified 10% split `train` makes; `test.csv`
is scored once at the end. `--set key=value` overrides a default, for tuning experiments only:
results that used overrides say so.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm.datasets import read_texts, stratified_split
from textlstm.training.pipeline import ModelOptions, TokenizerOptions, fit_classifier
from textlstm.training.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def tfidf_baseline(
    train_texts: list[str], train_labels: list[str], test_texts: list[str]
) -> tuple[list[str], float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(train_texts)
    model = LogisticRegression(max_iter=2000, C=10.0)
    model.fit(features, train_labels)
    predictions = model.predict(vectorizer.transform(test_texts))
    return list(predictions), time.perf_counter() - started


def macro_f1(y_true: list[str], y_pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


def run_dataset(folder: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    train_set = read_texts(folder / "train.csv")
    test_set = read_texts(folder / "test.csv")
    if (folder / "dev.csv").exists():
        train_ex, val_ex = train_set.examples, read_texts(folder / "dev.csv").examples
        validation = "dev.csv"
    else:
        defaults = TrainConfig()
        train_ex, val_ex = stratified_split(train_set.examples, fraction=0.1, seed=defaults.seed)
        validation = "stratified 10% of train.csv"

    def pick(cls: type) -> dict[str, Any]:
        return {k: v for k, v in overrides.items() if k in cls.__dataclass_fields__}  # type: ignore[attr-defined]

    started = time.perf_counter()
    result = fit_classifier(
        train_ex,
        val_ex,
        tokenizer_options=TokenizerOptions(**pick(TokenizerOptions)),
        model_options=ModelOptions(**pick(ModelOptions)),
        train_config=TrainConfig(**pick(TrainConfig)),
        device="cpu",
    )
    train_seconds = time.perf_counter() - started
    clf = result.classifier
    t0 = time.perf_counter()
    preds = clf.predict(test_set.texts)
    predict_seconds = time.perf_counter() - t0
    predicted = [p.label or "" for p in preds]
    truth = test_set.labels
    examples_seen = len(train_ex) * len(result.report.history)

    base_pred, base_seconds = tfidf_baseline(
        [e.text for e in train_set.examples], train_set.labels, test_set.texts
    )
    return {
        "dataset": folder.name,
        "train_rows": len(train_ex),
        "validation": f"{validation} ({len(val_ex)} rows)",
        "test_rows": len(truth),
        "lstm": {
            "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
            "macro_f1": macro_f1(truth, predicted),
            "train_seconds": train_seconds,
            "epochs_run": len(result.report.history),
            "best_epoch": result.report.best_epoch,
            "train_examples_per_s": examples_seen
            / max(sum(h.seconds for h in result.report.history), 1e-9),
            "val_accuracy": result.metrics["validation"]["accuracy"],
            "ece_before": result.metrics["calibration"]["ece_before"],
            "ece_after": result.metrics["calibration"]["ece_after"],
            "predict_texts_per_s": len(truth) / predict_seconds,
        },
        "tfidf_logreg": {
            "accuracy": float(np.mean([p == t for p, t in zip(base_pred, truth, strict=True)])),
            "macro_f1": macro_f1(truth, base_pred),
            "train_seconds": base_seconds,
        },
    }


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Accuracy: default `textlstm-admin train` vs TF-IDF + logistic regression",
        "",
        f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, "
        f"{meta['threads']} thread(s). Command: `{meta['command']}`.",
        f"Overrides of the defaults: {meta['overrides'] or 'none (the shipped defaults)'}.",
        "",
        "| dataset | LSTM acc | LSTM macro-F1 | TF-IDF acc | TF-IDF macro-F1 | Δ acc (points) "
        "| LSTM train time | epochs (best) | train ex/s | ECE before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lstm, base = r["lstm"], r["tfidf_logreg"]
        delta = 100 * (lstm["accuracy"] - base["accuracy"])
        lines.append(
            f"| {r['dataset']} | {100 * lstm['accuracy']:.1f} | {100 * lstm['macro_f1']:.1f} | "
            f"{100 * base['accuracy']:.1f} | {100 * base['macro_f1']:.1f} | {delta:+.1f} | "
            f"{lstm['train_seconds']:.0f} s | {lstm['epochs_run']} ({lstm['best_epoch']}) | "
            f"{lstm['train_examples_per_s']:,.0f} | "
            f"{lstm['ece_before']:.3f} → {lstm['ece_after']:.3f} |"
        )
    wins = sum(r["lstm"]["accuracy"] > r["tfidf_logreg"]["accuracy"] for r in rows)
    within = all(r["lstm"]["accuracy"] >= r["tfidf_logreg"]["accuracy"] - 0.01 for r in rows)
    slowest = max(r["lstm"]["train_seconds"] for r in rows)
    lines += [
        "",
        f"Target: within 1 point of TF-IDF on every dataset ({'met' if within else 'NOT met'}), "
        f"ahead on at least two ({wins} of {len(rows)}), each training run under 10 minutes "
        f"(slowest {slowest:.0f} s: {'met' if slowest < 600 else 'NOT met'}).",
        "",
        "Rows: train/validation/test sizes — "
        + "; ".join(
            f"{r['dataset']}: {r['train_rows']:,} train, {r['validation']}, {r['test_rows']:,} test"
            for r in rows
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--datasets", default="ag_news_small,sst5,trec,emotion")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "accuracy")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    rows = []
    for name in args.datasets.split(","):
        row = run_dataset(args.data_dir / name, overrides)
        lstm, base = row["lstm"], row["tfidf_logreg"]
        print(
            f"{name}: LSTM {lstm['accuracy']:.4f} (val {lstm['val_accuracy']:.4f}) "
            f"vs TF-IDF {base['accuracy']:.4f}, "
            f"{lstm['train_seconds']:.0f}s, {lstm['epochs_run']} epochs "
            f"(best {lstm['best_epoch']})",
            flush=True,
        )
        rows.append(row)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores",
        "torch": torch.__version__,
        "threads": args.threads,
        "overrides": overrides,
        "command": "python bench/accuracy.py" + "".join(f" --set {p}" for p in args.overrides),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    args.out.with_suffix(".md").write_text(render(rows, meta))
    print(f"wrote {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
