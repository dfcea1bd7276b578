"""A leaky-integrator tanh cell, written the way torch.nn.RNNCell is used: nothing from seqbench.

The convention seqbench wraps (seqbench.cells.plugin): constructed as ``Cls(input_size,
hidden_size)``, called as ``cell(x_t, h) -> h'`` with x_t (B, input_size) and h (B, hidden_size).
The module draws its own parameters in its constructor; seqbench registers it as a submodule of its
stack, so the optimizer, state_dict and device moves see them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LeakyTanhCell(nn.Module):
    """Leaky-integrator tanh RNN cell (leaky-integrator units: Jaeger et al. 2007):

        h' = (1 - alpha) h + alpha tanh(W x + U h + b)

    Each step renews only the fraction ``alpha`` of the state and keeps the rest, so along the
    direct path dh'/dh = (1 - alpha) I + alpha diag(1 - tanh^2) U: with the small recurrent weights
    of a default initialization, a gradient shrinks by about (1 - alpha) per step rather than by
    the Elman cell's ||diag(1 - tanh^2) U|| (alpha = 1 is the Elman tanh cell). ``alpha`` is a fixed
    time constant, not learned; W, b and U start at torch.nn.Linear's default initialization.
    """

    def __init__(self, input_size: int, hidden_size: int, alpha: float = 0.25):
        super().__init__()
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.alpha = alpha
        self.input = nn.Linear(input_size, hidden_size)  # W, b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)  # U (b is enough once)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: x (B, input_size), h (B, hidden_size) or None for zeros -> h' (B, hidden_size)."""
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        candidate = torch.tanh(self.input(x) + self.recurrent(h))
        return torch.lerp(h, candidate, self.alpha)  # (1 - alpha) h + alpha candidate

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, alpha={self.alpha}"
