#!/usr/bin/env bash
# The README's two commands, as written, on a fresh clone in a fresh virtual environment.
#
#   bash benchmarks/fresh_clone.sh [REV]      # REV: what to clone (HEAD)
#
# Clones this repository at REV into a temporary folder, makes a venv there, and runs the README's
# first ```bash block (install + `segue demo`) and then its second (install the test extras +
# pytest), each read from the clone's README, not retyped here. Writes
# benchmarks/results/demo_fresh_clone.json (the demo's results.json, each command's exit status and
# seconds) and benchmarks/results/fresh_clone.log (the tail of what each printed).
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
rev="${1:-HEAD}"
work="$(mktemp -d /tmp/segue-fresh.XXXXXX)"
git clone -q "$here" "$work/segue" && git -C "$work/segue" checkout -q "$rev" || exit 1
cd "$work/segue"
python3 -m venv .venv && source .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# the first two ```bash blocks of the README: install + demo, then the tests
mapfile -t cmds < <(awk '/^```bash/{f=1; next} /^```/{if (f) n++; f=0} f && n < 2 {print}' README.md | grep -v '^\s*#' | grep -v '^\s*$' | head -2)
log="$here/benchmarks/results/fresh_clone.log"
: > "$log"
declare -a rcs secs
for i in 0 1; do
  echo "\$ ${cmds[$i]}" | tee -a "$log"
  t0=$(date +%s)
  bash -c "${cmds[$i]}" > "$work/out$i.txt" 2>&1
  rcs[$i]=$?
  secs[$i]=$(( $(date +%s) - t0 ))
  tail -n 25 "$work/out$i.txt" >> "$log"
  echo "exit ${rcs[$i]} after ${secs[$i]} s" | tee -a "$log"
done
python3 - "$here/benchmarks/results/demo_fresh_clone.json" "$work/segue/segue-demo/results.json" "$rev" "${cmds[0]}" "${rcs[0]}" \
  "${secs[0]}" "${cmds[1]}" "${rcs[1]}" "${secs[1]}" "$(git rev-parse HEAD)" <<'EOF'
import json, platform, sys
out, demo, rev, c0, r0, s0, c1, r1, s1, commit = sys.argv[1:]
try:
    results = json.load(open(demo))
except OSError:
    results = None
record = {"what": "the README's two commands on a fresh clone in a fresh venv (benchmarks/fresh_clone.sh)",
          "commit": commit, "python": platform.python_version(), "machine": f"{platform.machine()}, 2-core CPU",
          "commands": [{"command": c0, "exit": int(r0), "seconds": int(s0)},
                       {"command": c1, "exit": int(r1), "seconds": int(s1)}],
          "demo_results": results}
json.dump(record, open(out, "w"), indent=2)
print(json.dumps(record["commands"], indent=2))
EOF
