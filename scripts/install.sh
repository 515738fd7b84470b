#!/usr/bin/env bash
# Create .venv and install textlstm, editable, with every extra (worker, train, dev, …): what the
# tests need. Safe to re-run; a second run only checks what is installed.
#
# Versions come from constraints.txt (scripts/lock.sh writes it), so CI and the Dockerfile install
# what was tested. torch is installed first, on its own: TORCH_SPEC picks it (default: the pinned
# version, whose CPU build this machine's index serves), TORCH_INDEX an index to take it from,
# e.g. https://download.pytorch.org/whl/cu126 for a CUDA build of the pinned version. The rest
# then finds torch satisfied and never pulls a multi-GB CUDA wheel by accident. For a torch
# version other than the pinned one, refresh the lock (TORCH_SPEC=… bash scripts/lock.sh) or
# install unpinned with CONSTRAINTS= (empty).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
pins=()
[ -z "$CONSTRAINTS" ] || pins=(-c "$CONSTRAINTS")
pinned_torch=$([ -z "$CONSTRAINTS" ] || grep -m1 '^torch==' "$CONSTRAINTS" || true)
TORCH_SPEC=${TORCH_SPEC:-${pinned_torch:-torch}}
index=()
[ -z "${TORCH_INDEX:-}" ] || index=(--index-url "$TORCH_INDEX")
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
"${pip[@]}" "${index[@]}" "$TORCH_SPEC"
"${pip[@]}" "${pins[@]}" -e ".[$(bash scripts/extras.sh)]"

# Optional: a compose CLI lets tests/ops/test_compose.py validate docker-compose.yml's schema.
# Debian's standalone docker-compose is enough; skipped quietly where apt is not available.
if ! command -v docker-compose >/dev/null 2>&1 && ! docker compose version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) \
      >/dev/null 2>&1 || echo "note: could not install docker-compose; its test will be skipped" >&2
  fi
fi
