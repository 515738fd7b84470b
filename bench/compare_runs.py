"""Side-by-side table of several `bench/accuracy.py` runs (e.g. one setting on vs off).

    python bench/compare_runs.py --run "wide on=RUN1.json" --run "off=RUN2.json" --out PATH.md

`accuracy.py --combine` merges seeds of one configuration; this compares configurations: one
row per dataset and run label, plus the TF-IDF and fastText-style baselines from whichever
run measured them, so every number in the table comes from a JSON file beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _cells(label: str, stats: dict[str, Any], overrides: str) -> str:
    def mean(key: str) -> float:
        value = stats[key]
        return float(value["mean"] if isinstance(value, dict) else value)

    return (
        f"| {label} | {overrides} | {100 * mean('accuracy'):.1f} | {100 * mean('macro_f1'):.1f} "
        f"| {mean('train_seconds'):,.0f} | {mean('predict_texts_per_s'):,.0f} |"
    )


def render(runs: list[tuple[str, dict[str, Any]]]) -> str:
    datasets: list[str] = []
    for _, run in runs:
        for row in run["rows"]:
            if row["dataset"] not in datasets:
                datasets.append(row["dataset"])
    lines = [
        "| dataset / model | overrides | acc | macro-F1 | train s | predict texts/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in datasets:
        lines.append(f"| **{name}** | | | | | |")
        baselines: dict[str, dict[str, Any]] = {}
        for label, run in runs:
            sets = " ".join(f"{k}={v}" for k, v in run["meta"]["overrides"].items()) or "none"
            for row in run["rows"]:
                if row["dataset"] != name:
                    continue
                lines.append(_cells(label, row["lstm"], sets))
                for key in ("tfidf_logreg", "fasttext_style"):
                    if key in row and key not in baselines:
                        baselines[key] = row[key]
        for key, stats in baselines.items():
            lines.append(_cells(key, {**stats, "predict_texts_per_s": float("nan")}, "—"))
    return "\n".join(lines).replace("| nan |", "| — |") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = []
    for item in args.run:
        label, _, path = item.partition("=")
        runs.append((label, json.loads(Path(path).read_text())))
    args.out.write_text(render(runs))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
