"""Tokenizer speed: textlstm's regex word tokenizer against Hugging Face `tokenizers` WordLevel
set up to produce the same tokens (NFKC + lowercase, the same split), on the same texts.

    python bench/tokenizer.py [--data DATA_DIR/ag_news_small/train.csv] [--repeats 5]

Writes bench/results/tokenizer.md and .json: texts/s for encoding one text at a time (the
worker's per-item path) and a whole list at once (`encode_batch`, which runs in Rust threads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from textlstm.classifier.tokenizer import _TOKEN_RE, PAD, UNK, Tokenizer
from textlstm.training.datasets import read_texts

ROOT = Path(__file__).resolve().parents[1]


def hf_wordlevel(vocab: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Regex, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import WordLevel

    tok = HFTokenizer(WordLevel({t: i for i, t in enumerate(vocab)}, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(_TOKEN_RE.pattern), behavior="isolated"),
        ]
    )
    return tok


def rate(fn: Callable[[], object], n: int, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    rates = [n / t for t in times]
    return statistics.median(rates), (max(rates) - min(rates)) / statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder of the public datasets (docs/development.md); reads ag_news_small/train.csv",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/tokenizer")
    args = parser.parse_args()

    texts = read_texts(args.data_dir / "ag_news_small" / "train.csv").texts
    ours = Tokenizer.build(texts)
    hf = hf_wordlevel(ours.vocab)
    assert ours.vocab[:2] == [PAD, UNK]
    sample = texts[:500]
    mismatched = sum(hf.encode(t).ids != ours.encode(t) for t in sample)

    n = len(texts)
    results = {
        "regex one by one": rate(lambda: [ours.encode(t) for t in texts], n, args.repeats),
        "HF WordLevel one by one": rate(lambda: [hf.encode(t).ids for t in texts], n, args.repeats),
        "HF WordLevel encode_batch": rate(
            lambda: [e.ids for e in hf.encode_batch(texts)], n, args.repeats
        ),
    }
    tokens = sum(len(ours.tokenize(t)) for t in texts) / n
    lines = [
        "# Tokenizer speed: regex + dict vs Hugging Face `tokenizers` WordLevel",
        "",
        f"{n:,} texts from `ag_news_small/train.csv` "
        f"(mean {tokens:.0f} tokens), median of {args.repeats} repeats; same vocabulary, "
        f"same tokens ({mismatched} of {len(sample)} sampled texts encode differently).",
        "",
        "| tokenizer | texts/s | spread |",
        "|---|---:|---:|",
        *(f"| {k} | {v[0]:,.0f} | {v[1]:.0%} |" for k, v in results.items()),
        "",
        "Command: `python bench/tokenizer.py`.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps({k: {"texts_per_s": v[0], "spread": v[1]} for k, v in results.items()}, indent=2)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
