#!/usr/bin/env bash
# Train several runs side by side on one GPU machine for a fixed time, then pack them.
#
#   bash scripts/device_train.sh SWEEP SECONDS [OUTDIR]
#
# SWEEP: a text file, one run per line: "NAME ARGS..." where ARGS are `nca-edge train` options
# (without --out/--device/--resume). A run whose runs/NAME/train_state.safetensors exists
# (carried from an earlier call) is resumed with --resume and ARGS is ignored except
# --iterations. Blank lines and lines starting with # are skipped.
#
# Every run gets SIGTERM after SECONDS and saves its checkpoint (the trainer's stop handler), so
# each can be continued later with `nca-edge train --out runs/NAME --resume`. The run
# directories are packed into OUTDIR/runs.tgz.partNN (15 MB pieces, for transports that cap
# file sizes): `cat runs.tgz.part* | tar xz` restores them.
#
# EVAL_DIGITS=N also evaluates every run on the first N test digits (200 steps, no mutation).
#
# Used for the GPU runs of docs/experiments (the commands there give SWEEP, SECONDS and device).
set -euo pipefail
sweep=$1
seconds=$2
outdir=${3:-${OUT:-out/device}}
mkdir -p "$outdir" runs
python=${PYTHON:-python3}
# the CLI without installing the package (an array, not a function: $! must be python's pid)
nca=("$python" -c 'import sys; from nca_edge.cli import main; sys.argv[0] = "nca-edge"; main()')

pids=()
names=()
while read -r name args; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    if [[ -f "runs/$name/train_state.safetensors" ]]; then
        iters=$(sed -n 's/.*--iterations \([0-9]*\).*/\1/p' <<<"$args")
        cmd=(train --out "runs/$name" --resume --device auto --no-progress ${iters:+--iterations "$iters"})
    else
        # shellcheck disable=SC2206
        cmd=(train --out "runs/$name" --device auto --no-progress $args)
    fi
    echo "[$name] nca-edge --threads 1 ${cmd[*]}" | tee -a "runs/$name.log"
    "${nca[@]}" --threads 1 "${cmd[@]}" >>"runs/$name.log" 2>&1 &
    pids+=($!)
    names+=("$name")
done <"$sweep"

alive() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
end=$((SECONDS + seconds))
while ((SECONDS < end)) && alive; do sleep 5; done
kill -TERM "${pids[@]}" 2>/dev/null || true
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || true
done

for name in "${names[@]}"; do
    # last iteration, and the mean training loss of the last 500 iterations
    awk -F, -v n="$name" 'NR > 1 { it[NR] = $1; l[NR] = $2; last = NR }
        END { s = 0; k = 0; for (i = last; i > 1 && i > last - 500; i--) { s += l[i]; k++ }
              printf "%-24s iterations %7d  loss(last %d) %.4f\n", n, it[last], k, (k ? s / k : 0) }' \
        "runs/$name/log.csv" 2>/dev/null || echo "$name: no log"
done
if [[ "${EVAL_DIGITS:-0}" -gt 0 ]]; then  # a quick deterministic ranking: steps 1-200, no mutation
    for name in "${names[@]}"; do
        "${nca[@]}" eval "runs/$name/model" --digits "$EVAL_DIGITS" --steps 200 --mutate-at 0 --device auto --no-progress \
            --out "runs/$name/eval" >"runs/$name/eval.log" 2>&1 &
    done
    wait
    for name in "${names[@]}"; do
        printf '%-24s ' "$name"; grep '^nca-edge' "runs/$name/eval.log" || echo "(no eval)"
    done
fi
tar czf - runs | split -b 15M -d - "$outdir/runs.tgz.part"
ls -la "$outdir"
