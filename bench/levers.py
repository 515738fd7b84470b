"""CPU inference levers, each measured in this process on one model and one set of texts:
length-bucketing window, threads vs processes, dynamic int8 quantization, batch size in texts
vs in tokens.

    python bench/levers.py [--repeats 5] [--n 40000] [--dataset trec] [--out bench/results/levers]
    python bench/levers.py --quick --out /tmp/levers      # seconds: the CI smoke test

The model is the reference serving shape (embedding 100, LSTM 128 unidirectional, pooling
last), trained once with `textlstm-admin train` on `<data-dir>/<dataset>/train.csv` into
runs/levers-<dataset> (reused when present); texts are the dataset's test split repeated to
`--n`, and its labels score the int8 model. `--quick` trains with `--dry-run` on
examples/data/news_train.csv into a temporary folder and uses news_test.csv repeated to 300.

Every configuration runs once to warm up, then `--repeats` times, round-robin with the other
configurations of its lever so that load from elsewhere spreads over all of them; the tables
give the median texts/s, the min–max over the repeats and the ratio of medians to the lever's
baseline from the same run. One intra-op thread (`torch.set_num_threads(1)`) unless the lever
is threads. Writes <out>.md and <out>.json (default bench/results/levers; with --quick
bench/results/levers_quick).
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textlstm.classifier.inference import batched_logits
from textlstm.classifier.length_buckets import bucketed_batches
from textlstm.classifier.predictor import Classifier
from textlstm.classifier.tokenizer import PAD_ID

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import CLI, REFERENCE_SHAPE, ROOT, shown  # noqa: E402 - a script

SAMPLE = ROOT / "examples" / "data"
SHAPE = {"embedding_dim": 100, "hidden_size": 128, "bidirectional": False, "pooling": "last"}
WINDOWS = (1, 4, 16, 64)
#: What batched_logits uses when not told (the window the results call "shipped").
DEFAULT_WINDOW = inspect.signature(batched_logits).parameters["window"].default
BATCH_SIZES = (32, 64, 128, 256, 512)
MAX_TOKENS = (2048, 4096, 8192, 16384)
PAYS = 1.05  # a setting "pays" when its median is >= 5% above the baseline's and it beat the
# baseline in every repeat (each repeat's baseline ran beside it); "marginal" when only the first.
ALLOWED_ACCURACY_LOSS = 0.5  # points, for int8


# -- model and texts -------------------------------------------------------------------------


def train_argv(data: Path, out: Path, *, dry_run: bool) -> list[str]:
    argv = [*CLI, "train", str(data), "--out", str(out), "--overwrite", "--epochs", "20",
            *REFERENCE_SHAPE, "--threads", "1", "--no-progress"]  # fmt: skip
    return argv + (["--dry-run"] if dry_run else [])


def has_shape(bundle: Path) -> bool:
    try:
        model = json.loads((bundle / "config.json").read_text())["model"]
    except (OSError, ValueError, KeyError):
        return False
    return all(model.get(k) == v for k, v in SHAPE.items()) and (bundle / "manifest.json").exists()


def ensure_bundle(data: Path, bundle: Path, *, dry_run: bool) -> tuple[Path, str, float | None]:
    """The bundle, the command that trained it, and its training seconds (None when cached)."""
    argv = train_argv(data, bundle, dry_run=dry_run)
    command = "textlstm-admin " + " ".join(argv[3:]).replace(str(ROOT) + os.sep, "")
    if has_shape(bundle):
        return bundle, command, None
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return bundle, command, time.perf_counter() - t0


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def repeat_to(base: Sequence[str], n: int) -> list[str]:
    return [base[i % len(base)] for i in range(max(n, len(base)))]


# -- timing ----------------------------------------------------------------------------------


def in_process(fn: Callable[[], object], threads: int = 1) -> Callable[[], float]:
    """Wrap `fn` to return its wall seconds, run with `threads` intra-op threads."""

    def run() -> float:
        torch.set_num_threads(threads)
        try:
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
        finally:
            torch.set_num_threads(1)

    return run


def measure(
    configs: dict[str, Callable[[], float]], n: int, repeats: int, warm: bool = True
) -> dict[str, list[float]]:
    """texts/s per repeat for each config; configs take turns within each repeat."""
    if warm:
        for fn in configs.values():
            fn()
    rates: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):
        for name, fn in configs.items():
            rates[name].append(n / fn())
    return rates


def summarize(
    rates: dict[str, list[float]], baseline: str, extra: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    base = statistics.median(rates[baseline])
    rows = []
    for name, runs in rates.items():
        med = statistics.median(runs)
        paired = [r / b for r, b in zip(runs, rates[baseline], strict=True)]
        rows.append(
            {
                "config": name,
                "median_texts_per_s": med,
                "min_texts_per_s": min(runs),
                "max_texts_per_s": max(runs),
                "runs_texts_per_s": runs,
                "ratio_vs_baseline": med / base,
                # the same repeat's baseline ran next to it: robust to drift in the machine's load
                "paired_ratio_min": min(paired),
                "paired_ratio_max": max(paired),
                **((extra or {}).get(name, {})),
            }
        )
    return {"baseline": baseline, "configs": rows}


def best_of(section: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(best row, baseline row, 'pays' | 'marginal' | 'does not pay')."""
    rows = {r["config"]: r for r in section["configs"]}
    base = rows[section["baseline"]]
    best = max(section["configs"], key=lambda r: r["median_texts_per_s"])
    if best is base or best["ratio_vs_baseline"] < PAYS:
        return best, base, "does not pay"
    if best["paired_ratio_min"] > 1.0:
        return best, base, "pays"
    return best, base, "marginal"


