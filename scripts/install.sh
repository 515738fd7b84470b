#!/usr/bin/env bash
# Create .venv and install textlstm with its dev and docs extras. Safe to re-run.
# TORCH_SPEC picks the torch build installed first (default: the CPU build pinned below), so the
# open `torch>=2.3` range in pyproject.toml never pulls a multi-GB CUDA wheel by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,docs]"

# Optional: a compose CLI lets tests/ops/test_compose.py validate docker-compose.yml's schema.
# Debian's standalone docker-compose is enough; skipped quietly where apt is not available.
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) \
      >/dev/null 2>&1 || echo "note: could not install docker-compose; its test will be skipped" >&2
  fi
fi
