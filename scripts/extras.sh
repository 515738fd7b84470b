#!/usr/bin/env bash
# Print every optional-dependency extra of pyproject.toml, comma-separated (e.g. worker,train,dev):
# scripts/install.sh installs them all and scripts/lock.sh locks them all, so a new extra needs
# no edit to either.
set -euo pipefail
cd "$(dirname "$0")/.."
"${PYTHON:-python3}" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print(",".join(tomllib.load(f)["project"].get("optional-dependencies", {})))
'
