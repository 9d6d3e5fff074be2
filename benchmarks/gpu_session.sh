#!/usr/bin/env bash
# One GPU run (15 device-minutes in all): everything the CPU cannot do in time, as parallel
# processes on one GPU, each under a deadline so that whatever finished comes back.
#
#   phase A (t=0):  3 robust generators (configs/robust_112.yaml; smooth 1, 2, 4; fine-tuned from the
#                   shipped one) and an unsupervised generator train; Table I cells (issue 4) and the shipped generator's robustness rows
#                   (issue 6) run beside them.
#   phase B:        once the robust generators exist, their robustness rows (benchmarks/grids/robust_gpu.yaml).
#
# Run from the repository root on the GPU machine (the device tool), with WebFace10 carried:
#   bash benchmarks/gpu_session.sh            # GSEC, TOTAL and DEV override the budgets/device
#   TOTAL=210 bash benchmarks/gpu_session.sh topup   # then: the cells the main run left, one process each
# Results: runs/gpu/ (weights, per-process benchmark folders, logs), packed into $OUT/gpu_session.tgz.
source "$(dirname "$0")/gpu_lib.sh"
train_g_smooth() {  # train_g_smooth NAME SMOOTH: fine-tuned from the shipped generator
  train_g "$1" --epochs 60 --smooth "$2" --init shipped
}

T1=benchmarks/grids/table1_gpu.yaml
R=benchmarks/grids/robust_gpu.yaml
if [ "${1:-main}" = topup ]; then
  # A second, shorter call (the budget's remainder): one process per cell still missing after the
  # main run. Needs runs/gpu/robust_s4.safetensors from the main run (carried).
  n=0
  for cell in 'em_classwise|resnet50|none|0' 'em_classwise|mobilenet_v2|none|0' 'em_classwise|efficientnet_b1|none|0' \
              'lsp|resnet18|none|2' 'segue|resnet18|none|2' 'segue|resnet18|mixup|0' 'segue|resnet18|cutmix|0'; do
    n=$((n + 1)); bench "t1_topup$n" "$T1" "$cell"
  done
  for cell in 'segue_default|resnet18|jpeg_q75|0' 'segue_robust_lf4|resnet18|downscale_x0.25|0' \
              'segue_robust_lf4|resnet18|grayscale|0' 'segue_robust_lf4|resnet18|jpeg_q75|0' 'segue_robust_lf4|resnet18|adv_4|0'; do
    n=$((n + 1)); bench "r_topup$n" "$R" "$cell"
  done
  wait
  finish gpu_session_topup.tgz
  exit 0
fi

# ---- phase A
train_g_smooth robust_s1 1; G1=$!
train_g_smooth robust_s2 2; G2=$!
train_g_smooth robust_s4 4; G4=$!
bg unsup_webface10 python3 benchmarks/unsupervised.py victims --device "$DEV" --seeds 0 1 --g-epochs 60 \
  --max-seconds "$GSEC" --datasets WebFace10 --name unsupervised_gpu
bench t1_main "$T1" 'clean|resnet18|none|1,random|resnet18|none|1,lsp|resnet18|none|1,segue|resnet18|none|1,clean|resnet18|none|2,random|resnet18|none|2,lsp|resnet18|none|2,segue|resnet18|none|2'
bench t1_em "$T1" 'em_classwise|resnet18|none|1,em_classwise|resnet18|none|2,em_classwise|resnet18|adv_*|0,em_classwise|resnet50|none|0,em_classwise|mobilenet_v2|none|0,em_classwise|efficientnet_b1|none|0,em_classwise|vit_tiny|none|0,em_classwise|inception_v3|none|0'
bench t1_archs "$T1" 'segue|resnet18|adv_2|0,segue|resnet50|none|0,segue|mobilenet_v2|none|0,segue|efficientnet_b1|none|0,segue|vit_tiny|none|0,segue|inception_v3|none|0,clean|resnet50|none|0,clean|mobilenet_v2|none|0,clean|efficientnet_b1|none|0,clean|vit_tiny|none|0,clean|inception_v3|none|0'
bench t1_misc "$T1" 'em_samplewise|resnet18|none|0,segue|resnet18|cutout|0,segue|resnet18|mixup|0,segue|resnet18|cutmix|0,segue|resnet18|bitdepth_4|0'
bench r_default "$R" 'segue_default|resnet18|adv_4|0,segue_default|resnet18|jpeg_q30|0,segue_default|resnet18|downscale_x0.25|0,segue_default|resnet18|grayscale_jpeg_q30|0,segue_default|resnet18|blur_k5s1|0,segue_default|resnet18|jpeg_q75|0,segue_default|*'

# ---- phase B: each robust generator's rows as soon as it exists
robust_rows() {  # robust_rows PID METHOD WEIGHTS ADV
  wait "$1"
  if [ ! -f "$3" ]; then echo "no $3: skipping $2"; return; fi
  bench "${2}_a" "$R" "$2|resnet18|none|0,$2|resnet18|jpeg_q10|0,$2|resnet18|downscale_x0.5|0,$2|resnet18|downscale_x0.25|0,$2|resnet18|grayscale|0"
  bench "${2}_b" "$R" "$2|resnet18|grayscale_jpeg_q30|0,$2|resnet18|jpeg_q30|0,$2|resnet18|blur_k5s1|0,$2|resnet18|jpeg_q75|0"
  if [ "$4" = adv ]; then bench "${2}_adv" "$R" "$2|resnet18|adv_4|0"; fi
}
robust_rows $G1 segue_robust runs/gpu/robust_s1.safetensors adv
robust_rows $G2 segue_robust_lf2 runs/gpu/robust_s2.safetensors adv
robust_rows $G4 segue_robust_lf4 runs/gpu/robust_s4.safetensors no
echo "phase B started at $(( $(date +%s) - T0 )) s"
wait
cp -f benchmarks/results/unsupervised_gpu.* runs/gpu/ 2>/dev/null
finish gpu_session.tgz
