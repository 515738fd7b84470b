"""GPU ceiling and pipeline throughput in one run: in-process `Classifier.predict` and forward-only
(`batched_logits` on pre-tokenized ids) over batch sizes up to 4,096 in fp32 and under autocast
bf16/fp16 (cuDNN LSTM), their parity with fp32, and the real worker pipeline
(`bench/gpu_check.py`) on the same model, with the pipeline / ceiling ratios.

    python bench/pipeline_gpu.py [--device cuda] [--require-gpu] [--quick] [--n 50000]
        [--bundle runs/pipeline-gpu-model] [--texts CSV] [--out bench/results/pipeline-gpu]

Without CUDA it prints one line saying so and runs everything on the CPU (fp32 and bf16 only),
writing bench/results/pipeline-gpu_cpu.{json,md} so that a CPU run never overwrites GPU results;
with `--require-gpu` it exits 1 instead. The model is the reference shape (embedding
100 → LSTM 128 unidirectional, last-state pooling), trained once for one epoch into
runs/pipeline-gpu-model; texts are examples/data/news_test.csv repeated to --n.

1. Ceiling sweep: batch sizes 32 … 4,096 × precision. Each config is warmed up on 2 batches,
   then timed 3 times over all --n texts (CUDA synchronized before each clock stops); median,
   min and max texts/s, and peak `torch.cuda.max_memory_allocated`. A precision that raises is
   skipped with the reason. The LSTM's output dtype is recorded, since autocast may leave it in
   fp32 (CPU autocast does not cover nn.LSTM).
2. Parity: max |Δp| and label agreement of each reduced precision against fp32 on 500 texts
   (and, on CUDA, of fp32 on the GPU against fp32 on the CPU).
3. Pipeline: `bench/gpu_check.py --device <dev> --n <n>` as a subprocess on the same bundle (a
   real Redis, SQLite, `textlstm-admin worker`): texts/s and mean formed batch. The worker calls
   `Classifier.predict` without autocast, so the pipeline is fp32. On CUDA it also runs with
   bigger worker micro-batches (`TEXTLSTM_WORKER_BATCH_MAX_ITEMS`, `--pipeline-max-items`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import (  # noqa: E402 - runnable as a script
    REFERENCE_SHAPE,
    ROOT,
    repeated_texts,
    shown,
    train_once,
)

DEFAULT_BUNDLE = ROOT / "runs" / "pipeline-gpu-model"
DEFAULT_TEXTS = ROOT / "examples" / "data" / "news_test.csv"
RESULTS = ROOT / "bench" / "results"
ADMIN = [sys.executable, "-c", "from textlstm.cli import cli; cli()"]
BATCH_SIZES = (32, 128, 512, 1024, 2048, 4096)
QUICK_BATCH_SIZES = (32, 128)
PRECISIONS = ("fp32", "bf16", "fp16")
PARITY_TEXTS = 500
QUICK_N = 300
# gpu_check.py trains and registers runs/news-sample; this runs it on our bundle instead, so the
# pipeline and the ceiling use the same model (gpu_check.py itself is unchanged).
GPU_CHECK = (
    "import sys; from pathlib import Path; sys.path.insert(0, {bench!r}); import gpu_check; "
    "gpu_check.BUNDLE = Path(sys.argv.pop(1)); sys.argv[0] = {script!r}; gpu_check.main()"
)


# -- setup ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu [default: cuda]")
    p.add_argument("--require-gpu", action="store_true", help="exit 1 when CUDA is missing")
    p.add_argument("--quick", action="store_true", help="tiny sweep and pipeline: a smoke test")
    p.add_argument("--n", type=int, default=None, help="texts per timed run [50,000; CPU 2,000]")
    p.add_argument("--bundle", type=Path, default=None, help=f"[default: {DEFAULT_BUNDLE}]")
    p.add_argument("--texts", type=Path, default=DEFAULT_TEXTS, help="CSV with a text column")
    p.add_argument("--out", type=Path, default=None, help="output stem [bench/results/...]")
    p.add_argument("--batch-sizes", default=None, help="comma list [32,...,4096; quick 32,128]")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads in this process")
    p.add_argument("--processes", type=int, default=0, help="worker processes (0: gpu_check's)")
    p.add_argument(
        "--pipeline-max-items",
        default=None,
        help="worker micro-batch sizes to run the pipeline with, comma list; 0 = the worker's "
        "default [CUDA: 0,1024; CPU and --quick: 0]",
    )
    p.add_argument("--broker", default=None, help="Redis URL [default: TEXTLSTM_BROKER_URL]")
    p.add_argument(
        "--budget-s", type=float, default=330, help="start no sweep config or extra pipeline after"
    )
    p.add_argument("--no-pipeline", action="store_true", help="skip the worker pipeline")
    return p.parse_args(argv)


def pick_device(requested: str, require_gpu: bool) -> tuple[str, bool]:
    """(device to use, fell back to CPU)."""
    import torch

    if not requested.startswith("cuda"):
        return requested, False
    if torch.cuda.is_available():
        return requested, False
    why = f"CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda})"
    if require_gpu:
        sys.exit(f"{why} and --require-gpu was given")
    print(f"{why}: falling back to --device cpu", flush=True)
    return "cpu", True


def ensure_bundle(path: Path, device: str) -> Path:
    if not (path / "manifest.json").exists():
        print("training", shown(path), flush=True)
    return train_once(
        path, ROOT / "examples/data/news_train.csv", *REFERENCE_SHAPE, "--epochs", "1",
        "--seed", "1", "--no-progress", "--device", "cpu" if device == "cpu" else "auto",
    )  # fmt: skip


def device_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version(),
        "cudnn_enabled": bool(torch.backends.cudnn.enabled),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpu": None,
    }
    if device.startswith("cuda"):
        d = torch.device(device)
        props = torch.cuda.get_device_properties(d)
        info.update(
            gpu=torch.cuda.get_device_name(d),
            gpu_memory_mb=round(props.total_memory / 2**20),
            gpu_capability=f"{props.major}.{props.minor}",
            bf16_supported=bool(torch.cuda.is_bf16_supported()),
        )
    return info


# -- timing --------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def lstm_dtype_probe(model: Any, seen: set[str]) -> Iterator[None]:
    """Records the dtype nn.LSTM's final state comes out in (what autocast really ran)."""

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        seen.add(str(output[1][0].dtype).removeprefix("torch."))

    handle = model.lstm.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def timed(fn: Callable[[], Any], device: str, repeats: int, n: int) -> dict[str, Any]:
    rates, seconds = [], []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        s = time.perf_counter() - t0
        seconds.append(s)
        rates.append(n / max(s, 1e-9))
    return {
        "median_texts_per_s": round(statistics.median(rates), 1),
        "min_texts_per_s": round(min(rates), 1),
        "max_texts_per_s": round(max(rates), 1),
        "median_s": round(statistics.median(seconds), 4),
    }


