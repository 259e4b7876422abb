#!/usr/bin/env bash
# Rerun the shipped model's recipe up to run 4 (release_deeper): the model card's first four training
# commands, each from the previous rerun's best.pt, into runs/rerun/ (or $1); the card's teacher and
# release_robust and release_crowd commands then make what ships. A run that is unfinished (a sitting was
# cut off) is resumed with `posekit train --resume`, which leaves a finished one alone, so calling this
# again continues where it stopped. Then the rerun is scored as shipped (the card's refinement
# crops) on the LSP test split, and its runs are compared with the originals (benchmarks/rerun_check.py).
#
#   POSEKIT_DATA=/path/to/data bash scripts/rerun_release.sh
#
# About 6 hours on a 2-core CPU; minutes on a GPU.
set -euo pipefail
D=${POSEKIT_DATA:?set POSEKIT_DATA to the LSP data root}
R=${1:-runs/rerun}
REFINE=(--refine 0.05,0.13,0.22 --refine-weight 0.1)
# The original run's score at that setting: the sweep that chose it, `python benchmarks/refine_margins.py
# --model runs/release_deeper/best.pt --data $POSEKIT_DATA --margins 0.05 0.1 0.13 0.17 0.22 0.3 --crops 1 2 3
# --weights 0 0.1 0.2 0.3 0.4 0.5 0.6 --frame 0.17 --test --json reports/recrop_margin.json`. The rerun is
# scored with the crop border that sweep used (0 in reports written before it recorded `crop_border`).
ORIGINAL=reports/recrop_margin.json
[ -f reports/refine_margins.json ] && ORIGINAL=reports/refine_margins.json
BORDER=$(python -c "import json; print(json.load(open('$ORIGINAL')).get('crop_border', 0))")

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
posekit evaluate --model "$R/release_deeper/best.pt" --data "$D" --split lsp-test "${REFINE[@]}" --crop-border "$BORDER" \
  --json > reports/rerun_lsp_test.json
python benchmarks/rerun_check.py --pair runs/release80 "$R/release80" --pair runs/release160 "$R/release160" \
  --pair runs/release_deep "$R/release_deep" --pair runs/release_deeper "$R/release_deeper" --json reports/rerun_chain.json
python - reports/rerun_lsp_test.json "$ORIGINAL" <<'PY'
import json, sys
r, o = (json.load(open(p)) for p in sys.argv[1:])
def setting(x):  # (margins as a list, first-pass weight); reports before the rename say recrop/fuse
    m = x.get("refine", x.get("recrop"))
    return ([m] if isinstance(m, (int, float)) else m, x.get("refine_weight", x.get("fuse")))
shipped = [x for x in o["results"] if setting(x) == setting(r)][0]["lsp-test"]["pck"]
print(f"rerun PCK@0.2 {r['pck']:.4f}, original run {shipped:.4f}: {abs(r['pck'] - shipped) * 100:.2f} points apart")
PY
