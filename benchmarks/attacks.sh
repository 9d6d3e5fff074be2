#!/usr/bin/env bash
# The attack tables (benchmarks/results/attacks/{webface10,orl,celeba234}/attacks.md), cells in
# priority order: embedding attackers (seconds each) first, then the from-scratch attacks on the
# shipped generators, then everything else. Resumable: a rerun skips finished cells.
#
#   bash benchmarks/attacks.sh [DEADLINE HH:MM UTC]
set -euo pipefail
cd "$(dirname "$0")/.."
deadline=${1:-}
run() { segue benchmark "benchmarks/grids/attacks_$1.yaml" ${deadline:+--deadline "$deadline"} --only "$2"; }
for set in webface10 orl celeba234; do
  run $set "*|dlib-*|none|0"                                    # dlib: every row, full and partial
done
for set in webface10 orl celeba234; do
  run $set "segue|resnet18|projection|0,robust_rem|resnet18|projection|0,clean|resnet18|projection|0"
  run $set "segue|resnet18|ueraser|0,robust_rem|resnet18|ueraser|0,clean|resnet18|ueraser|0"
  run $set "segue_p3|resnet18|none|0,robust_rem_p3|resnet18|none|0,clean_p3|resnet18|none|0"
done
for set in webface10 orl celeba234; do
  run $set "*|facenet-*|none|0"
done
for set in orl celeba234 webface10; do
  run $set "clean|finetune|none|0,segue|finetune|none|0,robust_rem|finetune|none|0"
done
for set in orl celeba234 webface10; do
  run $set "*"                                                  # the rest, grid order
done