def peak_mb(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    return round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(torch.device(device))


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# -- 1. ceiling sweep ----------------------------------------------------------------------------


def sweep(
    clf: Any,
    texts: list[str],
    device: str,
    precisions: Sequence[str],
    batch_sizes: Sequence[int],
    repeats: int,
    deadline: float,
    out: dict[str, Any],
) -> None:
    """Fills `out` (precision → entry) as it goes, so an interrupted run keeps what it measured."""
    from textlstm.classifier.inference import batched_logits

    sequences = [s for s in clf.encode(texts) if s]
    for precision in precisions:
        entry: dict[str, Any] = {"available": True, "error": None, "lstm_dtype": None, "rows": []}
        out[precision] = entry
        seen: set[str] = set()
        try:  # one tiny forward pass: a precision the device cannot run is skipped here
            with autocast(device, precision), lstm_dtype_probe(clf.model, seen):
                clf.predict(texts[:8], batch_size=8)
            synchronize(device)
        except Exception as exc:  # noqa: BLE001 - record why and go on with the others
            entry.update(available=False, error=first_line(exc))
            print(f"  {precision}: skipped ({entry['error']})", flush=True)
            continue
        entry["lstm_dtype"] = ",".join(sorted(seen))
        for bs in batch_sizes:
            row: dict[str, Any] = {"batch_size": bs}
            entry["rows"].append(row)
            if time.monotonic() > deadline:
                row["skipped"] = "time budget (--budget-s) spent"
                continue
            try:
                with autocast(device, precision):
                    warm = texts[: min(len(texts), 2 * bs)]
                    clf.predict(warm, batch_size=bs)
                    batched_logits(clf.model, sequences[: len(warm)], batch_size=bs, device=device)
                    synchronize(device)
                    reset_peak(device)
                    row["predict"] = timed(
                        lambda bs=bs: clf.predict(texts, batch_size=bs), device, repeats, len(texts)
                    )
                    row["forward"] = timed(
                        lambda bs=bs: batched_logits(
                            clf.model, sequences, batch_size=bs, device=device
                        ),
                        device,
                        repeats,
                        len(sequences),
                    )
                row["peak_mb"] = peak_mb(device)
                p_s, f_s = row["predict"]["median_s"], row["forward"]["median_s"]
                row["non_forward_share"] = round(max(0.0, 1 - f_s / max(p_s, 1e-9)), 3)
            except Exception as exc:  # noqa: BLE001 - e.g. out of memory at one batch size
                row["error"] = first_line(exc)
            print(
                f"  {precision} batch {bs}: predict "
                f"{row.get('predict', {}).get('median_texts_per_s', '-')} texts/s, forward "
                f"{row.get('forward', {}).get('median_texts_per_s', '-')} texts/s"
                + (f" ({row['error']})" if "error" in row else ""),
                flush=True,
            )


def best(sweep_out: dict[str, Any], precisions: Sequence[str], kind: str) -> dict[str, Any] | None:
    rows = [
        (precision, r)
        for precision in precisions
        for r in sweep_out.get(precision, {}).get("rows", [])
        if kind in r
    ]
    if not rows:
        return None
    precision, r = max(rows, key=lambda pr: pr[1][kind]["median_texts_per_s"])
    return {
        "precision": precision,
        "batch_size": r["batch_size"],
        "texts_per_s": r[kind]["median_texts_per_s"],
    }


def at_batch(sweep_out: dict[str, Any], precision: str, bs: int, kind: str) -> float | None:
    for r in sweep_out.get(precision, {}).get("rows", []):
        if r["batch_size"] == bs and kind in r:
            return float(r[kind]["median_texts_per_s"])
    return None


# -- 2. parity -----------------------------------------------------------------------------------


def parity(
    clf: Any, texts: list[str], device: str, precisions: Sequence[str], bundle: Path
) -> dict[str, Any]:
    import numpy as np

    from textlstm.classifier.predictor import Classifier

    texts = texts[:PARITY_TEXTS]
    ref = clf.predict_proba(texts, batch_size=128)
    ok = ~np.isnan(ref).any(axis=1)

    def compare(other: Any) -> dict[str, Any]:
        return {
            "max_abs_prob_diff": float(np.abs(other[ok] - ref[ok]).max()),
            "label_agreement_pct": round(
                100.0 * float((other[ok].argmax(1) == ref[ok].argmax(1)).mean()), 2
            ),
        }

    out: dict[str, Any] = {"texts": int(ok.sum()), "batch_size": 128, "vs_fp32": {}}
    for precision in precisions:
        if precision == "fp32":
            continue
        try:
            with autocast(device, precision):
                out["vs_fp32"][precision] = compare(clf.predict_proba(texts, batch_size=128))
        except Exception as exc:  # noqa: BLE001
            out["vs_fp32"][precision] = {"error": first_line(exc)}
    if device != "cpu":
        cpu = Classifier.load(bundle, device="cpu").predict_proba(texts, batch_size=128)
        out["fp32_device_vs_cpu"] = compare(cpu)
    return out


# -- 3. pipeline (bench/gpu_check.py) ------------------------------------------------------------


def run_interruptible(
    cmd: list[str], env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Like subprocess.run, but on timeout sends SIGINT first, so gpu_check.py's `finally`
    stops the worker and Redis it started (SIGKILL would leave them running)."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except KeyboardInterrupt:  # the child got the same SIGINT: let it stop what it started
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
        raise
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        stderr += f"\ngpu_check.py stopped after {timeout:.0f} s"
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def run_pipeline(
    args: argparse.Namespace,
    device: str,
    bundle: Path,
    n: int,
    max_items: int,
    timeout: float,
) -> dict[str, Any]:
    script = ROOT / "bench" / "gpu_check.py"
    with tempfile.TemporaryDirectory(prefix="textlstm-pipeline-gpu-") as tmp:
        out_json = Path(tmp) / "gpu_check.json"
        argv = [
            "--device",
            device,
            "--n",
            str(n),
            "--processes",
            str(args.processes),
            "--out",
            str(out_json),
            "--timeout",
            str(max(60, min(400, n / 50))),
        ]
        if args.broker:
            argv += ["--broker", args.broker]
        code = GPU_CHECK.format(bench=str(ROOT / "bench"), script=str(script))
        env = dict(os.environ)
        if max_items:
            env["TEXTLSTM_WORKER_BATCH_MAX_ITEMS"] = str(max_items)
            tokens = int(env.get("TEXTLSTM_WORKER_BATCH_MAX_TOKENS", "16384"))
            env["TEXTLSTM_WORKER_BATCH_MAX_TOKENS"] = str(max(tokens, 128 * max_items))
        t0 = time.monotonic()
        proc = run_interruptible(
            [sys.executable, "-c", code, str(bundle), *argv], env=env, timeout=timeout
        )
        result: dict[str, Any] = {
            "command": "python bench/gpu_check.py " + shlex.join(argv[:6]),
            "worker_batch_max_items": max_items or worker_default("worker_batch_max_items"),
            "returncode": proc.returncode,
            "wall_s": round(time.monotonic() - t0, 1),
        }
        if out_json.exists():
            summary = json.loads(out_json.read_text())
            jobs = summary.get("jobs", [])
            result.update(
                texts_per_s=jobs[0]["texts_per_s"] if jobs else None,
                # a window under 0.1 s (one or two commits, e.g. in --quick) gives no rate
                one_text_messages_texts_per_s=(
                    jobs[1]["texts_per_s"] if len(jobs) > 1 and jobs[1]["seconds"] >= 0.1 else None
                ),
                mean_batch=summary.get("mean_batch"),
                batches=summary.get("batches"),
                device_used=summary.get("device_used"),
                parity_labels_equal=summary.get("parity_labels_equal"),
                parity_max_abs_prob_diff=summary.get("parity_max_abs_prob_diff"),
                gpu_check=summary,
            )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            result["error"] = " | ".join(tail)[-600:]
    print(
        f"  pipeline (max items {result['worker_batch_max_items']}): "
        f"{result.get('texts_per_s')} texts/s, mean batch {result.get('mean_batch')}"
        + (f", gpu_check exited {proc.returncode}" if proc.returncode else ""),
        flush=True,
    )
    return result


def worker_default(field: str) -> Any:
    from textlstm.settings import get_settings

    return getattr(get_settings(), field)


# -- report --------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def fmt(x: Any, nd: int = 0) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def sci(x: float | None) -> str:
    return "–" if x is None else f"{x:.1e}"


def rate(cell: dict[str, Any] | None) -> str:
    if not cell:
        return "–"
    return (
        f"{cell['median_texts_per_s']:,.0f} "
        f"({cell['min_texts_per_s']:,.0f}–{cell['max_texts_per_s']:,.0f})"
    )


def render_md(report: dict[str, Any]) -> str:
    info, cfg = report["device_info"], report["config"]
    lines = [
        "# GPU ceiling and pipeline throughput",
        "",
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']} · wall time {report['wall_s']:.0f} s · "
        f"{cfg['n']:,} texts per timed run (examples/data/news_test.csv repeated) · "
        f"{cfg['repeats']} repeats, median (min–max)",
        "",
    ]
    if report["fell_back_to_cpu"]:
        lines += [
            f"**CUDA was not available: this is the CPU fallback** (requested "
            f"`--device {report['device_requested']}`). CPU autocast does not cover nn.LSTM, so "
            "the bf16 rows run the LSTM in fp32 (see the LSTM dtype); they are no GPU numbers.",
            "",
        ]
    if report.get("interrupted"):
        lines += ["**Interrupted: partial results.**", ""]
    if cfg["quick"]:
        lines += [
            "`--quick`: a smoke test of the script (few texts, 2 batch sizes), not a measurement.",
            "",
        ]
    lines += [
        "## Device",
        "",
        "| | |",
        "|---|---|",
        f"| device | {info['device']} |",
        f"| GPU | {fmt(info.get('gpu'))} |",
    ]
    if info.get("gpu"):
        lines += [
            f"| GPU memory | {info['gpu_memory_mb']:,} MB (capability {info['gpu_capability']}, "
            f"bf16 {'yes' if info['bf16_supported'] else 'no'}) |"
        ]
    lines += [
        f"| torch | {info['torch']} (CUDA {fmt(info['torch_cuda'])}) |",
        f"| cuDNN | {fmt(info['cudnn_version'])}, "
        f"`torch.backends.cudnn.enabled` = {info['cudnn_enabled']} |",
        f"| CPU | {info['cpu']}, {info['cpu_count']} cores, "
        f"torch threads {info['torch_threads']} |",
        f"| model | {cfg['bundle']} ({cfg['model']}) |",
        "",
        "## Ceiling: in-process, per precision × batch size",
        "",
        "*predict* = `Classifier.predict` (tokenize + pad + forward + softmax + result objects); "
        "*forward* = `batched_logits` on pre-tokenized ids (pad + copy + forward + copy back). "
        "*non-forward share* = 1 − forward / predict time: the CPU-side cost around the network.",
        "",
    ]
    for precision, entry in report["sweep"].items():
        lines.append(f"### {precision}")
        lines.append("")
        if not entry["available"]:
            lines += [f"Skipped: {entry['error']}", ""]
            continue
        lines += [f"LSTM output dtype: {entry['lstm_dtype']}", ""]
        expected = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[precision]
        if entry["lstm_dtype"] != expected:
            lines += [
                f"Autocast did not run the LSTM in {expected}. CUDA autocast's cuDNN RNN wrapper "
                "(aten/src/ATen/cudnn/AutocastRNN.cpp) casts to fp16 whatever the autocast dtype "
                "in the torch sources we read, and CPU autocast does not cover nn.LSTM; the "
                f"other autocast ops (the output Linear) ran in {expected}.",
                "",
            ]
        lines += [
            "| batch | predict texts/s | forward texts/s | non-forward share | peak MB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in entry["rows"]:
            if "predict" not in r:
                why = r.get("error") or r.get("skipped")
                lines.append(f"| {r['batch_size']} | {why} | | | |")
                continue
            share = r.get("non_forward_share")
            lines.append(
                f"| {r['batch_size']} | {rate(r['predict'])} | "
                f"{rate(r.get('forward')) if 'forward' in r else r.get('error', '–')} | "
                f"{'–' if share is None else f'{share:.0%}'} | {fmt(r.get('peak_mb'), 1)} |"
            )
        lines.append("")
    b, s = report["best"], report["summary"]

    def best_line(label: str, item: dict[str, Any] | None) -> str:
        if not item:
            return f"| {label} | – | – | – |"
        return (
            f"| {label} | {item['precision']} | {item['batch_size']} | {item['texts_per_s']:,.0f} |"
        )

    lines += [
        "## Best configs",
        "",
        "| | precision | batch | texts/s |",
        "|---|---|---:|---:|",
        best_line("predict, any precision", b["predict"]),
        best_line("forward, any precision", b["forward"]),
        best_line("predict, fp32", b["predict_fp32"]),
        best_line("forward, fp32", b["forward_fp32"]),
        "",
        "## Ratios",
        "",
        "| ratio | value |",
        "|---|---:|",
    ]
    for key, value in s["ratios"].items():
        lines.append(f"| {key} | {fmt(value) if value is None else f'{value:.3f}'} |")
    lines += ["", "## Parity (probabilities against fp32 on the same device)", ""]
    par = report["parity"]
    lines += [
        f"{par['texts']} texts, batch {par['batch_size']}.",
        "",
        "| compared | max abs Δp | label agreement |",
        "|---|---:|---:|",
    ]
    rows = [(f"{k} vs fp32", v) for k, v in par["vs_fp32"].items()]
    if "fp32_device_vs_cpu" in par:
        rows.append(("fp32 on the GPU vs fp32 on the CPU", par["fp32_device_vs_cpu"]))
    for name, v in rows:
        if "error" in v:
            lines.append(f"| {name} | {v['error']} | |")
        else:
            lines.append(
                f"| {name} | {v['max_abs_prob_diff']:.2e} | {v['label_agreement_pct']:.2f}% |"
            )
    lines += ["", "## Pipeline (bench/gpu_check.py: Redis → worker → SQLite)", ""]
    if not report["pipeline"]:
        lines += ["Not run (`--no-pipeline`).", ""]
    else:
        lines += [
            "The worker calls `Classifier.predict` without autocast: **the pipeline runs fp32**. "
            "Texts/s is from the job's first to its last commit (256 texts per message); the "
            "one-text column is a second job with a tenth of the texts, one per message.",
            "",
            "| worker max items | texts/s | mean batch | one-text msgs texts/s | vs best fp32 "
            "predict | vs fp32 predict at that batch | parity vs CPU | notes |",
            "|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for p in report["pipeline"]:
            par_txt = (
                f"labels equal={p.get('parity_labels_equal')}, "
                f"max Δp {sci(p.get('parity_max_abs_prob_diff'))}"
            )
            lines.append(
                f"| {p['worker_batch_max_items']} | {fmt(p.get('texts_per_s'))} | "
                f"{fmt(p.get('mean_batch'), 1)} | {fmt(p.get('one_text_messages_texts_per_s'))} | "
                f"{fmt(p.get('ratio_vs_best_fp32_predict'), 3)} | "
                f"{fmt(p.get('ratio_vs_fp32_predict_at_batch'), 3)} | {par_txt} | "
                f"{p.get('error', '')} |"
            )
        lines.append("")
    lines += [
        "Reproduce on a GPU machine with `bench/pipeline-gpu` (creates `.venv` if needed, prints "
        "`nvidia-smi`, runs this script with `--device cuda --require-gpu` under a 540 s timeout).",
        "",
    ]
    return "\n".join(lines)


def summarize(report: dict[str, Any], precisions: Sequence[str]) -> None:
    sw = report["sweep"]
    b = {
        "predict": best(sw, precisions, "predict"),
        "forward": best(sw, precisions, "forward"),
        "predict_fp32": best(sw, ["fp32"], "predict"),
        "forward_fp32": best(sw, ["fp32"], "forward"),
    }
    report["best"] = b
    fp32_p = b["predict_fp32"]["texts_per_s"] if b["predict_fp32"] else None
    fp32_f = b["forward_fp32"]["texts_per_s"] if b["forward_fp32"] else None
    ratios: dict[str, float | None] = {}
    for precision in precisions:
        if precision == "fp32" or not sw.get(precision, {}).get("available"):
            continue
        bp, bf = best(sw, [precision], "predict"), best(sw, [precision], "forward")
        ratios[f"best {precision} / best fp32, predict"] = ratio(bp and bp["texts_per_s"], fp32_p)
        ratios[f"best {precision} / best fp32, forward"] = ratio(bf and bf["texts_per_s"], fp32_f)
    if fp32_p and fp32_f:
        ratios["best fp32 predict / best fp32 forward (tokenizer + CPU overhead)"] = ratio(
            fp32_p, fp32_f
        )
    for p in report["pipeline"]:
        p["ratio_vs_best_fp32_predict"] = ratio(p.get("texts_per_s"), fp32_p)
        p["ratio_vs_fp32_predict_at_batch"] = ratio(
            p.get("texts_per_s"), at_batch(sw, "fp32", p["worker_batch_max_items"], "predict")
        )
        label = f"pipeline (max items {p['worker_batch_max_items']}) / best fp32 predict"
        ratios[label] = p["ratio_vs_best_fp32_predict"]
    report["summary"] = {"ratios": ratios}


# -- main ----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    started = time.monotonic()
    args = parse_args(argv)
    device, fell_back = pick_device(args.device, args.require_gpu)

    import torch

    from textlstm.classifier.predictor import Classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    on_gpu = device.startswith("cuda")
    n = args.n or (QUICK_N if args.quick else 50_000 if on_gpu else 2_000)
    if args.batch_sizes:
        batch_sizes = tuple(int(x) for x in args.batch_sizes.split(","))
    else:
        batch_sizes = QUICK_BATCH_SIZES if args.quick else BATCH_SIZES
    precisions = PRECISIONS if on_gpu else ("fp32", "bf16")
    if args.pipeline_max_items is not None:
        max_items = [int(x) for x in args.pipeline_max_items.split(",")]
    else:
        max_items = [0, 1024] if on_gpu and not args.quick else [0]
    stem = args.out or RESULTS / ("pipeline-gpu_cpu" if not on_gpu else "pipeline-gpu")
    if args.quick and args.out is None:
        stem = stem.with_name(stem.name + "_quick")
    deadline = started + args.budget_s

    bundle = ensure_bundle((args.bundle or DEFAULT_BUNDLE).resolve(), device)
    texts = repeated_texts(args.texts, n)
    clf = Classifier.load(bundle, device=device)
    cfg = clf.model.config
    report: dict[str, Any] = {
        "command": "python bench/pipeline_gpu.py "
        + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device_requested": args.device,
        "fell_back_to_cpu": fell_back,
        "device_info": device_info(device),
        "config": {
            "n": n,
            "quick": args.quick,
            "repeats": args.repeats,
            "batch_sizes": list(batch_sizes),
            "precisions": list(precisions),
            "bundle": shown(bundle),
            "model": f"embedding {cfg.embedding_dim}, LSTM {cfg.hidden_size} "
            f"{'bi' if cfg.bidirectional else 'uni'}directional × {cfg.num_layers}, "
            f"pooling {cfg.pooling}",
            "texts_file": shown(args.texts),
        },
    }
    print(f"ceiling sweep on {device}: {n:,} texts, batch sizes {list(batch_sizes)}", flush=True)
    report.update(sweep={}, parity={"texts": 0, "batch_size": 128, "vs_fp32": {}}, pipeline=[])
    try:
        sweep(clf, texts, device, precisions, batch_sizes, args.repeats, deadline, report["sweep"])
        report["parity"] = parity(clf, texts, device, precisions, bundle)
        del clf
        if on_gpu:
            torch.cuda.empty_cache()
        for items in [] if args.no_pipeline else max_items:
            if items and time.monotonic() > deadline:
                report["pipeline"].append(
                    {"worker_batch_max_items": items, "error": "time budget (--budget-s) spent"}
                )
                continue
            # whatever is left of a 500 s run, at least 2 minutes (the runner allows 540 s)
            left = max(120.0, started + 500 - time.monotonic())
            report["pipeline"].append(run_pipeline(args, device, bundle, n, items, left))
    except KeyboardInterrupt:  # `timeout --signal=INT` in bench/pipeline-gpu: keep what we have
        report["interrupted"] = True
        print("interrupted: writing the partial results", flush=True)
    summarize(report, precisions)
    report["wall_s"] = round(time.monotonic() - started, 1)
    stem.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(render_md(report))
    print(f"wrote {json_path} and {md_path} ({report['wall_s']:.0f} s)", flush=True)
    if report.get("interrupted"):
        sys.exit(130)


if __name__ == "__main__":
    main()
