"""Keep large CPU tensors in the process heap: one call to glibc's ``mallopt`` per process.

PyTorch's CPU tensors come from ``malloc``. glibc serves a request above its mmap threshold with a
fresh ``mmap`` and unmaps it again on ``free``; the threshold adapts upwards to at most 32 MiB. A
recurrent layer's (T, B, H) tensors pass 32 MiB at B=64, H=128 from T of about 1000 on, and
oneDNN's LSTM allocates its workspaces fresh at every call, so each training step page-faults and
zero-fills hundreds of MiB anew (on this project's machine about 2.4 us per 4 KiB page: 1.3 GiB
per step for the built-in LSTM at T=2000). That made the step time grow faster than T and made
the built-in LSTM about twice as slow as it is (see README.md, Performance).

``tune()`` raises the mmap threshold to 2 GiB and switches off trimming, so that such blocks are
taken from, and returned to, the heap and reused from one step to the next. (With both at 1 GiB,
oneDNN's LSTM at T=2000 still page-faulted 600-900 MiB per step: the heap's free top grew past
the trim threshold and was handed back to the system.) The cost: memory freed by the process stays
with it, up to its peak use, instead of going back to the system.

The seqbench command line tunes every process it starts (the command, sweep workers, Ray tasks);
``SEQBENCH_MALLOC=default`` in the environment leaves glibc's defaults, for comparisons. From
Python, call ``seqbench.malloc.tune()`` once before the work. ``state()`` says what is in effect
and is recorded with every result (column ``malloc``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: requests up to this size come from the heap (mallopt takes an int: at most 2 GiB - 1)
MMAP_THRESHOLD = (1 << 31) - 1
#: -1: the heap's free top is never trimmed (returned to the system)
TRIM_THRESHOLD = -1
#: set SEQBENCH_MALLOC=default to keep glibc's defaults
ENV = "SEQBENCH_MALLOC"

_state = "default"


def _libc():
    """glibc, or None on other platforms (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only)
        return libc
    except (OSError, AttributeError):
        return None


def tune(force: bool = False) -> str:
    """Raise glibc's mmap and trim thresholds (once per process); returns ``state()``.

    Does nothing where glibc is not the C library, or when the environment says
    ``SEQBENCH_MALLOC=default`` (unless ``force``)."""
    global _state
    if _state == "tuned":
        return _state
    if os.environ.get(ENV, "").strip().lower() == "default" and not force:
        return _state
    libc = _libc()
    if libc is None:
        _state = "n/a"
        return _state
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    if ok:
        _state = "tuned"
    return _state


def state() -> str:
    """``tuned`` (thresholds raised by ``tune``), ``default`` (glibc's own) or ``n/a`` (not glibc)."""
    return _state
