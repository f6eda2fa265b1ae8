#!/usr/bin/env bash
# Run every speed benchmark on CUDA at the sizes that matter (under 8 minutes on one H200),
# writing JSON with the device name to benchmarks/results/gpu/.
#
#   bash benchmarks/gpu.sh              # on a CUDA machine
#   bash benchmarks/gpu.sh --dry-run    # CPU, tiny sizes, temporary output: what CI runs
#   bash benchmarks/gpu.sh --only bp_grid crf_speed
#
# Extra arguments go to benchmarks/gpu_suite.py (--device, --out, --only).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python="python3"; fi
fi
for arg in "$@"; do
  if [[ "$arg" == "--dry-run" ]]; then export OMP_NUM_THREADS=1; fi
done
if [[ " $* " != *" --dry-run "* ]] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
cd "$root"
exec "$python" "$here/gpu_suite.py" "$@"
