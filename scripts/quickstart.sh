#!/usr/bin/env bash
# The main job on the embedded default, from a fresh machine: install, then run the whole
# pipeline (train or reuse the sample model, register it in ./textlstm.db, start Redis if none is
# reachable, start a worker, submit the sample file, wait, print the results from SQLite, stop
# what was started), then score the sample model on the held-out sample file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
bash scripts/pipeline_demo.sh
.venv/bin/textlstm-admin evaluate runs/news-sample examples/data/news_test.csv
