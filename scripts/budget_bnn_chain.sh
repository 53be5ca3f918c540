#!/usr/bin/env bash
# A budget BNN rebuilt from the shipped ban alone (nothing from an earlier run is needed): the
# recipe of bnn-p40, the best BNN within 4 KiB so far (docs/experiments/README.md, sessions 13,
# 16 and 17), and of its variants.
#
#   bash scripts/budget_bnn_chain.sh STAGE1_ITERS STAGE2_ITERS [RUNS_DIR]
#
#   1. factor the shipped ban's dense 3x3 perception to rank M      (scripts/separable_init.py)
#   2. train that separable BAN for STAGE1_ITERS                     -> RUNS_DIR/ban-sepM
#   3. narrow it to P perception features and H hidden units         (scripts/narrow_units.py)
#   4. train the BNN for STAGE2_ITERS: int8 depthwise 3x3, the 1x1 part and the last layer real
#      (int4 where INT4 names them), an XNOR hidden layer            -> RUNS_DIR/NAME
#
# Environment (defaults: bnn-p40, 3,820 packed bytes, as run on this CPU):
#   M=4 P=40 H=64 INT4=perceive,update2 NAME=bnn-mMpPhH
#   BATCH=64 DEVICE=cpu THREADS=1                     (e.g. BATCH=256 DEVICE=cuda on a GPU)
#   PYTHON=.venv/bin/python (setup.sh's venv; python3 where there is none, as on a GPU machine)
# RUNS_DIR (default runs) is relative to the repository root, where the script runs.
# Each stage is skipped when its output exists; a training stage whose run directory holds a
# checkpoint is resumed to its iteration count, so the chain can be stopped and run again.
# Every stage prints its evaluation on the first 200 test digits (step 200, no mutation).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
    echo "usage: bash scripts/budget_bnn_chain.sh STAGE1_ITERS STAGE2_ITERS [RUNS_DIR]" >&2
    exit 2
fi
stage1=$1
stage2=$2
if ! [[ $stage1 =~ ^[1-9][0-9]*$ && $stage2 =~ ^[1-9][0-9]*$ ]]; then
    echo "error: STAGE1_ITERS and STAGE2_ITERS must be positive integers, not '$stage1' '$stage2'" >&2
    exit 2
fi
runs=${3:-runs}
m=${M:-4}
p=${P:-40}
h=${H:-64}
int4=${INT4-perceive,update2}
name=${NAME:-bnn-m${m}p${p}h${h}}
python=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}
device=${DEVICE:-cpu}
threads=${THREADS:-1}
nca=("$python" -c 'import sys; from nca_edge.cli import main; sys.argv[0] = "nca-edge"; main()')
common=(--act-noise 0.1 --state-frac-bits 4 --batch-size "${BATCH:-64}" --lr 1e-4 --lr-boundaries 100000
        --checkpoint-every 250 --device "$device" --no-progress)
mkdir -p "$runs"

train() {  # train RUN ITERS ARGS...: start it, or resume it to ITERS
    local run=$1 iters=$2
    shift 2
    if [[ -f "$runs/$run/train_state.safetensors" ]]; then
        "${nca[@]}" --threads "$threads" train --out "$runs/$run" --resume --iterations "$iters" \
            --device "$device" --no-progress
    else
        "${nca[@]}" --threads "$threads" train --out "$runs/$run" --iterations "$iters" "${common[@]}" "$@"
    fi
    "$python" scripts/eval_snapshots.py --digits 200 "$runs/$run/model"
}

init=$runs/sep$m-init/model
[[ -f "$init.safetensors" ]] ||
    "$python" scripts/separable_init.py ban --m "$m" --out "$init" --eval-digits 200
train "ban-sep$m" "$stage1" --quant ban --separable "$m" --init "$init"
narrowed=$runs/sep$m-p${p}h$h-init/model
[[ -f "$narrowed.safetensors" ]] ||
    "$python" scripts/narrow_units.py "$runs/ban-sep$m/model" --perception "$p" --hidden "$h" \
        --out "$narrowed" --eval-digits 200
train "$name" "$stage2" --quant bnn --separable "$m" --perception "$p" --hidden "$h" \
    --real-weights perceive,update2 ${int4:+--int4 "$int4"} --init "$narrowed"
