#!/usr/bin/env bash
# Rerun the shipped model's recipe end to end: the model card's four training commands, each from
# the previous rerun's best.pt, into runs/rerun/ (or $1). A run that is unfinished (a sitting was
# cut off) is resumed with `posekit train --resume`, which leaves a finished one alone, so calling this
# again continues where it stopped. Then the rerun is scored as shipped (the card's looks) on the
# LSP test split, and its runs are compared with the originals (benchmarks/rerun_check.py).
#
#   POSEKIT_DATA=/path/to/data bash scripts/rerun_release.sh
#
# About 6 hours on a 2-core CPU; minutes on a GPU.
set -euo pipefail
D=${POSEKIT_DATA:?set POSEKIT_DATA to the LSP data root}
R=${1:-runs/rerun}
LOOKS=(--recrop 0.05,0.13,0.22 --fuse 0.1)

run() {  # name config [init]: resume an unfinished run (a finished one says so and is left alone)
  local out=$R/$1 cfg=$2 init=${3:-}
  if [ -f "$out/last.pt" ]; then
    posekit train --resume "$out" --no-progress
  else
    posekit train --config "$cfg" --data "$D" ${init:+train.init_from=$init} --out "$out" --no-progress
  fi
}

run release80 configs/release.yaml
run release160 configs/release_160.yaml "$R/release80/best.pt"
run release_deep configs/release_deep.yaml "$R/release160/best.pt"
run release_deeper configs/release_deeper.yaml "$R/release_deep/best.pt"
posekit evaluate --model "$R/release_deeper/best.pt" --data "$D" --split lsp-test "${LOOKS[@]}" --json > reports/rerun_lsp_test.json
python benchmarks/rerun_check.py --pair runs/release80 "$R/release80" --pair runs/release160 "$R/release160" \
  --pair runs/release_deep "$R/release_deep" --pair runs/release_deeper "$R/release_deeper" --json reports/rerun_chain.json
python -c "
import json
r, o = json.load(open('reports/rerun_lsp_test.json')), json.load(open('reports/recrop_margin.json'))
shipped = [x for x in o['results'] if x['recrop'] == r['recrop'] and x['fuse'] == r['fuse']][0]['lsp-test']['pck']
print(f'rerun PCK@0.2 {r[\"pck\"]:.4f}, original run {shipped:.4f}: {abs(r[\"pck\"] - shipped) * 100:.2f} points apart')"
