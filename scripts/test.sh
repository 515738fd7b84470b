#!/usr/bin/env bash
# Install everything into .venv, make sure the services are up, lint, and run the test suite.
# This is the README's test command; .ci/run calls it unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
