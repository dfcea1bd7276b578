#!/usr/bin/env bash
# The long-lag sweeps' GPU part (the long-lags issue), in one go on a lent GPU (about 6 minutes with
# the defaults; run it after benchmarks/gpu_triton.sh, or alone):
#   1. packed throughput: `seqbench bench --sweep-runs 16 --device cuda --per-gpu 8`, LSTM (cuDNN)
#      runs of 300 steps at T = 500, packed 8 on the GPU against one at a time, two rounds;
#      rows to $OUT/bench_sweep.csv (append them to results/bench_sweep.csv);
#   2. tasks/papers.toml --profile paper (the papers' 50,000 steps), the arms at T = 500-1,000 that
#      the CPU does not reach, packed PER_GPU (8) on the GPU for SWEEP_SECONDS (240), into
#      results/papers beside the CPU's rows (other config ids; the device column tells them
#      apart): the runs already committed there are skipped, so each GPU window adds to the last.
#      The runs.csv comes back as $OUT/papers_runs.csv (merge its new rows, by run_id, into
#      results/papers/runs.csv), the run folders as $OUT/papers_runs.tar.gz. The runs save their
#      state every 500 steps (--checkpoint-every): those still in flight at the end come back with
#      their checkpoint.pt (a finished run's is removed), and the next window continues them from
#      there when their folders are in results/papers/runs (untar the archive there, uncommitted:
#      git ignores checkpoint.pt, so give the device tool carry=["results/papers/runs"]).
#   3. with LONG_SECONDS > 0 (default 0: off), tasks/long.toml --profile gpu (adding, copy and
#      delayed recall up to T = 5,000, 30,000 steps) packed the same way for LONG_SECONDS, into
#      results/long_gpu: back as $OUT/long_gpu_runs.csv and $OUT/long_gpu_runs.tar.gz, continued
#      the same way (carry=["results/long_gpu"]).
# Run from anywhere on a machine with a CUDA GPU and seqbench's dependencies (no install needed:
# the checkout is put on PYTHONPATH):
#   OUT=/tmp/out benchmarks/gpu_sweeps.sh
set -uo pipefail
cd "$(dirname "$0")/.."
SWEEP_SECONDS=${SWEEP_SECONDS:-240}
LONG_SECONDS=${LONG_SECONDS:-0}
PER_GPU=${PER_GPU:-8}
source benchmarks/gpu_parts.sh
gpu_setup gpu_sweeps

part environment 60 "$PY" -c '
import torch
print("torch", torch.__version__, "cudnn", torch.backends.cudnn.version(),
      "device", torch.cuda.get_device_name(), "cores", __import__("os").cpu_count())'

part "packed sweep throughput" 150 "$PY" -m seqbench bench --sweep-runs 16 --sweep-steps 300 \
  --device cuda --per-gpu "$PER_GPU" --cell lstm --impl builtin -T 500 --batch 32 \
  --sweep-out "$OUT/bench_sweep.csv"

# packed_sweep NAME SECONDS OUTDIR SWEEP-ARGS...: the sweep packed on the GPU, checkpointed, stopped
# by SIGINT after SECONDS as Ctrl-C (it keeps the rows of the runs that finished, stops its workers
# and exits 130: the plan here, not a failure); OUTDIR's runs.csv and run folders (with the
# checkpoints of the runs in flight) come back as $OUT/NAME_runs.csv and $OUT/NAME_runs.tar.gz
packed_sweep() {
  local name=$1 seconds=$2 dir=$3
  shift 3
  echo
  echo "== $(date +%T) $name, ${seconds}s"
  timeout -s INT -k 30 "$seconds" "$PY" -m seqbench sweep "$@" --device cuda \
    --per-gpu "$PER_GPU" --checkpoint-every 500 --out "$dir"
  local rc=$?
  echo "== $name sweep: exit $rc"
  [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] || failed+=("$name sweep (exit $rc)")
  if [ -f "$dir/runs.csv" ]; then
    cp "$dir/runs.csv" "$OUT/${name}_runs.csv"
    tar czf "$OUT/${name}_runs.tar.gz" -C "$dir" runs
  fi
}

packed_sweep papers "$SWEEP_SECONDS" results/papers tasks/papers.toml --profile paper \
  -T 500 -T 600 -T 750 -T 1000
[ -f results/papers/runs.csv ] && { "$PY" -m seqbench published --profile paper \
  --out "$OUT/published_paper.csv" || true; }
if [ "$LONG_SECONDS" -gt 0 ]; then
  packed_sweep long_gpu "$LONG_SECONDS" results/long_gpu tasks/long.toml --profile gpu
fi

finish "files in $OUT"
