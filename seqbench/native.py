"""Compiled per-step LSTM kernels for the CPU (``csrc/lstm_cpu.cpp``), built on first use.

The hand-written LSTM's per-step pointwise work is some 20 torch calls per step, each costing
2-4 us of dispatch here: more than its arithmetic, and what kept the hand LSTM 1.4x slower than
oneDNN's fused kernel on the CPU (README.md, Performance). ``csrc/lstm_cpu.cpp`` does the same
arithmetic with the same formulas in one vectorized pass per step and direction; seqbench.cells.lstm
uses it for float32 LSTMs on the CPU when it is available, and its own torch calls otherwise
(float64, CUDA, no compiler). Both paths are tested against each other and against nn.LSTM.

The extension is compiled with torch.utils.cpp_extension for the CPU's vector width (AVX-512 or
AVX2, as torch reports it) the first time a process needs it (about 25 s, once per machine: the
build is cached under ~/.cache/torch_extensions; concurrent processes wait for one build). If
there is no compiler, or the CPU has neither instruction set, the torch calls are used.
``SEQBENCH_NATIVE=0`` in the environment turns the compiled path off (for comparisons).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import torch

#: set SEQBENCH_NATIVE=0 to use the torch calls only
ENV = "SEQBENCH_NATIVE"
SOURCE = Path(__file__).resolve().parent / "csrc" / "lstm_cpu.cpp"
#: compiler flags per torch CPU capability (ATen's Vectorized<float> follows CPU_CAPABILITY_*)
FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
               "-DCPU_CAPABILITY_AVX512", "-DCPU_CAPABILITY=AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2", "-DCPU_CAPABILITY=AVX2"],
}

_lock = threading.Lock()
_module = None
_tried = False
_why_not = ""


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "false", "no", "off")


def lstm_kernels():
    """The compiled module (``forward_step``, ``backward_step``), or None where unavailable."""
    global _module, _tried, _why_not
    if not enabled():
        return None
    with _lock:
        if _tried:
            return _module
        _tried = True
        capability = torch.backends.cpu.get_cpu_capability()
        if capability not in FLAGS:
            _why_not = f"CPU capability {capability} (needs AVX2 or AVX-512)"
            return None
        name = f"seqbench_lstm_cpu_{capability.lower()}"
        if not _built(name):
            print("seqbench: building the compiled LSTM loop (once per machine, about 25 s)",
                  file=sys.stderr)
        try:
            from torch.utils.cpp_extension import load

            _module = load(name=name, sources=[str(SOURCE)],
                           extra_cflags=["-O3", "-fopenmp", *FLAGS[capability]],
                           extra_ldflags=["-fopenmp"], verbose=False)
        except Exception as e:  # no compiler, no ninja, a failed build: the torch calls serve
            _why_not = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            print(f"seqbench: compiled LSTM kernel unavailable ({_why_not}); using torch calls",
                  file=sys.stderr)
        return _module


def _built(name: str) -> bool:
    """Whether a build of ``name`` is in torch's extension cache (a guess; True if unknown)."""
    try:
        from torch.utils.cpp_extension import _get_build_directory

        return any(Path(_get_build_directory(name, verbose=False)).glob(f"{name}*.so"))
    except Exception:  # a private torch helper: if it moved, say nothing
        return True


def available() -> bool:
    """Whether the compiled kernels are (or can be) used in this process; builds them if needed."""
    return lstm_kernels() is not None


def why_not() -> str:
    """Why the compiled kernels are not used ('' if they are, or were not tried yet)."""
    return _why_not if enabled() else f"{ENV}=0"
