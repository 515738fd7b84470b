"""Accuracy of the default `textlstm-admin train` configuration on every shared dataset,
beside a TF-IDF (1–2-grams) + logistic-regression baseline trained in the same run.

    python bench/accuracy.py --data-dir DATA [--datasets trec,sst5] [--seeds 13,14,15]
        [--threads 1] [--no-baselines] [--set key=value] [--out PATH]
        [--pretrain own [--lm-set key=value] | --init-lm LM]

Writes bench/results/accuracy.md and accuracy.json. Each dataset's `train.csv` trains, its
`dev.csv` (when present) validates, else the same stratified 10% split `train` makes; `test.csv`
is scored once at the end. The LSTM is trained once per seed (mean ± sd); the baselines
(bench/baselines.py) once. `--set key=value` overrides a default, for tuning experiments only:
results that used overrides say so.

`--pretrain own` also pretrains a language model on each dataset's own training texts (labels
dropped; `textlstm-admin pretrain` defaults, `--lm-set key=value` overrides PretrainConfig) and
trains the classifier from it (`train --init`) with the same seeds: the table then shows the
LSTM with and without pretraining side by side, and the pretraining time. `--init-lm LM`
trains every dataset from one LM bundle instead (`textlstm-admin pretrain CORPUS --out LM`, e.g.
on a larger corpus than any one dataset), beside the plain LSTM; its pretraining time and
perplexity are the bundle's own.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from textlstm import bundle
from textlstm.classifier.inference import batched_logits
from textlstm.classifier.language_model import (
    LoadedLM,
    load_language_model,
    save_language_model,
)
from textlstm.training.config import PretrainConfig
from textlstm.training.datasets import Example, read_texts, stratified_split
from textlstm.training.metrics import expected_calibration_error
from textlstm.training.pipeline import ModelOptions, TokenizerOptions, fit_classifier
from textlstm.training.pretrain import pretrain_language_model
from textlstm.training.trainer import Callback, EpochStats, TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.baselines import fasttext_style, tfidf_logreg  # noqa: E402 - runnable as a script

ROOT = Path(__file__).resolve().parents[1]
LSTM_KEYS = ("accuracy", "macro_f1", "train_seconds", "test_ece", "predict_texts_per_s")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def _accuracy(truth: list[str], predicted: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))


def macro_f1(y_true: list[str], y_pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


def _splits(folder: Path) -> tuple[list[Example], list[Example], str]:
    """The split `train` makes: dev.csv when there is one, else a stratified 10% of train."""
    train_set = read_texts(folder / "train.csv")
    if (folder / "dev.csv").exists():
        return train_set.examples, read_texts(folder / "dev.csv").examples, "dev.csv"
    train_ex, val_ex = stratified_split(train_set.examples, fraction=0.1, seed=TrainConfig().seed)
    return train_ex, val_ex, "stratified 10% of train.csv"


class _EpochLog(Callback):
    """One line per epoch on stderr, so a long tuning run shows where its time goes."""

    def on_epoch_end(self, stats: EpochStats) -> None:
        print(
            f"    {stats.branch or ''} epoch {stats.epoch}: val acc {stats.val_accuracy:.4f} "
            f"F1 {stats.val_macro_f1:.4f} loss {stats.val_loss:.4f}, {stats.seconds:.0f}s"
            + (" *" if stats.best else ""),
            file=sys.stderr,
            flush=True,
        )


def run_lstm(
    train_ex: list[Example],
    val_ex: list[Example],
    test_texts: list[str],
    truth: list[str],
    overrides: dict[str, Any],
    seed: int,
    init: LoadedLM | None = None,
) -> dict[str, Any]:
    def pick(cls: type) -> dict[str, Any]:
        return {k: v for k, v in overrides.items() if k in cls.__dataclass_fields__}  # type: ignore[attr-defined]

    started = time.perf_counter()
    result = fit_classifier(
        train_ex,
        val_ex,
        tokenizer_options=TokenizerOptions(**pick(TokenizerOptions)),
        model_options=ModelOptions(**pick(ModelOptions)),
        train_config=TrainConfig(**{**pick(TrainConfig), "seed": seed}),
        device="cpu",
        callbacks=[_EpochLog()],
        init=init,
    )
    train_seconds = time.perf_counter() - started
    clf = result.classifier
    t0 = time.perf_counter()
    probs = clf.predict_proba(test_texts)
    predict_seconds = time.perf_counter() - t0
    predicted = [clf.labels[i] for i in np.nan_to_num(probs, nan=0.0).argmax(1)]
    y = np.array([clf.labels.index(t) if t in clf.labels else -1 for t in truth])
    known = y >= 0
    epochs_run = len(result.report.history)
    branches = _branch_accuracies(clf, test_texts, y)
    return {
        **branches,
        "seed": seed,
        "accuracy": _accuracy(truth, predicted),
        "macro_f1": macro_f1(truth, predicted),
        "train_seconds": train_seconds,
        "epochs_run": epochs_run,
        "best_epoch": result.report.best_epoch,
        "train_examples_per_s": len(train_ex)
        * epochs_run
        / max(sum(h.seconds for h in result.report.history), 1e-9),
        "val_accuracy": result.metrics["validation"]["accuracy"],
        "val_ece_before": result.metrics["calibration"]["ece_before"],
        "val_ece_after": result.metrics["calibration"]["ece_after"],
        "test_ece": expected_calibration_error(probs[known], y[known]),
        "temperature": result.metrics["calibration"]["temperature"],
        "predict_texts_per_s": len(test_texts) / predict_seconds,
        "parameters": sum(p.numel() for p in clf.model.parameters()),
    }


def _branch_accuracies(clf: Any, texts: list[str], y: np.ndarray) -> dict[str, Any]:
    """A stacked network's branches scored alone on the test texts, and their fitted mix."""
    model = clf.model
    if getattr(model, "ngram_head", None) is None:
        return {}
    encoded = [clf.tokenizer.encode(t, clf.max_length) for t in texts]
    rows = [i for i, s in enumerate(encoded) if s and y[i] >= 0]
    logits = batched_logits(model, [encoded[i] for i in rows], forward=model.branch_logits)
    lstm, bag = (part.argmax(1).numpy() for part in logits.chunk(2, dim=1))
    truth = y[rows]
    return {
        "branch_weights": model.branch_weights.tolist(),
        "lstm_branch_accuracy": float((lstm == truth).mean()),
        "bag_branch_accuracy": float((bag == truth).mean()),
    }