# -- lever 1: bucketing window ---------------------------------------------------------------


def fixed_length_logits(
    model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int, length: int
) -> torch.Tensor:
    """Input order, every batch right-padded to the same `length` (the naive batching)."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            ids = np.full((len(chunk), length), PAD_ID, dtype=np.int64)  # as pad_batch does
            for row, seq in enumerate(chunk):
                ids[row, : len(seq)] = seq
            lengths = torch.tensor([len(s) for s in chunk])
            out.append(model(torch.from_numpy(ids), lengths))
    return torch.cat(out)


def padding_stats(batches: list[list[int]], lengths: Sequence[int], pad_to: int | None = None):
    real = sum(lengths)
    padded = sum(len(b) * (pad_to or max(lengths[i] for i in b)) for b in batches)
    steps = sum(max(lengths[i] for i in b) for b in batches)  # LSTM time steps (packed)
    return {
        "batches": len(batches),
        "mean_batch": sum(map(len, batches)) / len(batches),
        "padded_over_real_tokens": padded / real,
        "lstm_steps": steps,
    }


def lever_window(clf: Classifier, texts: list[str], repeats: int) -> dict[str, Any]:
    seqs = [s for s in clf.encode(texts) if s]
    lengths = [len(s) for s in seqs]
    longest = max(lengths)
    model = clf.model
    configs: dict[str, Callable[[], float]] = {
        "fixed length, input order": in_process(
            lambda: fixed_length_logits(model, seqs, 128, longest)
        )
    }
    extra = {
        "fixed length, input order": padding_stats(
            bucketed_batches(lengths, 128, window=1), lengths, pad_to=longest
        )
    }
    for w in WINDOWS:
        name = f"window {w}"
        configs[name] = in_process(
            lambda w=w: batched_logits(model, seqs, batch_size=128, window=w)
        )
        extra[name] = padding_stats(bucketed_batches(lengths, 128, window=w), lengths)
    extra[f"window {DEFAULT_WINDOW}"]["note"] = "batched_logits default"
    section = summarize(measure(configs, len(seqs), repeats), "window 1", extra)
    section["what"] = (
        "batched_logits(model, ids, batch_size=128, window=W) on pre-encoded ids (tokenizing "
        "excluded); window W sorts W×128 texts by length before cutting batches. 'fixed "
        f"length' pads every batch of 128, in input order, to the longest text ({longest} "
        "tokens); the packed LSTM still runs only over each batch's longest real text."
    )
    section["mean_tokens"] = sum(lengths) / len(lengths)
    return section


# -- lever 2: threads vs processes -----------------------------------------------------------


def _process_worker(bundle: str, texts: list[str], barrier: Any, results: Any, rounds: int) -> None:
    torch.set_num_threads(1)
    clf = Classifier.load(bundle)
    clf.predict(texts, batch_size=128)  # warm-up: a full pass, as the in-process configs get
    barrier.wait()  # ready
    for _ in range(rounds):
        barrier.wait()  # common start
        t0 = time.monotonic()
        clf.predict(texts, batch_size=128)
        results.put((t0, time.monotonic()))


def lever_threads(clf: Classifier, bundle: Path, texts: list[str], repeats: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    results = ctx.Queue()
    half = len(texts) // 2
    parts = [texts[:half], texts[half:]]
    rounds = repeats + 1  # one warm-up round
    procs = [
        ctx.Process(
            target=_process_worker, args=(str(bundle), part, barrier, results, rounds), daemon=True
        )
        for part in parts
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    barrier.wait(timeout=300)  # both loaded and warm: nothing else competes from here on
    startup = time.perf_counter() - t0

    def two_processes() -> float:
        barrier.wait(timeout=300)
        spans = [results.get(timeout=300) for _ in procs]
        return max(end for _, end in spans) - min(start for start, _ in spans)

    def predict() -> None:
        clf.predict(texts, batch_size=128)

    configs = {
        "1 process × 1 thread": in_process(predict, threads=1),
        "1 process × 2 threads": in_process(predict, threads=2),
        "2 processes × 1 thread": two_processes,
    }
    try:
        rates = measure(configs, len(texts), repeats)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    section = summarize(rates, "1 process × 1 thread")
    section["what"] = (
        "Classifier.predict(texts, batch_size=128) on all texts: in this process with 1 or 2 "
        "intra-op threads, or split in halves over 2 spawned processes with 1 thread each "
        "(wall time from a common barrier to both done; loading and warm-up excluded, "
        f"{startup:.1f} s here)."
    )
    return section


# -- lever 3: dynamic int8 quantization ------------------------------------------------------


def serialized_bytes(model: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def quantize(model: nn.Module) -> tuple[nn.Module | None, dict[str, Any]]:
    info: dict[str, Any] = {"api": "torch.ao.quantization.quantize_dynamic"}
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as exc:
        info.update(available=False, error=f"{type(exc).__name__}: {exc}")
        return None, info
    info["available"] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            qmodel = quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)
        except Exception as exc:  # recorded; the lever then stays fp32
            qmodel, info["error"] = None, f"{type(exc).__name__}: {exc}"
    seen: dict[str, str] = {}
    for w in caught:
        seen.setdefault(str(w.message).strip().splitlines()[0], w.category.__name__)
    info["warnings"] = [f"{cat}: {msg}" for msg, cat in seen.items()]
    info["deprecated"] = any("deprecat" in m.lower() for m in seen)
    if qmodel is not None:
        info["quantized_modules"] = sorted(
            {
                f"{type(m).__module__.removeprefix('torch.ao.nn.')}.{type(m).__name__}"
                for m in qmodel.modules()
                if ".dynamic." in type(m).__module__
            }
        )
    return qmodel, info


def accuracy(clf: Classifier, texts: list[str], labels: list[str]) -> tuple[float, list[str]]:
    predicted = [p.label or "" for p in clf.predict(texts, batch_size=128)]
    return sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels), predicted


def lever_quantization(
    clf: Classifier, texts: list[str], test: tuple[list[str], list[str]], repeats: int
) -> dict[str, Any]:
    qmodel, info = quantize(clf.model)
    variants = {"fp32": clf}
    if qmodel is not None:
        try:
            qclf = Classifier(
                qmodel,
                clf.tokenizer,
                clf.labels,
                temperature=clf.temperature,
                max_length=clf.max_length,
            )
            qclf.predict(texts[:8])
            variants["int8 (LSTM + Linear)"] = qclf
        except Exception as exc:  # recorded; the lever then stays fp32
            info["error"] = f"running the int8 model: {type(exc).__name__}: {exc}"
    configs = {
        name: in_process(lambda c=c: c.predict(texts, batch_size=128))
        for name, c in variants.items()
    }
    extra: dict[str, dict[str, Any]] = {}
    test_texts, test_labels = test
    fp32_pred: list[str] = []
    for name, c in variants.items():
        acc, pred = accuracy(c, test_texts, test_labels)
        fp32_pred = fp32_pred or pred
        extra[name] = {
            "test_accuracy": acc,
            "agreement_with_fp32": sum(a == b for a, b in zip(pred, fp32_pred, strict=True))
            / len(pred),
            "state_dict_bytes": serialized_bytes(c.model),
        }
    fp32_probs = clf.predict_proba(test_texts)
    for name, c in variants.items():
        extra[name]["max_abs_prob_diff_vs_fp32"] = float(
            abs(c.predict_proba(test_texts) - fp32_probs).max()
        )
    section = summarize(measure(configs, len(texts), repeats), "fp32", extra)
    section["quantize_dynamic"] = info
    section["test_rows"] = len(test_labels)
    section["embedding"] = (
        "not quantized: nn.Embedding is a row gather with no matmul for dynamic quantization "
        "to speed up (it needs a separate weight-only qconfig that only shrinks the table)"
    )
    section["what"] = (
        "Classifier.predict(texts, batch_size=128) with the fp32 model vs "
        "quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8); accuracy on the "
        "test split with both."
    )
    return section


# -- lever 4: batch size in texts vs tokens --------------------------------------------------


def lever_batch(clf: Classifier, texts: list[str], repeats: int) -> dict[str, Any]:
    lengths = [len(s) for s in clf.encode(texts) if s]
    configs: dict[str, Callable[[], float]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for b in BATCH_SIZES:
        name = f"batch_size={b}"
        configs[name] = in_process(lambda b=b: clf.predict(texts, batch_size=b))
        extra[name] = padding_stats(bucketed_batches(lengths, b, window=16), lengths)
    for t in MAX_TOKENS:
        name = f"max_tokens={t}"
        configs[name] = in_process(lambda t=t: clf.predict(texts, batch_size=10_000, max_tokens=t))
        extra[name] = padding_stats(
            bucketed_batches(lengths, 10_000, window=16, max_tokens=t), lengths
        )
    extra["batch_size=128"]["note"] = "Classifier.predict default"
    section = summarize(measure(configs, len(texts), repeats), "batch_size=128", extra)
    section["what"] = (
        "Classifier.predict(texts, batch_size=B) (window 16: sorts 16·B texts at a time) vs "
        "predict(texts, batch_size=10_000, max_tokens=T) (sorts everything, cuts batches at T "
        "padded tokens)."
    )
    return section


# -- report ----------------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def table(
    section: dict[str, Any], columns: list[tuple[str, str, Callable[[Any], str]]]
) -> list[str]:
    head = "| config | texts/s (median) | min–max | × baseline | × per repeat |"
    rule = "|---|---:|---:|---:|---:|"
    for title, _, _ in columns:
        head += f" {title} |"
        rule += "---:|"
    lines = [head, rule]
    for r in section["configs"]:
        notes = (["baseline"] if r["config"] == section["baseline"] else []) + (
            [r["note"]] if r.get("note") else []
        )
        mark = f" ({'; '.join(notes)})" if notes else ""
        line = (
            f"| {r['config']}{mark} | {fmt_rate(r['median_texts_per_s'])} | "
            f"{fmt_rate(r['min_texts_per_s'])}–{fmt_rate(r['max_texts_per_s'])} | "
            f"{r['ratio_vs_baseline']:.2f} | "
            f"{r['paired_ratio_min']:.2f}–{r['paired_ratio_max']:.2f} |"
        )
        for _, key, f in columns:
            line += f" {f(r[key]) if key in r else '—'} |"
        lines.append(line)
    return lines


def verdicts(levers: dict[str, dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}

    def line(key: str, what: str) -> str:
        best, base, word = best_of(levers[key])
        gain = f"{best['ratio_vs_baseline']:.2f}×"
        rng = (
            f"{fmt_rate(best['min_texts_per_s'])}–{fmt_rate(best['max_texts_per_s'])} vs "
            f"{fmt_rate(base['min_texts_per_s'])}–{fmt_rate(base['max_texts_per_s'])}; per "
            f"repeat {best['paired_ratio_min']:.2f}–{best['paired_ratio_max']:.2f}×"
        )
        if word == "does not pay":
            runner = max(
                (r for r in levers[key]["configs"] if r is not base),
                key=lambda r: r["median_texts_per_s"],
            )
            return (
                f"{what}: does not pay. Nothing beats {base['config']} "
                f"({fmt_rate(base['median_texts_per_s'])} texts/s) by {PAYS - 1:.0%}; the best "
                f"other setting, {runner['config']}, is {runner['ratio_vs_baseline']:.2f}×."
            )
        return (
            f"{what}: {best['config']} {word} — {fmt_rate(best['median_texts_per_s'])} vs "
            f"{fmt_rate(base['median_texts_per_s'])} texts/s for {base['config']}, {gain} "
            f"(ranges {rng})."
        )

    out["bucketing_window"] = line("bucketing_window", "Bucketing window")
    w = {r["config"]: r for r in levers["bucketing_window"]["configs"]}
    if "fixed length, input order" in w:
        out["bucketing_window"] += (
            f" The shipped window {DEFAULT_WINDOW} runs at "
            f"{w[f'window {DEFAULT_WINDOW}']['ratio_vs_baseline']:.2f}× window 1; "
            "fixed-length padding in input order at "
            f"{w['fixed length, input order']['ratio_vs_baseline']:.2f}×."
        )
    out["threads_vs_processes"] = line("threads_vs_processes", "Threads vs processes")
    t = {r["config"]: r for r in levers["threads_vs_processes"]["configs"]}
    out["threads_vs_processes"] += (
        f" 1×2 threads: {t['1 process × 2 threads']['ratio_vs_baseline']:.2f}×; "
        f"2×1 processes: {t['2 processes × 1 thread']['ratio_vs_baseline']:.2f}×."
    )
    q = levers["quantization"]
    rows = {r["config"]: r for r in q["configs"]}
    if "int8 (LSTM + Linear)" not in rows:
        out["quantization"] = (
            f"int8: not measured ({q['quantize_dynamic'].get('error', 'unavailable')}); fp32 kept."
        )
    else:
        i8, f32 = rows["int8 (LSTM + Linear)"], rows["fp32"]
        loss = round(100 * (f32["test_accuracy"] - i8["test_accuracy"]), 1) + 0.0
        ok = loss <= ALLOWED_ACCURACY_LOSS
        _, _, word = best_of(q)
        speed = i8["ratio_vs_baseline"]
        if not ok:
            word = "does not pay (accuracy)"
        elif word != "pays":
            word = (
                "does not pay (speed)" if speed < PAYS else "marginal (not faster in every repeat)"
            )
        out["quantization"] = (
            f"int8 dynamic quantization: {word} — {speed:.2f}× fp32 "
            f"({fmt_rate(i8['median_texts_per_s'])} vs {fmt_rate(f32['median_texts_per_s'])} "
            f"texts/s), test accuracy {100 * i8['test_accuracy']:.1f} vs "
            f"{100 * f32['test_accuracy']:.1f} ({0.0 - loss:+.1f} points; allowed −"
            f"{ALLOWED_ACCURACY_LOSS} point), {100 * i8['agreement_with_fp32']:.1f}% of labels "
            f"unchanged, weights {i8['state_dict_bytes'] / 1e6:.1f} MB vs "
            f"{f32['state_dict_bytes'] / 1e6:.1f} MB."
            + (
                " The API is deprecated in this torch."
                if q["quantize_dynamic"]["deprecated"]
                else ""
            )
        )
    out["batch_size"] = line("batch_size", "Batch size")
    b = levers["batch_size"]["configs"]
    texts_best = max((r for r in b if r["config"].startswith("batch")), key=_med)
    tok_best = max((r for r in b if r["config"].startswith("max_tokens")), key=_med)
    out["batch_size"] += (
        f" Best in texts: {texts_best['config']} ({texts_best['ratio_vs_baseline']:.2f}×); "
        f"best in tokens: {tok_best['config']} ({tok_best['ratio_vs_baseline']:.2f}×)."
    )
    twin = min(
        (r for r in b if r["config"].startswith("batch") and "mean_batch" in r),
        key=lambda r: abs(r["mean_batch"] - tok_best.get("mean_batch", 0)),
    )
    if "lstm_steps" in tok_best and "lstm_steps" in twin:
        out["batch_size"] += (
            f" {tok_best['config']} forms batches of {tok_best['mean_batch']:.0f} texts on "
            f"average, like {twin['config']} ({twin['ratio_vs_baseline']:.2f}×, "
            f"{twin['lstm_steps']:,} vs {tok_best['lstm_steps']:,} LSTM steps, padded/real "
            f"{twin['padded_over_real_tokens']:.2f} vs {tok_best['padded_over_real_tokens']:.2f}): "
            "with batch_size=10_000 it also sorts the whole input at once (window 16 × 10,000) "
            "and sizes batches by length (many short texts, few long ones), and that, not the "
            "mean batch size, is where the gain comes from."
        )
    return out


def _med(r: dict[str, Any]) -> float:
    return float(r["median_texts_per_s"])


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def ratio(x: float) -> str:
    return f"{x:.2f}"


def count(x: int) -> str:
    return f"{x:,}"


def one(x: float) -> str:
    return f"{x:.1f}"


def render(meta: dict[str, Any], levers: dict[str, dict[str, Any]], verdict: dict[str, str]) -> str:
    lines = [
        "# CPU inference levers (in-process)",
        "",
        f"Measured {meta['date']} on {meta['machine']} ({meta['cpu_count']} CPUs, "
        f"{meta['cpus_usable']} usable), Python {meta['python']}, torch {meta['torch']}; "
        f"intra-op threads {meta['threads']} (interop {meta['interop_threads']}, "
        f"OMP_NUM_THREADS={meta['omp_num_threads']}) unless the lever is threads. "
        f"Load average {meta['loadavg_start']} at the start, {meta['loadavg_end']} at the end; "
        f"run took {meta['seconds']:.0f} s. Other benchmarks seen running meanwhile "
        f"(pgrep every 10 s): {', '.join(meta['other_benchmarks_seen']) or 'none'}.",
        "",
        f"Command: `{meta['command']}`. Median of {meta['repeats']} repeat(s) after one warm-up "
        "per configuration, configurations of a lever taking turns within each repeat; "
        "min–max over the repeats; × baseline is the ratio of medians to the lever's baseline "
        "from this run, × per repeat the range of each repeat's ratio to its own baseline run.",
        "",
        f"Model: {meta['model']['shape']}, vocabulary {meta['model']['vocab_size']:,}, "
        f"{meta['model']['num_classes']} classes, trained by `{meta['model']['command']}` "
        f"({meta['model']['trained']}). Texts: {meta['texts']['source']} "
        f"({meta['texts']['unique']:,} texts, mean {meta['texts']['mean_tokens']:.1f} tokens) "
        f"repeated to {meta['texts']['n']:,}. Levers that cut padding or LSTM steps depend on "
        "text length: these numbers hold for texts of about this length.",
        "",
        "## 1. Length-bucketing window (batch 128)",
        "",
        levers["bucketing_window"]["what"],
        "",
        *table(
            levers["bucketing_window"],
            [
                ("padded / real tokens", "padded_over_real_tokens", ratio),
                ("LSTM steps", "lstm_steps", count),
            ],
        ),
        "",
        "## 2. Threads vs processes",
        "",
        levers["threads_vs_processes"]["what"],
        "",
        *table(levers["threads_vs_processes"], []),
        "",
        "## 3. Dynamic int8 quantization",
        "",
        levers["quantization"]["what"],
        "",
    ]
    q = levers["quantization"]
    info = q["quantize_dynamic"]
    lines.append(
        f"`{info['api']}`: {'present' if info['available'] else 'missing'} in torch "
        f"{meta['torch']}"
        + (
            f"; quantized modules: {', '.join(info.get('quantized_modules', []))}"
            if info.get("quantized_modules")
            else ""
        )
        + (f"; error: {info['error']}" if info.get("error") else "")
        + "."
    )
    if info.get("warnings"):
        lines += ["", "Warnings it raised:", ""] + [f"- {w}" for w in info["warnings"]]
    lines += [
        "",
        *table(
            q,
            [
                (f"test accuracy % ({q['test_rows']} rows)", "test_accuracy", pct),
                ("labels = fp32 %", "agreement_with_fp32", pct),
                ("max |Δp|", "max_abs_prob_diff_vs_fp32", lambda x: f"{x:.3f}"),
                ("weights MB", "state_dict_bytes", lambda x: f"{x / 1e6:.2f}"),
            ],
        ),
        "",
        f"Embedding: {q['embedding']}.",
        "",
        "## 4. Batch size in texts vs in tokens",
        "",
        levers["batch_size"]["what"],
        "",
        *table(
            levers["batch_size"],
            [
                ("batches", "batches", count),
                ("mean batch", "mean_batch", one),
                ("padded / real tokens", "padded_over_real_tokens", ratio),
                ("LSTM steps", "lstm_steps", count),
            ],
        ),
        "",
        "## Verdict",
        "",
        f"A setting pays when its median is ≥ {PAYS - 1:.0%} above the baseline's and it beat "
        "the baseline in every repeat (× per repeat: each repeat against the baseline run next "
        "to it, min–max); 'marginal' when only the first holds.",
        "",
        *[f"- {v}" for v in verdict.values()],
    ]
    return "\n".join(lines) + "\n"


# -- main ------------------------------------------------------------------------------------


def watch_benchmarks(stop: threading.Event, seen: set[str]) -> None:
    """Note any other benchmark (bench/soak.py, bench/pipeline.py) running during this one."""
    while True:
        try:
            found = subprocess.run(
                ["pgrep", "-af", "python.* bench/(soak|pipeline)"], capture_output=True, text=True
            ).stdout
        except OSError:
            return
        seen.update(line.split(" ", 1)[-1] for line in found.splitlines())
        if stop.wait(10):
            return


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few hundred texts, 1 repeat, seconds")
    p.add_argument("--repeats", type=int, default=None, help="default 5 (1 with --quick)")
    p.add_argument("--n", type=int, default=None, help="texts timed (default 40000, 300 quick)")
    p.add_argument("--dataset", default="trec")
    p.add_argument("--data-dir", type=Path, help="the datasets' folder (needed without --quick)")
    p.add_argument("--out", type=Path, default=None, help="stem (default bench/results/levers)")
    args = p.parse_args()
    if not args.quick and args.data_dir is None:
        p.error("--data-dir is required without --quick (the folder of the benchmark datasets)")
    repeats = args.repeats or (1 if args.quick else 5)
    n = args.n or (300 if args.quick else 40_000)
    out = args.out or ROOT / "bench" / "results" / ("levers_quick" if args.quick else "levers")
    started = time.perf_counter()
    loadavg_start = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    torch.set_num_threads(1)
    others: set[str] = set()
    stop = threading.Event()
    watcher = threading.Thread(target=watch_benchmarks, args=(stop, others), daemon=True)
    watcher.start()

    with tempfile.TemporaryDirectory(prefix="textlstm-levers-") as tmp:
        if args.quick:
            train_csv, test_csv = SAMPLE / "news_train.csv", SAMPLE / "news_test.csv"
            bundle_dir = Path(tmp) / "model"
        else:
            train_csv = args.data_dir / args.dataset / "train.csv"
            test_csv = args.data_dir / args.dataset / "test.csv"
            bundle_dir = ROOT / "runs" / f"levers-{args.dataset}"
        bundle, train_cmd, train_s = ensure_bundle(train_csv, bundle_dir, dry_run=args.quick)
        clf = Classifier.load(bundle)
        test = read_labelled(test_csv)
        texts = repeat_to(test[0], n)
        print(f"model {bundle} loaded; {len(texts)} texts", flush=True)

        levers: dict[str, dict[str, Any]] = {}
        levers["bucketing_window"] = lever_window(clf, texts, repeats)
        print("bucketing window done", flush=True)
        levers["threads_vs_processes"] = lever_threads(clf, bundle, texts, repeats)
        print("threads vs processes done", flush=True)
        levers["quantization"] = lever_quantization(clf, texts, test, repeats)
        print("quantization done", flush=True)
        levers["batch_size"] = lever_batch(clf, texts, repeats)
        print("batch size done", flush=True)

    stop.set()
    watcher.join(timeout=30)
    verdict = verdicts(levers)
    cfg = clf.model.config
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()} {cpu_name()}",
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": 1,
        "interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "loadavg_start": loadavg_start,
        "loadavg_end": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "other_benchmarks_seen": sorted(others),
        "repeats": repeats,
        "quick": args.quick,
        "command": "python bench/levers.py"
        + (" --quick" if args.quick else " --data-dir DATA")
        + (f" --repeats {args.repeats}" if args.repeats else "")
        + (f" --n {args.n}" if args.n else ""),
        "model": {
            "shape": (
                f"embedding {cfg.embedding_dim}, LSTM hidden {cfg.hidden_size} "
                f"{'bidirectional' if cfg.bidirectional else 'unidirectional'}, "
                f"{cfg.num_layers} layer(s), pooling {cfg.pooling}"
            ),
            "vocab_size": cfg.vocab_size,
            "num_classes": cfg.num_classes,
            "bundle": shown(bundle) if not args.quick else "(temporary)",
            "command": train_cmd.replace(tmp + os.sep, ""),
            "trained": "cached bundle, trained earlier"
            if train_s is None
            else f"trained in this run, {train_s:.0f} s",
        },
        "texts": {
            "source": shown(test_csv),
            "unique": len(test[0]),
            "n": len(texts),
            "mean_tokens": levers["bucketing_window"]["mean_tokens"],
        },
    }
    report = {"meta": meta, "levers": levers, "verdict": verdict}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(meta, levers, verdict))
    print("\n".join(verdict.values()))
    print(f"wrote {out.with_suffix('.md')} ({meta['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
