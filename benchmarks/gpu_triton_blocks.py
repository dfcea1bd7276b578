"""Time one layer's training pass (forward, loss, backward) through seqbench.cells.triton's kernels
for a few block sizes (``SEQBENCH_TRITON_BLOCKS``), replayed from a CUDA graph, against cuDNN's
module (launched as ``seqbench bench`` launches it) and the fused torch path (graphed); CSV rows.

    python benchmarks/gpu_triton_blocks.py --out blocks.csv [-T 1000] [--hidden 128 --hidden 256]

Part of benchmarks/gpu_triton.sh; needs a CUDA device and Triton.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys

import torch

from seqbench.cells import triton as tk
from seqbench.cells.stack import HandRNN, builtin_module
from seqbench.provenance import resolve_device

#: BLOCK_B, BLOCK_H, BLOCK_K, num_warps (the first is the default)
CONFIGS = ["16,32,32,4", "16,16,32,2", "16,16,64,4", "16,64,32,4", "32,32,32,4"]


def graphed(fn):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (and compilation) off the capture
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def time_ms(fn, repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def training_pass(module, x):
    def run():
        out, _ = module(x)
        out.square().mean().backward()
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("-T", "--seq-len", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--hidden", type=int, action="append")
    ap.add_argument("--cell", action="append")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    device = resolve_device("cuda")  # TF32 off, as seqbench runs
    if not tk.used_on(device):
        sys.exit("the Triton kernels are not used on this device (Triton missing or SEQBENCH_TRITON=0)")
    T, B = args.seq_len, args.batch
    rows = []
    for cell in args.cell or ["rnn", "lstm", "gru"]:
        for H in args.hidden or [128, 256]:
            torch.manual_seed(0)
            x = torch.randn(T, B, 2, device=device)
            ref = builtin_module(cell, 2, H).to(device)
            hand = HandRNN(cell, 2, H).to(device)
            hand.load_state_dict(ref.state_dict())
            variants = {"cudnn": training_pass(ref, x)}
            os.environ[tk.ENV] = "0"
            variants["hand (fused, CUDA graph)"] = graphed(training_pass(hand, x))
            os.environ[tk.ENV] = "1"
            for config in CONFIGS:
                os.environ[tk.ENV_BLOCKS] = config
                variants[f"hand (triton, CUDA graph) {config}"] = graphed(training_pass(hand, x))
            os.environ.pop(tk.ENV_BLOCKS)
            for name, fn in variants.items():
                ms = time_ms(fn, args.repeats)
                rows.append({"cell": cell, "hidden": H, "seq_len": T, "batch": B,
                             "variant": name, "ms": round(ms, 3)})
                print(f"{cell:5s} H={H:4d} T={T} {name:40s} {ms:9.3f} ms", flush=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
