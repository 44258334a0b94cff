#!/usr/bin/env bash
# Fixed-seed behaviour fingerprint of a checkout: reconstruct the synthetic room (geometry + labels,
# joint and sequential schedules) and print the PLY sha256s and eval-queries figures as JSON lines.
# Used to show that a refactor changes no behaviour: run it on two checkouts and diff the output.
#   scripts/check_behaviour.sh OUTDIR [PYTHON]
set -euo pipefail
out="${1:?usage: check_behaviour.sh OUTDIR [PYTHON]}"
py="${2:-python}"
rm -rf "$out"; mkdir -p "$out"
"$py" -m langfield.synthetic "$out/data" --seed 3 --width 160 --height 120 --n-train 16 --n-eval 4 >/dev/null
for sched in joint sequential; do
  "$py" -m langfield reconstruct "$out/data" --out "$out/$sched" --iterations 300 --backend cpu --seed 5 \
      --features labels --clip test-tiny --language-schedule "$sched" --latent-iterations 200 --codec-steps 300 \
      --quiet > "$out/$sched.log"
  ply=$(sha256sum "$out/$sched/point_cloud.ply" | cut -c1-16)
  "$py" -m langfield eval-queries "$out/$sched" --backend cpu > "$out/$sched.queries.json"
  "$py" - "$out/$sched.queries.json" "$sched" "$ply" <<'PY'
import json, sys
q = json.load(open(sys.argv[1]))
print(json.dumps({"schedule": sys.argv[2], "ply_sha256": sys.argv[3], "mean": q["mean"],
                  "closed_set_accuracy": q["closed_set_accuracy"]}, sort_keys=True))
PY
done
