#!/usr/bin/env bash
# The generator trained on the 164 CelebA234 train people (experiments/weights/celeba234_112.safetensors,
# configs/recipes/celeba234.yaml; not shipped)
# in the attack tables of people it never saw (CelebA234 test people, ORL) and of WebFace10: its
# cells in priority order (cheap attackers first, then one from-scratch seed per set, the
# countermeasures, one person alone, the other seeds). Resumable: a rerun skips finished
# cells. DEADLINE (HH:MM UTC or ISO): no cell starts after it.
#
#   bash benchmarks/unseen_people.sh [DEADLINE]
set -euo pipefail
cd "$(dirname "$0")/.."
deadline=${1:-}
run() { segue benchmark "benchmarks/grids/attacks_$1.yaml" ${deadline:+--deadline "$deadline"} --only "$2"; }
while read -r sets pats; do
  [[ -z $sets || $sets == \#* ]] && continue
  for set in ${sets//,/ }; do run "$set" "$pats"; done
done <<LIST
celeba234,orl,webface10  celeba234|dlib-*|none|0,celeba234|facenet-*|none|0
celeba234,orl,webface10  celeba234|resnet18|none|0
celeba234                celeba234|resnet18|projection|0,celeba234|resnet18|ueraser|0
celeba234,orl            celeba234_p3|resnet18|none|0,celeba234_p3|dlib-linear|none|0
celeba234,orl            celeba234|resnet18|none|1,celeba234|resnet18|none|2
orl                      celeba234|resnet18|projection|0,celeba234|resnet18|ueraser|0
webface10                celeba234_p3|*|none|0,celeba234|resnet18|projection|0,celeba234|resnet18|ueraser|0
LIST
