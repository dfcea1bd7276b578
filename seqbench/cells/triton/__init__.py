"""Triton kernels for the hand-written Elman RNN, LSTM and GRU on CUDA (float32).

The fused torch path (seqbench.cells.fused and the Functions beside each cell) launches, per time
step, a matrix product and several pointwise kernels, forward and backward; on a GPU these small
launches dominate (docs/references.md section 7.6). Here each step is **one** kernel forward and
one backward (seqbench.cells.triton.kernels):

forward
    the input projection of all steps (biases folded in; the GRU's b_hn stays apart) is one matrix
    product before the loop, as in the fused path; then per step one kernel on a grid of
    (batch blocks, hidden-unit blocks): each program computes the recurrent product h_{t-1} W_hh^T
    for every gate of its hidden units (``tl.dot``) and applies the gate nonlinearities and the
    state update to its tile at once, writing h_t (and c_t) and what the backward needs: the gate
    activations (the LSTM's i, f, g, o; the GRU's r, z, n and W_hn h + b_hn).
backward
    per step one kernel: dh_t = dL/dh_t + dgates_{t+1} W_hh (the GRU's plus dh_{t+1} z_{t+1}), the
    LSTM's dc_t, and the gate gradients of its tile; dh_t (and dc_t) of every step are kept, so
    the gradient probe's per-step norms (``norms_h`` / ``norms_c``) are taken in one call after the
    loop, in the same backward. The weight and bias gradients of all steps are then one matrix
    product with the stacked inputs [h_{t-1}, x_t, 1], the input gradient one more (the helpers
    of seqbench.cells.fused).

The equations, parameter layout and conventions are the fused path's (PyTorch's: gate order
i, f, g, o; r, z, n with b_hn inside r * (W_hn h + b_hn)); tanh and sigmoid are computed from
exp(-|x|) (no overflow). Matrix products in the kernels follow torch's TF32 switch
(``torch.backends.cuda.matmul.allow_tf32``: seqbench switches it off, so they are IEEE float32).

A persistent whole-sequence kernel would avoid the per-step launches, but the recurrent product is
all-to-all over hidden units, so it needs a grid-wide barrier per step (not portable) unless one
program owns all H units of its batch rows: possible (batch rows are independent), but then only
B / 16 programs run and each reads all of W_hh from L2 at every step; whether that beats one launch
per step (replayed from a CUDA graph by ``seqbench bench``) is for measurement on a GPU.

When: ``wanted(x)``: a CUDA float32 tensor, Triton importable (an optional dependency,
``pip install seqbench[triton]``), a GPU of compute capability 7.5 or more, and the environment
variable ``SEQBENCH_TRITON`` not ``0``. Otherwise the cells' fused torch path runs, and
``label(device)`` (the ``kernel`` column) says which: "hand (triton)" or None. On the CPU these
kernels run only in the tests, under Triton's interpreter (``kernels_for`` a CPU device).
Block sizes: ``SEQBENCH_TRITON_BLOCKS="BLOCK_B,BLOCK_H,BLOCK_K,num_warps"`` (default 16,32,32,4).
Each kernel variant is compiled on its first launch (about a second; Triton caches it on disk).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from pathlib import Path

import torch

#: the ``kernel`` column's value when these kernels run the recurrence
LABEL = "hand (triton)"
#: the environment variable that switches them off ("0")
ENV = "SEQBENCH_TRITON"
ENV_BLOCKS = "SEQBENCH_TRITON_BLOCKS"
DEFAULT_BLOCKS = (16, 32, 32, 4)
#: the oldest GPU architecture the kernels are used on
MIN_CAPABILITY = (7, 5)


@functools.cache
def available() -> bool:
    """Whether Triton can be imported (installed, and its import works)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
    except Exception:  # a broken install: the fused path runs
        return False
    return True


def enabled() -> bool:
    """Not switched off by ``SEQBENCH_TRITON=0`` (read at every call)."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _device_ok(device: torch.device) -> bool:
    if device.type != "cuda" or not torch.cuda.is_available():
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _capability(index) >= MIN_CAPABILITY


@functools.cache
def _capability(index: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def used_on(device: torch.device) -> bool:
    """Whether float32 layers on ``device`` run these kernels."""
    return device.type == "cuda" and enabled() and available() and _device_ok(device)


def wanted(x: torch.Tensor) -> bool:
    """Whether a layer with input ``x`` runs these kernels (else the fused torch path)."""
    return x.dtype == torch.float32 and used_on(x.device)


def label(device: torch.device) -> str | None:
    """``LABEL`` where float32 layers on ``device`` run these kernels, else None."""
    return LABEL if used_on(device) else None


def blocks() -> tuple[int, int, int, int]:
    """(BLOCK_B, BLOCK_H, BLOCK_K, num_warps): ``SEQBENCH_TRITON_BLOCKS`` or the defaults. The
    blocks must be powers of two of at least 16 (``tl.dot``'s smallest tile)."""
    text = os.environ.get(ENV_BLOCKS, "").strip()
    if not text:
        return DEFAULT_BLOCKS
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or any(v < 16 or v & (v - 1) for v in values[:3]) or values[3] < 1:
        raise ValueError(f"{ENV_BLOCKS} must be four integers BLOCK_B,BLOCK_H,BLOCK_K,num_warps "
                         f"(blocks powers of two >= 16), got {text!r}")
    return values  # type: ignore[return-value]


def kernels_for(device: torch.device):
    """The kernels module for tensors on ``device``: compiled for CUDA, run by Triton's
    interpreter for CPU tensors (the tests)."""
    return _load("interpret" if device.type == "cpu" else "compiled")


@contextlib.contextmanager
def interpreting(on: bool):
    """Triton's interpreter switched on or off for the block: ``triton.knobs`` (Triton 3.3 and
    later), else the environment variable ``TRITON_INTERPRET`` that older versions read."""
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        with knobs.runtime.scope():
            knobs.runtime.interpret = on
            yield
        return
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old


@functools.cache
def _load(mode: str):
    """A copy of seqbench/cells/triton/kernels.py executed with Triton's interpreter on or off
    (``triton.jit`` reads the switch when it decorates: each mode needs its own copy)."""
    name = f"{__name__}._kernels_{mode}"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("kernels.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with interpreting(mode == "interpret"):
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return module


from seqbench.cells.triton.layers import gru_layer, lstm_layer, rnn_layer  # noqa: E402

__all__ = ["LABEL", "available", "enabled", "gru_layer", "kernels_for", "label", "lstm_layer",
           "rnn_layer", "used_on", "wanted"]
