"""Initialization schemes for recurrent stacks: the remedies that act on the starting weights.

Applied after PyTorch's default initialization, identically to the built-in and the hand-written
modules (same parameter names, same order of random draws), so that the two implementations still
start from identical weights. Sources: docs/references.md section 6.

- ``init`` sets every recurrent weight matrix W_hh, gate block by gate block (each H x H block
  of the stacked (G*H, H) matrix is initialized on its own):
  ``default`` (PyTorch: uniform in +-1/sqrt(H)), ``xavier`` (Glorot & Bengio 2010, uniform),
  ``he`` (He et al. 2015, normal with std sqrt(2/H)), ``orthogonal`` (Saxe et al. 2013),
  ``identity`` (W_hh = I and both biases zero; the input weights keep PyTorch's init),
  ``irnn`` (rnn only; Le, Jaitly & Hinton 2015, section 4: the full IRNN recipe, see below).
  ``init_gain`` then multiplies W_hh: an orthogonal matrix times g has every singular value g,
  ``irnn`` with g is the paper's scaled identity g * I.
  Spectral radius of an H x H block at H = 128 (measured over 20 draws; tested): ``orthogonal``
  exactly 1; ``xavier`` 1.05 (1.00-1.13; entries of variance 1/H, circular-law limit 1);
  ``default`` 0.61 (0.58-0.65; variance 1/(3H), limit 0.58); ``he`` 1.48 (1.41-1.58; variance
  2/H, limit sqrt(2)): He's scale is derived for ReLU layers, so a tanh RNN starts above 1.
- ``irnn`` (Le et al. 2015, section 4, Experiments: "in addition to the recurrent weights being initialized at
  identity, the non-recurrent weights are initialized with a random matrix, whose entries are
  sampled from a Gaussian distribution with mean of zero and standard deviation of 0.001"; the
  biases are zero): W_hh = I, every W_ih (the first layer's and those between layers) drawn from
  N(0, 0.001^2) (0.001 is the standard deviation), both biases zero; with the ReLU RNN, which
  CellConfig requires. The paper draws the output layer the same way; seqbench's readout keeps
  its own initialization.
- ``forget_bias`` (LSTM; Gers et al. 2000, Jozefowicz et al. 2015): the forget-gate slice of
  bias_ih is set to B and that of bias_hh to 0, so the gate's effective bias is B.
- ``chrono`` (Tallec & Ollivier 2018): gate biases drawn from the longest expected lag T_max.
  LSTM: b_f = log(u), b_i = -b_f, u ~ U[1, T_max - 1]. GRU (PyTorch's h' = (1-z) n + z h, so
  z keeps the old state): b_z = log(u). Set in bias_ih, with the bias_hh slice at 0.
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.choices import INITS  # noqa: F401  (re-exported)

#: std of the IRNN's non-recurrent weights (Le et al. 2015, section 4)
IRNN_INPUT_STD = 1e-3


def _init_block(block: torch.Tensor, scheme: str) -> None:
    """Initialize one H x H recurrent block in place (``default`` leaves it as it is)."""
    if scheme == "xavier":
        nn.init.xavier_uniform_(block)
    elif scheme == "he":
        nn.init.kaiming_normal_(block, nonlinearity="relu")  # std sqrt(2 / fan_in)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(block)
    elif scheme in ("identity", "irnn"):
        block.copy_(torch.eye(*block.shape))


@torch.no_grad()
def apply_init(rnn: nn.Module, cell: type, num_layers: int, hidden: int, init: str = "default",
               gain: float = 1.0, forget_bias: float | None = None, chrono_tmax: int = 0) -> None:
    """Apply the schemes above to a built-in or hand-written stack (nn.LSTM parameter names).

    ``cell`` is the cell's class (seqbench.cells.base.Cell): the schemes ask it how many gate
    blocks its ``weight_hh`` stacks (``recurrent_blocks``) and where its gates' biases sit
    (``gate_bias``); CellConfig.validate has refused the remedies a cell cannot take."""
    H = hidden
    gates = cell.gate_bias
    if not cell.recurrent_blocks and not gates:
        return  # nothing a scheme could act on (CellConfig allows only the defaults here)
    for layer in range(num_layers):
        w_hh = getattr(rnn, f"weight_hh_l{layer}", None)
        b_ih = getattr(rnn, f"bias_ih_l{layer}", None)
        b_hh = getattr(rnn, f"bias_hh_l{layer}", None)
        for g in range(cell.recurrent_blocks):
            _init_block(w_hh[g * H : (g + 1) * H], init)
        if gain != 1.0 and w_hh is not None:
            w_hh.mul_(gain)
        if init == "irnn":  # drawn from the global RNG: same draws for builtin and hand
            nn.init.normal_(getattr(rnn, f"weight_ih_l{layer}"), 0.0, IRNN_INPUT_STD)
        if init in ("identity", "irnn") and b_ih is not None:
            b_ih.zero_()
            b_hh.zero_()
        if forget_bias is not None and b_ih is not None:
            f = gates["forget"] * H
            b_ih[f : f + H] = forget_bias
            b_hh[f : f + H] = 0.0
        if chrono_tmax and b_ih is not None:
            u = torch.empty(H).uniform_(1.0, max(chrono_tmax - 1.0, 1.0 + 1e-6))
            log_u = torch.log(u).to(b_ih)
            keep = gates["forget"] if "forget" in gates else gates["update"]
            b_ih[keep * H : (keep + 1) * H] = log_u  # the gate that keeps the old state
            b_hh[keep * H : (keep + 1) * H] = 0.0
            if "input" in gates:  # the LSTM's input gate: b_i = -b_f
                i = gates["input"] * H
                b_ih[i : i + H] = -log_u
                b_hh[i : i + H] = 0.0

