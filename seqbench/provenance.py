"""Where a result came from: device, library versions, kernels used, git commit."""

from __future__ import annotations

import functools
import platform
import re
import subprocess
from pathlib import Path

import torch

from seqbench import denormals, malloc
from seqbench.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for ``cuda`` without it is a ConfigError.

    On CUDA, TF32 is switched off for cuDNN and for matrix products: PyTorch lets cuDNN run float32
    RNNs in TF32 by default (10-bit mantissa) while plain matrix products stay in float32, so the
    built-in and the hand-written cells would not compute the same function; seqbench compares
    them in float32 on both.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available; allowed here: auto, cpu")
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def kernel(cell: str, impl: str, device: torch.device, norm: str = "none") -> str:
    """Which implementation actually runs the recurrence."""
    from seqbench.cells import cell_class

    cls = cell_class(cell)
    if impl == "hand":  # normalized cells run the plain autograd loop; the others ask the cell
        if norm != "none":
            return "hand (autograd)"
        return cls.kernel(device)
    if device.type == "cuda":
        return "cudnn" if torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled else "aten"
    # On the CPU only nn.LSTM has a fused oneDNN path; nn.GRU and nn.RNN run an ATen loop.
    if cls.builtin == "LSTM" and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        return "onednn"
    return "aten"


@functools.cache
def onednn_version() -> str:
    match = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", torch.__config__.show())
    return match.group(1) if match else ""


def cudnn_version() -> str:
    if torch.backends.cudnn.is_available():
        return str(torch.backends.cudnn.version())
    return ""


@functools.cache
def git_commit() -> str:
    """The commit of the seqbench source tree, with '+dirty' for local changes; '' if none."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
            text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "seqbench"], cwd=root,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if dirty else "")


def seqbench_version() -> str:
    from seqbench import __version__

    return __version__


def environment(device: torch.device, threads: int) -> dict:
    """Provenance columns shared by every results row."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "threads": threads,
        "malloc": malloc.state(),
        "denormals": denormals.state(),
        "torch_version": torch.__version__,
        "cudnn_version": cudnn_version() if device.type == "cuda" else "",
        "onednn_version": onednn_version() if device.type == "cpu" else "",
        "seqbench_version": seqbench_version(),
        "git_commit": git_commit(),
    }
