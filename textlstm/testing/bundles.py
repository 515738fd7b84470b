"""Registry-valid model bundles whose weights are arbitrary bytes, for tests and benchmarks
that store and read results but never load a model (nothing here imports torch)."""

from __future__ import annotations

from pathlib import Path


def write_fake_bundle(
    path: Path, *, labels: tuple[str, ...] = ("neg", "pos"), seed: str = "a", **config: object
) -> Path:
    """A small valid bundle whose weights are arbitrary bytes: the registry never loads them."""
    from textlstm.bundle import dump_json, write_bundle

    cfg = {
        "labels": list(labels),
        "model": {"hidden": 8},
        "tokenizer": {"kind": "word"},
        "temperature": 1.0,
        "training": {"epochs": 1},
        "data": {"fingerprint": "f" * 64, "train_rows": 10},
        "textlstm_version": "0.1.0",
        **config,
    }
    write_bundle(
        path,
        {
            "weights.safetensors": f"weights-{seed}".encode() * 100,
            "config.json": dump_json(cfg),
            "tokenizer.json": dump_json({"vocab": ["<pad>", "<unk>", "good", "bad"]}),
            # The trainer's shape: headline numbers under "validation".
            "metrics.json": dump_json(
                {"validation": {"accuracy": 0.9, "macro_f1": 0.88}, "training": {"best_epoch": 1}}
            ),
        },
    )
    return path
