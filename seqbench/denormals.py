"""Flush denormal floats to zero on the CPU: one call per process.

A vanishing gradient is the subject of this suite, and on its way to zero it passes through
float32's denormal range (below 1.18e-38, the smallest normal number). x86 CPUs compute with
denormal operands through slow microcode assists, 10-100x slower than with normal numbers, so a
cell whose gradient vanishes trains many times slower than one whose gradient does not: measured
on this project's 2-core machine, one thread, a default-initialized built-in LSTM on the adding
problem at T = 500 took 3.7-4.5 s per training step, and 0.39-0.40 s with denormals flushed
(docs/references.md section 7). Flushing (the FTZ/DAZ modes, through
``torch.set_flush_denormal``) turns such values into zeros: they are below float32's normal range,
which the gradient probe reports as underflow anyway, and arithmetic on normal numbers is
unchanged. The mode is the process's: it also turns Python's and NumPy's float64 numbers below
2.2e-308 into zeros, and code that relies on subnormal numbers (the hypothesis test library, for
one) refuses to run in such a process.

The seqbench commands that compute (``run``, ``sweep`` and its workers, Ray tasks, ``grads``,
``bench``) call ``flush()`` before their work; ``SEQBENCH_DENORMALS=keep`` in the environment keeps
the CPU's default, for comparisons. From Python, call ``seqbench.denormals.flush()`` once before
the work (before torch starts its worker threads, which inherit the mode). ``state()`` is recorded
with every result (column ``denormals``).
"""

from __future__ import annotations

import os

#: set SEQBENCH_DENORMALS=keep to compute with denormals (the CPU's default)
ENV = "SEQBENCH_DENORMALS"

_state = "keep"


def flush(force: bool = False) -> str:
    """Flush denormals to zero in this process (unless ``SEQBENCH_DENORMALS=keep``, or ``force``);
    returns ``state()``. ``n/a`` where the CPU has no such mode."""
    global _state
    if _state == "flush":
        return _state
    if os.environ.get(ENV, "").strip().lower() == "keep" and not force:
        return _state
    import torch

    _state = "flush" if torch.set_flush_denormal(True) else "n/a"
    return _state


def state() -> str:
    """``flush`` (denormals are zeros), ``keep`` (the CPU's default) or ``n/a`` (no such mode)."""
    return _state
