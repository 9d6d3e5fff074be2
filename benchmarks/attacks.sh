#!/usr/bin/env bash
# The attack tables (benchmarks/results/attacks/{wf10,orl,celeba234}/attacks.md), cells in
# priority order: embedding attackers (seconds each) first, then finetune and the from-scratch
# attacks on the default and robust_rem generators and the clean reference, then everything else.
# Resumable: a rerun skips finished cells. DEADLINE (HH:MM UTC, the next such time,
# or an ISO timestamp): no cell starts after it.
#
#   bash benchmarks/attacks.sh [DEADLINE]
set -euo pipefail
cd "$(dirname "$0")/.."
deadline=${1:-}
run() { segue benchmark "benchmarks/grids/attacks_$1.yaml" ${deadline:+--deadline "$deadline"} --only "$2"; }
key="segue,robust_rem,clean"
rest="robust,random,lsp"
cells() { local out=""; for m in ${2//,/ }; do out+="${out:+,}$m$1"; done; echo "$out"; }  # SUFFIX ROWS
for set in webface10 orl celeba234; do run $set "*|dlib-*|none|0"; done
for set in orl celeba234 webface10; do run $set "*|facenet-*|none|0"; done
for set in orl celeba234; do run $set "$(cells '|finetune|none|0' $key)"; done
run webface10 "segue|finetune|none|0,robust_rem|resnet18|ueraser|0,segue|resnet18|projection|0,segue|resnet18|ueraser|0,robust_rem|resnet18|projection|0"
for set in orl celeba234; do run $set "$(cells '|resnet18|none|0' $key),$(cells '|resnet18|projection|0' $key),$(cells '|resnet18|ueraser|0' $key)"; done
run webface10 "$(cells '|finetune|none|0' $key),clean|resnet18|projection|0"
# the partial column, then the remaining rows (class-wise EM last: it is generated per set, ~15 min)
for set in orl celeba234; do run $set "$(cells '_p3|resnet18|none|0' $key,$rest)"; done
run orl "$(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)"
run celeba234 "$(cells '|resnet18|none|0' $rest),$(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)"
run webface10 "$(cells '_p3|resnet18|none|0' $key)"
for set in orl celeba234; do run $set "*|resnet18|*|0"; done
# then cheap cells before dear ones: ORL's rest (~1 min a cell), finetune everywhere (1-5 min),
# CelebA's seeds (~3 min), WebFace10's from-scratch attacks (~12 min)
run orl "*"
for set in celeba234 webface10; do run $set "*|finetune|none|0"; done
run celeba234 "*|resnet18|none|1"
run webface10 "clean|resnet18|ueraser|0,robust|resnet18|projection|0,robust|resnet18|ueraser|0"
run celeba234 "*|resnet18|none|2"
run webface10 "$(cells '_p3|resnet18|none|0' $rest),$(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)"
for set in orl celeba234 webface10; do run $set "*|*|*|0"; done
for set in orl celeba234 webface10; do run $set "*"; done
