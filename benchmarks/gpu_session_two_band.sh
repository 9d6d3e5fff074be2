#!/usr/bin/env bash
# GPU run 2: two-band robust generators. Run 1 (gpu_session.sh) showed that a
# fine delta (robust_s1) survives grayscale, JPEG-30 and adversarial training but not downscaling,
# blur or JPEG-10, and a low-passed one (robust_s4) the other way round. Here G gets both bands
# (GeneratorConfig.low_band) and learns how to share the budget through the robust distortion layer.
#
#   phase A (t=0): three two-band generators fine-tuned from run 1's weights (GSEC s each):
#                  2band_s1 (from robust_s1), 2band_s4 (from robust_s4), 2band_luma (from robust_s1,
#                  brightness-only coarse band); beside them, robust_s1's missing rows.
#   phase B:       each two-band generator's ten rows as soon as it exists (4 processes each).
#
#   long (a second call on the same warm machine): 2band_s4 trained on for another GSEC s, and
#                  the six rows that decide between it and 2band_s4.
#
# Run from the repository root on the GPU machine, with .whl and WebFace10 carried:
#   TOTAL=530 GSEC=210 bash benchmarks/gpu_session_two_band.sh
#   TOTAL=290 GSEC=130 bash benchmarks/gpu_session_two_band.sh long
# Then here: python benchmarks/collect_gpu_session.py PATH/gpu_session_two_band.tgz PATH/gpu_session_two_band_long.tgz
source "$(dirname "$0")/gpu_lib.sh"
R=benchmarks/grids/robust_gpu.yaml
if [ "${1:-main}" = long ]; then
  M=segue_2band_s4_long
  train_g robust_2band_s4_long --low-band 4 --init runs/gpu/robust_2band_s4.safetensors; wait $!
  for c in none grayscale_jpeg_q30 jpeg_q10 jpeg_q75 downscale_x0.25 adv_4; do bench "l_$c" "$R" "$M|resnet18|$c|0"; done
  wait
  tar czf "$OUT/gpu_session_two_band_long.tgz" runs/gpu/robust_2band_s4_long* runs/gpu/bench/l_* \
    runs/gpu/logs/g_robust_2band_s4_long.log runs/gpu/logs/l_*
  for f in runs/gpu/logs/l_*.log; do tail -n 1 "$f"; done
  exit 0
fi
cp benchmarks/results/robust_gpu/robust_s1.* benchmarks/results/robust_gpu/robust_s4.* runs/gpu/

# ---- phase A
train_g robust_2band_s1 --low-band 4 --init runs/gpu/robust_s1.safetensors; GA=$!
train_g robust_2band_s4 --low-band 4 --init runs/gpu/robust_s4.safetensors; GB=$!
train_g robust_2band_luma --low-band 4 --low-band-luma --init runs/gpu/robust_s1.safetensors; GC=$!
bench s1_rows "$R" 'segue_robust|resnet18|grayscale|0,segue_robust|resnet18|jpeg_q75|0'
bench s1_seeds "$R" 'segue_robust|resnet18|none|1,segue_robust|resnet18|none|2'

# ---- phase B
rows() {  # rows PID METHOD WEIGHTS
  wait "$1"
  if [ ! -f "$3" ]; then echo "no $3: skipping $2"; return; fi
  bench "${2}_a" "$R" "$2|resnet18|none|0,$2|resnet18|grayscale|0,$2|resnet18|grayscale_jpeg_q30|0"
  bench "${2}_b" "$R" "$2|resnet18|downscale_x0.5|0,$2|resnet18|blur_k5s1|0,$2|resnet18|downscale_x0.25|0"
  bench "${2}_c" "$R" "$2|resnet18|jpeg_q10|0,$2|resnet18|jpeg_q30|0,$2|resnet18|jpeg_q75|0"
  bench "${2}_d" "$R" "$2|resnet18|adv_4|0"
}
rows $GA segue_2band_s1 runs/gpu/robust_2band_s1.safetensors
rows $GB segue_2band_s4 runs/gpu/robust_2band_s4.safetensors
rows $GC segue_2band_luma runs/gpu/robust_2band_luma.safetensors
echo "phase B started at $(( $(date +%s) - T0 )) s"
wait
rm -f runs/gpu/robust_s1.* runs/gpu/robust_s4.*   # run 1's, already in benchmarks/results
finish gpu_session_two_band.tgz
