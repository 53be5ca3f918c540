#!/usr/bin/env bash
# Ship a trained checkpoint as a package model and record its full-test-set results:
#   bash scripts/ship.sh float runs/float/model
# Copies RUN/model.{safetensors,json} to nca_edge/models/NAME.*, evaluates it on the whole MNIST
# test set (400 steps, mutation at 200), records the summary in the shipped sidecar, writes
# docs/results/NAME/eval.{md,json,png} (+ train_loss.png from RUN/log.csv), and rebuilds docs/RESULTS.md.
# A snapshot (bash scripts/ship.sh bwn runs/RUN/snapshots/model-004500) plots RUN's log up to its iteration.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"; ckpt="${2%.safetensors}"; ckpt="${ckpt%.json}"
cp "$ckpt.safetensors" "nca_edge/models/$name.safetensors"
cp "$ckpt.json" "nca_edge/models/$name.json"
# Record the weights' and the config's SHA-256 in the shipped sidecar (checkpoints written before
# session 18 lack them; loading refuses a sidecar without them).
.venv/bin/python - "nca_edge/models/$name" <<'PY'
import hashlib, json, sys
from nca_edge.atomic import atomic_write_bytes
from nca_edge.checkpoint import checkpoint_paths, config_sha256
tpath, jpath = checkpoint_paths(sys.argv[1])
meta = json.loads(jpath.read_text())
meta["weights_sha256"] = hashlib.sha256(tpath.read_bytes()).hexdigest()
meta["config_sha256"] = config_sha256(meta["config"])
atomic_write_bytes(jpath, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
PY
.venv/bin/nca-edge eval "$name" --out "docs/results/$name" --save-metrics --no-progress
run="$(dirname "$ckpt")"
until=()
if [ "$(basename "$run")" = snapshots ]; then  # RUN/snapshots/model-N: RUN's log up to iteration N
    run="$(dirname "$run")"
    until=(--until "$((10#${ckpt##*model-}))")
fi
log="$run/log.csv"
if [ -f "$log" ]; then
    .venv/bin/python scripts/plot_training.py "$log" --out "docs/results/$name/train_loss.png" "${until[@]}"
else
    rm -f "docs/results/$name/train_loss.png"  # never leave the previous model's curve
fi
{
    .venv/bin/nca-edge compare --format markdown --no-progress
    printf '\nCommand: `nca-edge compare --format markdown` (every shipped model; metrics recorded by `nca-edge eval NAME --save-metrics`; export sizes measured from files built by `nca-edge export`, 28x28, batch 1).\n'
} > docs/results/compare.md
.venv/bin/python scripts/make_results.py
