#!/usr/bin/env bash
# The paper's recipe (configs/paper.yaml: its Table 01 VGG-16-BN regressor, 224x224, the 70/15/15
# split, SGD + MSE, 30 epochs with early stopping) trained on one CUDA GPU from a data pack, then
# evaluated on its own test split and on LSP's test split; the reports land in $REPORTS.
#
#   # where the data is: whole images of the paper split (all three parts): 37 MiB at 144 px and
#   # JPEG quality 30 (the committed reports' pack); --size 160 --quality 60 gives 58 MiB
#   posekit data pack --data $POSEKIT_DATA --split paper --whole --size 144 --quality 30 \
#       --parts train val test --out packs/paper-whole-144-q30.npz
#   # on the GPU machine (posekit installed, e.g. `make install`):
#   OUT=runs/paper-gpu WORKERS=12 bash scripts/gpu_paper.sh packs/paper-whole-144-q30.npz
#
# Environment: OUT (run folder, default runs/paper-gpu), REPORTS (default reports), DEVICE (auto),
# WORKERS (loader processes, 8), EPOCHS (default: the recipe's), LIMIT (train and evaluate on the
# first N images only: a quick end-to-end check, e.g. LIMIT=8 DEVICE=cpu EPOCHS=1).
set -euo pipefail
PACK=${1:?usage: bash scripts/gpu_paper.sh PACK.npz}
OUT=${OUT:-runs/paper-gpu}
REPORTS=${REPORTS:-reports}
POSEKIT=${POSEKIT:-posekit}
extra=()
limit=()
if [ -n "${LIMIT:-}" ]; then
  extra+=("data.limit_train=$LIMIT" "data.limit_val=$(( LIMIT / 4 + 1 ))")
  limit=(--limit "$LIMIT")
fi
[ -n "${EPOCHS:-}" ] && extra+=("train.epochs=$EPOCHS")
mkdir -p "$REPORTS"
start=$(date +%s)
$POSEKIT train --config configs/paper.yaml --out "$OUT" --force --no-progress "data.pack=$PACK" \
  "train.device=${DEVICE:-auto}" "train.num_workers=${WORKERS:-8}" "${extra[@]}"
train_s=$(( $(date +%s) - start ))
$POSEKIT evaluate --model "$OUT" --data "$PACK" --split paper-test --json "${limit[@]}" \
  --out "$REPORTS/paper_gpu_eval" > "$REPORTS/paper_gpu_paper_test.json"
$POSEKIT evaluate --model "$OUT" --data "$PACK" --split lsp-test --json "${limit[@]}" > "$REPORTS/paper_gpu_lsp_test.json"
cp "$OUT/history.json" "$REPORTS/paper_gpu_history.json"
python3 - "$REPORTS" "$train_s" <<'PY'
import json, sys
r, secs = sys.argv[1], int(sys.argv[2])
p, l = (json.load(open(f"{r}/paper_gpu_{k}.json")) for k in ("paper_test", "lsp_test"))
h = json.load(open(f"{r}/paper_gpu_history.json"))
summary = {"train_seconds": secs, "epochs": len(h), "best_epoch": h[-1].get("best_epoch"),
           "paper_test": {k: p[k] for k in ("n", "mse", "pck", "pcp")}, "lsp_test": {k: l[k] for k in ("n", "mse", "pck", "pcp")},
           "loss_curve": [{k: e.get(k) for k in ("epoch", "train_loss", "val_loss")} for e in h]}
json.dump(summary, open(f"{r}/paper_gpu.json", "w"), indent=1)
print(f"paper recipe: {len(h)} epochs in {secs} s; paper test MSE {p['mse']:.4f} PCK {p['pck']:.3f}; "
      f"LSP test MSE {l['mse']:.4f} PCK {l['pck']:.3f}")
PY
