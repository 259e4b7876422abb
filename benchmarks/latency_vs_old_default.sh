#!/bin/bash
# Batch-1 latency of the top-down issue's "today's default" (the whole image and three refinement
# crops in float32, the code at be0b09a) against entries of this checkout, side by side, twice:
# alternating runs of benchmarks/latency.py on 400 LSP test images each, gathered into one JSON
# with each entry's p50 over the old default's of the same round.
#
#   git worktree add --detach /tmp/wt_old be0b09a
#   POSEKIT_DATA=... bash benchmarks/latency_vs_old_default.sh OUT.json posekit-lsp "posekit-lsp:detector_flip_test=on" ...
#
# Entries are latency.py's NAME[:key=value,...]. OLD (default /tmp/wt_old) is the old checkout.
set -euo pipefail
if [ $# -lt 2 ] || [ -z "${POSEKIT_DATA:-}" ]; then
  echo "usage: POSEKIT_DATA=DIR bash $0 OUT.json ENTRY [ENTRY ...]" >&2; exit 2
fi
out=$1; shift
old=${OLD:-/tmp/wt_old}
if [ ! -f "$old/benchmarks/latency.py" ]; then
  echo "$0: $old is not a checkout of be0b09a (git worktree add --detach $old be0b09a)" >&2; exit 2
fi
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
imgs=$(ls "$POSEKIT_DATA"/lsp/images/im1[0-9][0-9][1-9].jpg)
tmp=$(mktemp -d)
for round in 1 2; do
  (cd "$old" && PYTHONPATH="$old" "$py" benchmarks/latency.py --model "posekit-lsp:detector=off,refine=0.05;0.13;0.22,flip_test=off" \
     --image $imgs --runs 400 --json "$tmp/old_$round.json" | grep '^idle')
  (cd "$here" && "$py" benchmarks/latency.py --model "$@" --image $imgs --runs 400 --json "$tmp/new_$round.json" | grep '^idle')
done
"$py" - "$tmp" "$out" "$@" <<'PY'
import json, sys
tmp, out, entries = sys.argv[1], sys.argv[2], sys.argv[3:]
rounds = []
for r in (1, 2):
    old = json.load(open(f"{tmp}/old_{r}.json"))["results"][0]
    new = json.load(open(f"{tmp}/new_{r}.json"))["results"]
    rounds.append({"round": r, "old_default_p50_ms": old["p50_ms"],
                   "entries": [{"model": e["model"], "precision": e["precision"], "looks": e["looks"],
                                "p50_ms": e["p50_ms"], "p90_ms": e["p90_ms"],
                                "over_old_default_p50": round(e["p50_ms"] / old["p50_ms"], 3)} for e in new]})
from posekit.utils import write_json
write_json(out, {"what": "batch-1 end-to-end latency (JPEG file to joints, detector included) against the top-down "
                         "issue's old default (the whole image and three refinement crops, float32, code at be0b09a), "
                         "alternating, 400 LSP test images each, twice, on one machine",
                 "command": "git worktree add --detach /tmp/wt_old be0b09a; POSEKIT_DATA=... bash "
                            "benchmarks/latency_vs_old_default.sh " + " ".join([out] + [repr(e) for e in entries]),
                 "rounds": rounds})
print(f"wrote {out}")
PY
rm -rf "$tmp"
