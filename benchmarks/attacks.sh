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
# One line per step: the grids (in order) and the cells (patterns over METHOD|ATTACKER|COUNTERMEASURE|SEED).
while read -r sets pats; do
  [[ -z $sets || $sets == \#* ]] && continue
  for set in ${sets//,/ }; do run "$set" "$pats"; done
done <<EOF
webface10,orl,celeba234  *|dlib-*|none|0
orl,celeba234,webface10  *|facenet-*|none|0
orl,celeba234            $(cells '|finetune|none|0' $key)
webface10                segue|finetune|none|0,robust_rem|resnet18|ueraser|0,segue|resnet18|projection|0,segue|resnet18|ueraser|0,robust_rem|resnet18|projection|0
orl,celeba234            $(cells '|resnet18|none|0' $key),$(cells '|resnet18|projection|0' $key),$(cells '|resnet18|ueraser|0' $key)
webface10                $(cells '|finetune|none|0' $key),clean|resnet18|projection|0
# the partial column, then the remaining rows (class-wise EM last: it is generated per set, ~15 min)
orl,celeba234            $(cells '_p3|resnet18|none|0' $key,$rest)
orl                      $(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)
celeba234                $(cells '|resnet18|none|0' $rest),$(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)
webface10                $(cells '_p3|resnet18|none|0' $key)
orl,celeba234            *|resnet18|*|0
# then cheap cells before dear ones: ORL's rest (~2 min a cell), finetune everywhere (1-5 min;
# class-wise EM is generated first, 11-20 min), CelebA's seeds (~3 min), WebFace10's from-scratch attacks (~12 min)
orl                      *
celeba234,webface10      *|finetune|none|0
celeba234                *|resnet18|none|1
webface10                clean|resnet18|ueraser|0,robust|resnet18|projection|0,robust|resnet18|ueraser|0
celeba234                *|resnet18|none|2
webface10                $(cells '_p3|resnet18|none|0' $rest),$(cells '|resnet18|projection|0' $rest),$(cells '|resnet18|ueraser|0' $rest)
orl,celeba234,webface10  *|*|*|0
orl,celeba234,webface10  *
EOF
