# Helpers shared by the GPU run scripts (sourced, not run). Every process runs under one
# hard stop, TOTAL seconds after T0, so that whatever finished comes back before the device call ends.
#   GSEC: generator time budget (s); TOTAL: hard stop (s after start); DEV: torch device
set -u
T0=$(date +%s)
GSEC=${GSEC:-200}
TOTAL=${TOTAL:-545}
DEV=${DEV:-cuda}
OUT=${OUT:-runs/gpu/out}
STAMP() { date -u -d "@$((T0 + $1))" +%Y-%m-%dT%H:%M:%S; }
LATE=$(STAMP $((TOTAL - 70)))   # no new victim cell after this
mkdir -p runs/gpu/logs "$OUT"
if [ -d .whl ]; then python3 -m pip install -q --no-deps --no-index --target /tmp/site .whl/*.whl >/dev/null 2>&1; fi
export PYTHONPATH=/tmp/site:src${PYTHONPATH:+:$PYTHONPATH}
export SEGUE_WEBFACE10=${SEGUE_WEBFACE10:-.devdata/shared/WebFace10}
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee runs/gpu/logs/gpu.txt
python3 -c "import torch, kornia; print('torch', torch.__version__, 'kornia', kornia.__version__, 'cuda', torch.cuda.is_available())"

left() { echo $((TOTAL - ($(date +%s) - T0))); }
bg() {  # bg NAME CMD...: run under the hard stop, log to runs/gpu/logs/NAME.log
  local name=$1; shift
  timeout -k 5 "$(left)" "$@" >"runs/gpu/logs/$name.log" 2>&1 &
}
bench() {  # bench NAME GRID PATTERNS
  bg "$1" python3 -m segue.cli benchmark "$2" -o "runs/gpu/bench/$1" --device "$DEV" --deadline "$LATE" --only "$3"
}
train_g() {  # train_g NAME TRAIN-FLAGS...: configs/robust_112.yaml under the generator budget
  local name=$1; shift
  bg "g_$name" python3 -m segue.cli train "$SEGUE_WEBFACE10/train_clean" --config configs/robust_112.yaml \
    --epochs 200 --max-seconds "$GSEC" -o "runs/gpu/$name.safetensors" --device "$DEV" "$@"
}
finish() {  # finish ARCHIVE: pack the run's results and show each log's end
  echo "all done at $(( $(date +%s) - T0 )) s"
  tar czf "$OUT/$1" --exclude=out runs/gpu
  for f in runs/gpu/logs/*.log; do echo "== $f"; tail -n 2 "$f"; done
}
