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
# Run from anywhere on a machine with a CUDA GPU and seqbench's dependencies (no install needed:
# the checkout is put on PYTHONPATH):
#   OUT=/tmp/out benchmarks/gpu_sweeps.sh
set -uo pipefail
cd "$(dirname "$0")/.."
SWEEP_SECONDS=${SWEEP_SECONDS:-240}
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

# SIGINT after SWEEP_SECONDS, as Ctrl-C: the sweep keeps the rows of the runs that finished, stops
# its workers and exits 130, which is the plan here, not a failure
echo
echo "== $(date +%T) papers, profile paper, T = 500-1000, ${SWEEP_SECONDS}s"
timeout -s INT -k 30 "$SWEEP_SECONDS" "$PY" -m seqbench sweep tasks/papers.toml --profile paper \
  -T 500 -T 600 -T 750 -T 1000 --device cuda --per-gpu "$PER_GPU" --checkpoint-every 500 \
  --out results/papers
rc=$?
echo "== papers sweep: exit $rc"
[ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$rc" -eq 130 ] || failed+=("papers sweep (exit $rc)")
if [ -f results/papers/runs.csv ]; then
  cp results/papers/runs.csv "$OUT/papers_runs.csv"
  tar czf "$OUT/papers_runs.tar.gz" -C results/papers runs  # with the checkpoints in flight
  "$PY" -m seqbench published --profile paper --out "$OUT/published_paper.csv" || true
fi

finish "files in $OUT"
