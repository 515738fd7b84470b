#!/usr/bin/env bash
# Create .venv and install textlstm with its dev extras. Safe to re-run.
# TORCH_SPEC picks the torch build installed first (default: the CPU build pinned below), so the
# open `torch>=2.3` range in pyproject.toml never pulls a multi-GB CUDA wheel by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
