#!/usr/bin/env bash
# Train several runs side by side on one GPU machine for a fixed time, then pack them.
#
#   bash scripts/device_train.sh SWEEP SECONDS [OUTDIR]
#
# SWEEP: a text file, one run per line: "NAME RECIPE [OPTIONS]": a recipe (a name in recipes/ or
# a TOML file) and optional `nca-edge train` options (--iterations, --seed). Each runs as
# `nca-edge train --recipe RECIPE --out runs/NAME`, which continues a run carried from an earlier
# call where it stopped. Blank lines and lines starting with # are skipped. Example:
#     bnn  recipes/bnn.toml
#
# Every run gets SIGTERM after SECONDS and saves its checkpoint (the trainer's stop handler), so
# each continues when the same SWEEP runs again. The run
# directories are packed into OUTDIR/runs.tgz.partNN (15 MB pieces, for transports that cap
# file sizes): `cat runs.tgz.part* | tar xz` restores them.
#
# EVAL_DIGITS=N also evaluates every run's last stage on the first N test digits (200 steps, no mutation).
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
while read -r name recipe args; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    # shellcheck disable=SC2206
    cmd=(train --recipe "$recipe" --out "runs/$name" --device auto --no-progress $args)
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
    # per stage: last iteration, and the mean training loss of the last 500 iterations
    for log in runs/"$name"/*/log.csv; do
    awk -F, -v n="$(dirname "${log#runs/}")" 'NR > 1 { it[NR] = $1; l[NR] = $2; last = NR }
        END { s = 0; k = 0; for (i = last; i > 1 && i > last - 500; i--) { s += l[i]; k++ }
              printf "%-32s iterations %7d  loss(last %d) %.4f\n", n, it[last], k, (k ? s / k : 0) }' \
        "$log" 2>/dev/null || echo "$name: no log"
    done
done
if [[ "${EVAL_DIGITS:-0}" -gt 0 ]]; then  # a quick deterministic ranking: steps 1-200, no mutation
    for name in "${names[@]}"; do
        last=$(ls -td runs/"$name"/*/model.json | head -n 1)
        "${nca[@]}" eval "${last%.json}" --digits "$EVAL_DIGITS" --steps 200 --mutate-at 0 --device auto --no-progress \
            --out "runs/$name/eval" >"runs/$name/eval.log" 2>&1 &
    done
    wait
    for name in "${names[@]}"; do
        printf '%-24s ' "$name"; grep '^nca-edge' "runs/$name/eval.log" || echo "(no eval)"
    done
fi
tar czf - runs | split -b 15M -d - "$outdir/runs.tgz.part"
ls -la "$outdir"
