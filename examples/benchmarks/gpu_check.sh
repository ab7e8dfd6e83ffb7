#!/usr/bin/env bash
# The GPU lane (issue 23): the CUDA tests and the training and inference figures of one GPU,
# in at most 8 minutes, ending in a Markdown report on stdout (the steps' own output goes to
# stderr as they run).
#
#   bash examples/benchmarks/gpu_check.sh             # on a machine with a CUDA GPU (sized for an H100/H200)
#   bash examples/benchmarks/gpu_check.sh --dry-run   # anywhere: would it run?
#
# Each step runs under `timeout`; one that fails or runs out of time is reported and the next
# one runs; the exit status is 1 if any failed.
#   tests        python -m pytest -m cuda: every test marked cuda (tests/test_cuda.py)
#   throughput   train_throughput.py: PSPNet-ResNet50-D8's training step, 512 px, batch 8, in fp32,
#                bf16 and bf16 + torch.compile (MFU against the dense bf16 peak on an H100 or H200)
#   train        ctxseg train examples/benchmarks/gpu_train.toml: the same model, batch and settings
#                through ctxseg's training loop; its images/s from metrics.json
#   inference    inference.py speed --size 512: FCN-ResNet50, torchvision's against ctxseg's paths
# --dry-run runs the same commands on the CPU, shrunk: the tests collected, not run; 32-48 px
# images, one step, one variant; torch.compile off (TORCH_COMPILE_DISABLE=1); gpu_train.toml
# extended to the CPU; three times the time limits (the CPU is slow and may be shared). It
# checks that every script imports, parses the GPU run's arguments (the tiny settings come
# after them and win) and runs; its figures mean nothing.

set -euo pipefail
cd "$(dirname "$0")/../.."

case "${1-}" in
  "") dry_run=0 ;;
  --dry-run) dry_run=1 ;;
  *) echo "usage: bash examples/benchmarks/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1

IFS='|' read -r gpu versions < <("$python" -c 'import torch
name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
print(name, f"torch {torch.__version__}, CUDA {torch.version.cuda}", sep="|")')

tests=(-m pytest -m cuda -q -rs)
throughput=(examples/benchmarks/train_throughput.py --device cuda --size 512 --batch 8
            --variants fp32 bf16 bf16+compile)
spec=examples/benchmarks/gpu_train.toml
inference=(examples/benchmarks/inference.py speed --device cuda --size 512)
case $gpu in  # dense bf16 peak in TFLOP/s, from NVIDIA's datasheets
  *H100*PCIe*) peak=756 ;;
  *H100* | *H200*) peak=989 ;;
  *) peak="" ;;
esac
if (( dry_run )); then
  bash -n examples/benchmarks/gpu_check.sh
  gpu="none: dry run on the CPU" peak=989  # a peak all the same, to draw the MFU column
  export TORCH_COMPILE_DISABLE=1 CTXSEG_DATA_DIR=$work/data XDG_CACHE_HOME=$work/cache  # user's caches untouched
  tests+=(--collect-only)
  throughput+=(--size 32 --batch 2 --steps 1 --rounds 1 --variants bf16+compile --device cpu)
  cat > "$work/dry_train.toml" <<EOF
extends = "$PWD/$spec"

[data]
batch_size = 2
workers = 0

[data.dataset]
image_size = 48
train_size = 2
val_size = 1

[run]
steps = 1
device = "cpu"
precision = "fp32"
EOF
  spec=$work/dry_train.toml
  inference+=(--size 32 --repeats 1 --device cpu)
elif [[ -z $gpu ]]; then
  echo "gpu_check: torch finds no CUDA device here ($versions); --dry-run checks the script on a CPU" >&2
  exit 1
fi
[[ -z $peak ]] || throughput+=(--peak-tflops "$peak")

rows=()
failed=0

# run KEY LIMIT COMMAND...: COMMAND under `timeout LIMIT` seconds (three times that in a dry run),
# its output to stderr and to $work/KEY.log; sets status and seconds
run() {
  local key=$1 limit=$2 start=$SECONDS
  shift 2
  echo "gpu_check: $key: $*" >&2
  status=0
  timeout --kill-after=10 $((limit * (1 + 2 * dry_run))) "$@" 2>&1 | tee "$work/$key.log" >&2 || status=$?
  seconds=$((SECONDS - start))
}

# row STEP FIGURE: the report's row for the command run last
row() {
  local result=ok
  if (( status == 124 || status == 137 )); then
    result="timed out"
  elif (( status )); then
    result="failed (exit $status)"
  fi
  (( status == 0 )) || failed=1
  rows+=("| $1 | $result | ${2:--} | $seconds |")
}

run tests 135 "$python" "${tests[@]}"
row "\`pytest -m cuda\`" "$(sed -nE '$s/ in [0-9.]+s.*$//p' "$work/tests.log")"

run throughput 165 "$python" "${throughput[@]}"
row "\`train_throughput.py\`, 512 px, batch 8" "$(awk -F' *[|] *' '$2 == "bf16+compile" {
  print $2 ": " $4 " images/s, " $5 " fp32" ($7 == "" ? "" : ", MFU " $7) }' "$work/throughput.log")"

run train 125 "$python" -m ctxseg train "$spec" --out "$work/train" --quiet
figure=""
if (( status == 0 )); then
  figure=$("$python" - "$work/train/metrics.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{m['images_per_second']:.1f} images/s, first step {m['first_step_seconds']:.0f} s (compiling), "
      f"peak {m['peak_memory_mib']:.0f} MiB")
EOF
  )
fi
row "\`ctxseg train\` PSPNet-ResNet50-D8, 512 px, batch 8, bf16 + compile" "$figure"

run inference 40 "$python" "${inference[@]}"
row "\`inference.py speed\`, 512 px" "$(awk -F' *[|] *' '$2 ~ /default fast path/ {
  print "ctxseg, default fast path: " $3 " s per image, " $4 " torchvision eager fp32" }' "$work/inference.log")"

echo
echo "### GPU check: $gpu"
echo
echo "\`bash examples/benchmarks/gpu_check.sh${1:+ $1}\`, $(date -u +%F), $versions," \
  "$((SECONDS / 60)) min $((SECONDS % 60)) s:"
echo
echo "| step | result | figure | seconds |"
echo "|---|---|---|---:|"
printf '%s\n' "${rows[@]}"
for key in throughput inference; do
  echo
  grep -E '^(PSPNet|FCN|\|)' "$work/$key.log" || echo "($key: no table; its output is above)"
done
exit "$failed"
