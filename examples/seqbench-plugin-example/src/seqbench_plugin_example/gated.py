"""The leaky integrator with a learned keep gate, written against seqbench's Cell interface.

What the richer interface adds over a plain nn.RNNCell-shaped module (see seqbench.cells.base):
the stack holds the parameters under names it knows (``weight_hh_l0``, ...), so the
initialization remedies reach them (``recurrent_blocks``: --init and --init-gain act on each H x H
block of W_hh; ``gate_bias``: --chrono writes the keep gate's bias); a whole-sequence ``fast_layer``
replaces the step-by-step loop; ``kernel`` labels what ran in every results row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqbench.cells.base import Cell, input_projection, record_grad_norm


def gated_update(xp: Tensor, hp: Tensor, h: Tensor) -> Tensor:
    """h' from the input part xp = W_i x + b_i and the recurrent part hp = W_h h + b_h, (B, 2H)
    each, blocks in the order keep gate k, candidate n."""
    x_k, x_n = xp.chunk(2, 1)
    h_k, h_n = hp.chunk(2, 1)
    keep = torch.sigmoid(x_k + h_k)
    candidate = torch.tanh(x_n + h_n)
    return candidate + keep * (h - candidate)  # = k h + (1 - k) n


class GatedLeaky(Cell):
    """Gated leaky integrator (a GRU without its reset gate), one state h:

        k = sigmoid(W_ik x + b_ik + W_hk h + b_hk)      n = tanh(W_in x + b_in + W_hn h + b_hn)
        h' = k * h + (1 - k) * n

    The keep gate k is a learned, per-unit and per-step version of LeakyTanhCell's 1 - alpha.
    Parameters are stacked as in torch.nn.GRU (weight_ih (2H, I), weight_hh (2H, H), bias_ih and
    bias_hh (2H,)), blocks [k, n], drawn by Cell.reset_parameters (uniform in +-1/sqrt(H)).
    """

    name = "leaky_gated"
    states = ("h",)  # the probe measures ||dL/dh_t||
    recurrent_blocks = 2  # --init / --init-gain: each H x H block of weight_hh
    gate_bias = {"update": 0}  # --chrono: block 0 (k) keeps the old state, b_k = log(u)

    def parameter_shapes(self):
        G, H, I = 2 * self.hidden_size, self.hidden_size, self.input_size
        return {"weight_ih": (G, I), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}

    def step(self, params, x_t, state):
        p = params
        h = gated_update(x_t @ p["weight_ih"].t() + p["bias_ih"],
                         state[0] @ p["weight_hh"].t() + p["bias_hh"], state[0])
        return h, (h,)

    def fast_layer(self, params, x, state, norms=None):
        """The same function as ``layer`` (tested), with the input projection of every step done
        in one matrix product before the loop: only h @ W_hh^T is left sequential."""
        (h,) = state
        p, norms_h = params, (norms or {}).get("h")
        w_hh_t = p["weight_hh"].t()
        outputs = []
        for t, xp_t in enumerate(input_projection(x, p["weight_ih"], p["bias_ih"])):
            h = gated_update(xp_t, torch.addmm(p["bias_hh"], h, w_hh_t), h)
            record_grad_norm(h, norms_h, t)  # the probe's ||dL/dh_t||, so it may use this path
            outputs.append(h)
        return torch.stack(outputs), (h,)

    fast_layer_norms = True  # fast_layer records the norms above

    @classmethod
    def kernel(cls, device):
        return "hand (autograd, inputs projected once)"