def summary(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean and sample sd (0 for one run) of each key over the seeds."""
    out = {}
    for key in keys:
        values = np.array([r[key] for r in runs], dtype=float)
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "sd": sd}
    return out


class _LMEpochLog:
    def on_train_start(self, **_: Any) -> None: ...

    def on_batch_end(self, **_: Any) -> None: ...

    def on_train_end(self, _: Any) -> None: ...

    def on_epoch_end(self, stats: Any) -> None:
        print(
            f"    LM epoch {stats.epoch}: val perplexity {stats.val_perplexity:,.1f}, "
            f"{stats.tokens_per_s:,.0f} tokens/s, {stats.seconds:.0f}s"
            + (" *" if stats.best else ""),
            file=sys.stderr,
            flush=True,
        )


def pretrain_own(
    texts: list[str], overrides: dict[str, Any], lm_overrides: dict[str, Any], seed: int
) -> tuple[LoadedLM, dict[str, Any]]:
    """Pretrain on the dataset's training texts and load the LM back through its bundle, the
    path `train --init` takes (hashes verified)."""
    tokenizer_options = TokenizerOptions(
        **{k: v for k, v in overrides.items() if k in TokenizerOptions.__dataclass_fields__}
    )
    started = time.perf_counter()
    result = pretrain_language_model(
        texts,
        tokenizer_options=tokenizer_options,
        config=PretrainConfig(**{**lm_overrides, "seed": seed}),
        device="cpu",
        callbacks=[_LMEpochLog()],
    )
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        save_language_model(
            Path(tmp) / "lm",
            result.model,
            result.tokenizer,
            metrics=result.metrics,
            metadata={"tokenizer_options": tokenizer_options.__dict__},
        )
        loaded = load_language_model(Path(tmp) / "lm")
    info = {
        "seed": seed,
        "seconds": seconds,
        "val_perplexity": result.metrics["validation"]["perplexity"],
        "vocab_size": len(result.tokenizer),
        "tokens": result.metrics["training"]["tokens"],
        "epochs": result.metrics["training"]["epochs_run"],
    }
    return loaded, info


def lm_info(path: Path) -> dict[str, Any]:
    """What a saved LM's own metrics say of its pretraining (the bundle is verified first)."""
    metrics = bundle.read_json(path, bundle.METRICS)
    return {
        "seconds": metrics["training"]["seconds"],
        "val_perplexity": metrics["validation"]["perplexity"],
        "tokens": metrics["training"]["tokens"],
        "epochs": metrics["training"]["epochs_run"],
    }


def run_dataset(
    folder: Path,
    overrides: dict[str, Any],
    seeds: list[int],
    baselines: bool,
    pretrain: str | None = None,
    lm_overrides: dict[str, Any] | None = None,
    init: LoadedLM | None = None,
    init_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    train_ex, val_ex, validation = _splits(folder)
    test_set = read_texts(folder / "test.csv")
    truth = [str(t) for t in test_set.labels]
    runs = []
    pretrained_runs, lm_runs = [], []
    for seed in seeds:
        if pretrain == "own":
            lm, info = pretrain_own([e.text for e in train_ex], overrides, lm_overrides or {}, seed)
            run = run_lstm(train_ex, val_ex, test_set.texts, truth, overrides, seed, init=lm)
            print(
                f"  {folder.name} seed {seed}: pretrained LM ppl {info['val_perplexity']:,.1f} "
                f"in {info['seconds']:.0f}s; LSTM+LM acc {run['accuracy']:.4f} "
                f"F1 {run['macro_f1']:.4f}, {run['train_seconds']:.0f}s",
                flush=True,
            )
            pretrained_runs.append(run)
            lm_runs.append(info)
        elif init is not None:
            run = run_lstm(train_ex, val_ex, test_set.texts, truth, overrides, seed, init=init)
            print(
                f"  {folder.name} seed {seed}: LSTM+LM acc {run['accuracy']:.4f} "
                f"F1 {run['macro_f1']:.4f}, {run['train_seconds']:.0f}s",
                flush=True,
            )
            pretrained_runs.append(run)
            lm_runs.append(dict(init_info or {}))
        run = run_lstm(train_ex, val_ex, test_set.texts, truth, overrides, seed)
        print(
            f"  {folder.name} seed {seed}: LSTM acc {run['accuracy']:.4f} "
            f"F1 {run['macro_f1']:.4f} (val {run['val_accuracy']:.4f}), "
            f"{run['train_seconds']:.0f}s, {run['epochs_run']} epochs (best {run['best_epoch']}), "
            f"test ECE {run['test_ece']:.3f}, {run['predict_texts_per_s']:,.0f} texts/s",
            flush=True,
        )
        if "branch_weights" in run:
            print(
                f"    branches alone: LSTM {run['lstm_branch_accuracy']:.4f}, "
                f"bag {run['bag_branch_accuracy']:.4f}; mix weights "
                + ", ".join(f"{w:.2f}" for w in run["branch_weights"]),
                flush=True,
            )
        runs.append(run)
    row: dict[str, Any] = {
        "dataset": folder.name,
        "train_rows": len(train_ex),
        "validation": f"{validation} ({len(val_ex)} rows)",
        "test_rows": len(truth),
        "lstm_runs": runs,
        "lstm": summary(runs, LSTM_KEYS) if runs else {},
    }
    if pretrained_runs:
        row["lstm_pretrained_runs"] = pretrained_runs
        row["lstm_pretrained"] = summary(pretrained_runs, LSTM_KEYS)
        row["pretrain_runs"] = lm_runs
        row["pretrain"] = summary(lm_runs, ("seconds", "val_perplexity"))
    if baselines:
        as_pair = lambda xs: ([e.text for e in xs], [str(e.label) for e in xs])  # noqa: E731
        pred, c, seconds = tfidf_logreg(as_pair(train_ex), as_pair(val_ex), test_set.texts)
        row["tfidf_logreg"] = {
            "accuracy": _accuracy(truth, pred),
            "macro_f1": macro_f1(truth, pred),
            "train_seconds": seconds,
            "C": c,
        }
        pred, best_epoch, seconds = fasttext_style(
            as_pair(train_ex), as_pair(val_ex), test_set.texts, seed=seeds[0] if seeds else 13
        )
        row["fasttext_style"] = {
            "accuracy": _accuracy(truth, pred),
            "macro_f1": macro_f1(truth, pred),
            "train_seconds": seconds,
            "best_epoch": best_epoch,
        }
    return row


def _pm(stat: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    if stat["sd"] == 0.0:
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['sd']:.{digits}f}"


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    seeds = meta["seeds"]
    lines = [
        "# Accuracy: default `textlstm-admin train` vs TF-IDF + LR and a fastText-style model",
        "",
        f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, "
        f"{meta['threads']} torch thread(s) per run. Command: `{meta['command']}`.",
        f"Overrides of the defaults: {meta['overrides'] or 'none (the shipped defaults)'}. "
        f"LSTM: mean ± sd over the seeds listed per row (of {seeds}); the baselines ran once.",
        "",
        "| dataset | seeds | LSTM acc | LSTM macro-F1 | TF-IDF acc | TF-IDF F1 | fastText acc "
        "| fastText F1 | LSTM train s | test ECE | predict texts/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lstm = r["lstm"]
        base, ft = r.get("tfidf_logreg"), r.get("fasttext_style")

        def cell(b: dict[str, Any] | None, key: str) -> str:
            return "–" if b is None else f"{100 * b[key]:.1f}"

        mine = (
            (
                _pm(lstm["accuracy"]),
                _pm(lstm["macro_f1"]),
                _pm(lstm["train_seconds"], 1.0, 0),
                _pm(lstm["test_ece"], 1.0, 3),
                f"{lstm['predict_texts_per_s']['mean']:,.0f}",
            )
            if lstm
            else ("–",) * 5
        )
        lines.append(
            f"| {r['dataset']} | {len(r['lstm_runs'])} | {mine[0]} | {mine[1]} | "
            f"{cell(base, 'accuracy')} | {cell(base, 'macro_f1')} | "
            f"{cell(ft, 'accuracy')} | {cell(ft, 'macro_f1')} | "
            f"{mine[2]} | {mine[3]} | {mine[4]} |"
        )
    labels = list(dict.fromkeys(k for r in rows for k in r.get("pretraining", {})))
    if labels:
        lines += [
            "",
            "Pretraining (`textlstm-admin pretrain`, then `train --init`): the classifier from "
            "the LM minus the plain one, accuracy / macro-F1 in points, same seed and run, and "
            "the pretraining's seconds:",
            "",
            "| dataset | " + " | ".join(f"LM on {label}" for label in labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for r in rows:
            cells = []
            for label in labels:
                gain = r.get("pretraining", {}).get(label)
                cells.append(
                    "–"
                    if gain is None
                    else f"{100 * gain['accuracy_gain']:+.1f} / {100 * gain['macro_f1_gain']:+.1f}"
                    f" ({gain['pretrain_seconds']:,.0f} s)"
                )
            lines.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    lines += ["", "Targets (LSTM mean at or above both baselines on accuracy and macro-F1):"]
    for r in rows:
        if "tfidf_logreg" not in r or not r["lstm"]:
            continue
        checks = []
        for key in ("accuracy", "macro_f1"):
            best = max(r["tfidf_logreg"][key], r["fasttext_style"][key])
            gap = 100 * (r["lstm"][key]["mean"] - best)
            checks.append(f"{key} {gap:+.2f} ({'met' if gap >= 0 else 'NOT met'})")
        lines.append(f"- {r['dataset']}: " + ", ".join(checks))
    lines += [
        "",
        "Train seconds include vocabulary, encoding, training, calibration; TF-IDF's includes "
        "its C search (C per dataset: "
        + ", ".join(
            f"{r['dataset']} {r['tfidf_logreg']['C']:g}" for r in rows if "tfidf_logreg" in r
        )
        + "). Test ECE is after temperature scaling, on the test split.",
        "",
        "Rows: train/validation/test sizes — "
        + "; ".join(
            f"{r['dataset']}: {r['train_rows']:,} train, {r['validation']}, {r['test_rows']:,} test"
            for r in rows
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def render_pretrain(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Pretraining "
        + (f"on {meta['corpus']}" if meta.get("corpus") else "on the dataset's own texts")
        + ": `train` vs `pretrain` + `train --init`",
        "",
        f"Measured {meta['date']} on {meta['machine']}, torch {meta['torch']}, "
        f"{meta['threads']} thread(s). Command: `{meta['command']}`.",
        f"Overrides of the defaults: {meta['overrides'] or 'none (the shipped defaults)'}; "
        f"of the LM's: {meta.get('lm_overrides') or 'none'}. Seeds {meta['seeds']} "
        "(mean ± sd where more than one). "
        + (
            f"One LM for every dataset: {meta['corpus']}."
            if meta.get("corpus")
            else "The LM is pretrained on the training texts only (labels dropped), so "
            "nothing outside the labelled data is used."
        ),
        "",
        "| dataset | seeds | LSTM acc | LSTM macro-F1 | +LM acc | +LM macro-F1 | TF-IDF acc "
        "| TF-IDF F1 | LSTM train s | pretrain s | +LM train s | LM val perplexity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        plain, pre, lm = r["lstm"], r.get("lstm_pretrained"), r.get("pretrain")
        base = r.get("tfidf_logreg")
        if pre is None or lm is None:
            continue
        tf = (
            ("–", "–")
            if base is None
            else tuple(f"{100 * base[k]:.1f}" for k in ("accuracy", "macro_f1"))
        )
        lines.append(
            f"| {r['dataset']} | {len(r['lstm_pretrained_runs'])} | {_pm(plain['accuracy'])} | "
            f"{_pm(plain['macro_f1'])} | "
            f"{_pm(pre['accuracy'])} | {_pm(pre['macro_f1'])} | {tf[0]} | {tf[1]} | "
            f"{_pm(plain['train_seconds'], 1.0, 0)} | {_pm(lm['seconds'], 1.0, 0)} | "
            f"{_pm(pre['train_seconds'], 1.0, 0)} | {_pm(lm['val_perplexity'], 1.0, 1)} |"
        )
    lines += ["", "Differences (+LM minus LSTM, points):"]
    for r in rows:
        if "lstm_pretrained" not in r:
            continue
        gaps = [
            f"{key} {100 * (r['lstm_pretrained'][key]['mean'] - r['lstm'][key]['mean']):+.1f}"
            for key in ("accuracy", "macro_f1")
        ]
        lines.append(f"- {r['dataset']}: " + ", ".join(gaps))
    lines += [
        "",
        "Train seconds include vocabulary, encoding, training and calibration; pretrain seconds "
        "the LM's vocabulary, windows, training and validation.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="the datasets' folder (required to run)")
    parser.add_argument("--datasets", default="ag_news_small,sst5,trec,emotion,imdb_10k")
    parser.add_argument("--seeds", default="13", help="comma-separated training seeds")
    parser.add_argument("--no-baselines", action="store_true", help="LSTM only (tuning runs)")
    parser.add_argument(
        "--baselines-only",
        action="store_true",
        help="the baselines alone (to --combine with LSTM runs made without them)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "accuracy")
    parser.add_argument(
        "--pretrain",
        choices=["own"],
        help="also pretrain an LM on each dataset's training texts and train from it",
    )
    parser.add_argument(
        "--lm-set", dest="lm_overrides", action="append", default=[], metavar="KEY=VALUE"
    )
    parser.add_argument(
        "--init-lm",
        type=Path,
        metavar="LM",
        help="also train every dataset from this LM bundle (textlstm-admin pretrain)",
    )
    parser.add_argument(
        "--corpus-note", default="", help="with --init-lm: what the LM was pretrained on"
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="only re-render: join the rows of earlier runs' JSON files into --out",
    )
    parser.add_argument(
        "--pretrain-table",
        action="store_true",
        help="with --combine: render the pretraining comparison of --pretrain/--init-lm runs",
    )
    parser.add_argument(
        "--pretrain-json",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="with --combine: a --pretrain/--init-lm run whose gains join the table as a column",
    )
    args = parser.parse_args()
    if args.combine:
        runs = [json.loads(path.read_text()) for path in args.combine]
        commands = dict.fromkeys(r["meta"]["command"] for r in runs)  # in order, no repeats
        meta = {**runs[0]["meta"], "command": " + ".join(commands)}
        meta["seeds"] = sorted({s for r in runs for s in r["meta"]["seeds"]})
        rows = merge_rows([row for r in runs for row in r["rows"]])
        if args.corpus_note:
            meta["corpus"] = args.corpus_note
        if not args.pretrain_table:
            # Runs made with --pretrain/--init-lm hold plain runs too: those count here; their
            # pretrained runs join only as gains (--pretrain-json), never as default runs.
            for row in rows:
                for key in ("lstm_pretrained_runs", "lstm_pretrained", "pretrain_runs", "pretrain"):
                    row.pop(key, None)
        for pair in args.pretrain_json:
            label, _, path = pair.partition("=")
            pretraining = json.loads(Path(path).read_text())
            attach_pretraining(rows, label, pretraining)
            meta["command"] += f" + pretraining ({label}): " + pretraining["meta"]["command"]
        write(args.out, rows, meta)
        return
    if args.data_dir is None:
        parser.error("--data-dir is required (unless --combine)")
    if args.init_lm and args.pretrain:
        parser.error("--pretrain own and --init-lm exclude each other")
    init, init_info = None, None
    if args.init_lm:
        init, init_info = load_language_model(args.init_lm), lm_info(args.init_lm)
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.overrides)
    seeds = [] if args.baselines_only else [int(s) for s in args.seeds.split(",")]
    if args.baselines_only and args.no_baselines:
        parser.error("--baselines-only and --no-baselines exclude each other")
    rows = []
    for name in args.datasets.split(","):
        row = run_dataset(
            args.data_dir / name,
            overrides,
            seeds,
            not args.no_baselines,
            pretrain=args.pretrain,
            lm_overrides=parse_overrides(args.lm_overrides),
            init=init,
            init_info=init_info,
        )
        lstm = row["lstm"]
        line = f"{name}: " + (
            f"LSTM acc {_pm(lstm['accuracy'])} F1 {_pm(lstm['macro_f1'])}" if lstm else "baselines"
        )
        for key in ("tfidf_logreg", "fasttext_style"):
            if key in row:
                line += f" | {key} acc {100 * row[key]['accuracy']:.1f} "
                line += f"F1 {100 * row[key]['macro_f1']:.1f} ({row[key]['train_seconds']:.0f}s)"
        print(line, flush=True)
        rows.append(row)
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} CPU, {__import__('os').cpu_count()} cores",
        "torch": torch.__version__,
        "threads": args.threads,
        "seeds": seeds,
        "overrides": overrides,
        "command": "python bench/accuracy.py --data-dir DATA"
        + (f" --datasets {args.datasets}" if args.pretrain or init else "")
        + (f" --seeds {args.seeds}" if args.seeds != "13" and not args.baselines_only else "")
        + (" --baselines-only" if args.baselines_only else "")
        + (f" --threads {args.threads}" if args.pretrain or init else "")
        + "".join(f" --set {p}" for p in args.overrides)
        + (f" --pretrain {args.pretrain}" if args.pretrain else "")
        + "".join(f" --lm-set {p}" for p in args.lm_overrides)
        + (" --init-lm LM" if init else ""),
        "lm_overrides": parse_overrides(args.lm_overrides),
    }
    if init is not None:
        meta["corpus"] = args.corpus_note or "the corpus the LM bundle records"
        meta["lm"] = {
            "digest": init.digest,
            **(init_info or {}),
            "training": init.config.get("training"),
        }
    write(args.out, rows, meta)


def merge_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset: seeds from several runs pooled, baselines from the run that had them."""
    merged: dict[str, dict[str, Any]] = {}
    pooled = ("lstm_runs", "lstm_pretrained_runs", "pretrain_runs")
    for row in rows:
        into = merged.setdefault(row["dataset"], {**row, **{k: [] for k in pooled if k in row}})
        for key in pooled:
            if key in row:
                # A seed measured in two runs counts once (the first's): on one machine the
                # runs repeat exactly, so the second adds nothing but weight.
                seen = {r.get("seed") for r in into.get(key, [])}
                into[key] = into.get(key, []) + [r for r in row[key] if r.get("seed") not in seen]
        into.update({k: v for k, v in row.items() if k in ("tfidf_logreg", "fasttext_style")})
    for row in merged.values():
        row["lstm"] = summary(row["lstm_runs"], LSTM_KEYS) if row["lstm_runs"] else {}
        if row.get("lstm_pretrained_runs"):
            row["lstm_pretrained"] = summary(row["lstm_pretrained_runs"], LSTM_KEYS)
            row["pretrain"] = summary(row["pretrain_runs"], ("seconds", "val_perplexity"))
    return list(merged.values())


def attach_pretraining(rows: list[dict[str, Any]], label: str, run: dict[str, Any]) -> None:
    """Each dataset's gain from pretraining, as that run measured it: the classifier from the
    LM minus the plain one, same seeds, same run; and the pretraining's seconds."""
    by_name = {r["dataset"]: r for r in run["rows"] if "lstm_pretrained" in r}
    for row in rows:
        theirs = by_name.get(row["dataset"])
        if theirs is None:
            continue
        row.setdefault("pretraining", {})[label] = {
            "seeds": [x["seed"] for x in theirs["lstm_pretrained_runs"]],
            **{
                f"{key}_gain": theirs["lstm_pretrained"][key]["mean"] - theirs["lstm"][key]["mean"]
                for key in ("accuracy", "macro_f1")
            },
            "pretrain_seconds": theirs["pretrain"]["seconds"]["mean"],
        }


def write(out: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    pretrained = any("lstm_pretrained" in r for r in rows)
    out.with_suffix(".md").write_text((render_pretrain if pretrained else render)(rows, meta))
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
