#!/usr/bin/env bash
# The GPU check of seqbench.cells.triton (issue 17), in one go (about 5-8 minutes on an H200):
#   1. parity on CUDA: tests/test_triton.py (its "cuda" cases run the compiled kernels),
#      tests/test_cuda.py and tests/test_fused.py's CUDA cases (HandRNN on CUDA now runs the
#      Triton kernels: parity with cuDNN to 1e-4, float32, TF32 off);
#   2. `seqbench bench --device cuda`: rnn, lstm, gru x builtin (cuDNN), hand (triton, CUDA graph)
#      x T = 100, 1000 (and 2T), B = 64, H = 128 and 256; rows to $OUT/bench.csv;
#   3. the same at H = 128 with SEQBENCH_TRITON=0 (hand (fused, CUDA graph)), the baseline;
#   4. block sizes: benchmarks/gpu_triton_blocks.py, T = 1000, rows to $OUT/blocks.csv.
# Each part has its own time limit and a failure does not stop the next; the log is
# $OUT/gpu_triton.log. Run from anywhere on a machine with a CUDA GPU, torch and triton (no
# install needed: the checkout is put on PYTHONPATH):
#   OUT=/tmp/out benchmarks/gpu_triton.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source benchmarks/gpu_parts.sh
gpu_setup gpu_triton

part environment 60 "$PY" -c '
import torch, triton
from seqbench.cells import triton as tk
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("triton", triton.__version__, "device", torch.cuda.get_device_name(),
      "capability", torch.cuda.get_device_capability())
print("kernels used on cuda:", tk.used_on(torch.device("cuda")), "blocks", tk.blocks())
assert tk.used_on(torch.device("cuda")), "the Triton path is not taken on this machine"'
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv || true

part "parity tests on CUDA" 200 "$PY" -m pytest -q -p no:cacheprovider -rs \
  tests/test_triton.py tests/test_cuda.py
part "fused-path tests, CUDA cases" 120 "$PY" -m pytest -q -p no:cacheprovider -k cuda \
  tests/test_fused.py

BENCH=(-m seqbench bench --device cuda --cell rnn --cell lstm --cell gru -T 100 -T 1000
       --batch 64 --out "$OUT/bench.csv")
part "bench H=128: hand (triton) vs cuDNN" 150 "$PY" "${BENCH[@]}" --hidden 128
part "bench H=256: hand (triton) vs cuDNN" 150 "$PY" "${BENCH[@]}" --hidden 256
part "bench H=128, SEQBENCH_TRITON=0: hand (fused) vs cuDNN" 120 \
  env SEQBENCH_TRITON=0 "$PY" "${BENCH[@]}" --hidden 128 --no-probe
part "block sizes, T=1000" 120 "$PY" benchmarks/gpu_triton_blocks.py --out "$OUT/blocks.csv"

finish "rows: $OUT/bench.csv, $OUT/blocks.csv"
