#!/usr/bin/env bash
# The main job on the embedded default: install, create the SQLite database, train the sample
# model on the bundled AG News slice (reused when already trained), register it as
# news@production, classify a few texts and score the held-out sample file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TEXTLSTM_DATABASE_URL=${TEXTLSTM_DATABASE_URL:-sqlite:///./textlstm.db}
admin=.venv/bin/textlstm-admin
bundle=runs/news-sample

$admin db upgrade
if [ ! -f "$bundle/manifest.json" ]; then
  $admin train examples/data/news_train.csv --out "$bundle" --overwrite \
    --register news --alias production
else
  echo "reusing $bundle (delete it to retrain)"
  $admin models register "$bundle" --name news --alias production
fi
$admin predict "$bundle" \
  "Stocks slid as oil prices hit a record high and investors fled to bonds" \
  "The striker scored twice as the home side won the cup final" \
  "NASA's new telescope photographs a distant galaxy" \
  "Leaders met at the summit to discuss the ceasefire"
$admin evaluate "$bundle" examples/data/news_test.csv
