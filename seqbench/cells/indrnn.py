"""IndRNN, the independently recurrent neural network (Li, Li, Cook, Zhu & Gao 2018, "Independently
Recurrent Neural Network (IndRNN): Building A Longer and Deeper RNN", CVPR; eq. 2):

    h_t = relu(W x_t + u * h_{t-1} + b)

with one recurrent weight per neuron: u is a vector and ``*`` is elementwise, so neuron n's
gradient from step T back to step t is u_n^(T-t) times the ReLU derivatives (section 3.1, eq. 4).

Settings: the paper's for the adding problem, T being the number of steps of the sequence (the
stack's ``max_steps``):

- bound: |u_n| <= 2^(1/T), so that u_n^T stays below 2 (section 3.1 with gamma = 2 for ReLU;
  section 5.1: "the recurrent weight is constrained in the range of |u_n| in (0, 2^(1/T))").
  The authors clip u to [-2^(1/T), 2^(1/T)] before every training step (their Theano/Lasagne
  adding script, Sunnydreamrain/IndRNN_Theano_Lasagne). seqbench's stack has no hook after an
  optimizer step, so the cell clamps u where it uses it: the effective weight is
  clamp(u, -2^(1/T), 2^(1/T)), inside the bound whatever the optimizer did to the parameter. The
  gradient at the clamped weight reaches the parameter unchanged (straight-through), so a weight
  pushed past the bound is not frozen there, as it would be under a plain clamp's zero gradient.
- initialization of u: uniform in [2^(-1/T), 2^(1/T)], the range the authors give the layer read
  out at the last step only (Li, Li, Cook & Gao 2019, "Deep Independently Recurrent Neural Network
  (IndRNN)", arXiv:1910.06251, section 5.1: [eps^(1/T), gamma^(1/T)]; their adding script:
  gamma = 2, eps = 1/2), so that every neuron starts with a memory of the whole sequence. The
  layers below get [0, 2^(1/T)] there (memories of every length); the stack tells each cell
  whether it is the top layer (``Cell.top_layer``).
- input weights W drawn from N(0, 0.001^2) and bias b zero (the authors' adding script, standard
  deviation 0.001; the paper's sections do not state them).

The recurrence is elementwise, so ``layer`` computes W x_t + b for all steps in one product and
loops over the steps with elementwise operations only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from seqbench.cells.base import Cell, input_projection, record_grad_norm

#: u_n^T stays below MAGNITUDE: the bound 2^(1/T) of the paper's adding problem (gamma, section 3.1)
MAGNITUDE = 2.0
#: standard deviation of the input weights W (the authors' adding script)
INPUT_STD = 1e-3


class IndRNN(Cell):
    """h_t = relu(W x_t + u * h_{t-1} + b), u elementwise and bounded by 2^(1/T) (module docstring)."""

    name = "indrnn"
    nonlinearities = ("relu",)
    recurrent_blocks = 0  # u is a vector: the init schemes' square W_hh does not exist here
    gate_bias = {}
    builtin = None
    def bound(self) -> float:
        """2^(1/T): the largest |u_n| the recurrence uses."""
        return MAGNITUDE ** (1.0 / self.max_steps)

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "recurrent_weight": (H,), "bias": (H,)}

    @torch.no_grad()
    def reset_parameters(self, params):
        params["weight_ih"].normal_(0.0, INPUT_STD)
        low = 1.0 / self.bound() if self.top_layer else 0.0
        params["recurrent_weight"].uniform_(low, self.bound())
        params["bias"].zero_()

    def effective_recurrent_weight(self, params) -> Tensor:
        """u clamped to [-2^(1/T), 2^(1/T)], with the gradient passed straight through to u."""
        u = params["recurrent_weight"]
        b = self.bound()
        return u + (u.clamp(-b, b) - u).detach()  # exactly u where u is inside the bound

    def step(self, params, x_t, state):
        (h,) = state
        u = self.effective_recurrent_weight(params)
        h = torch.relu(x_t @ params["weight_ih"].t() + params["bias"] + u * h)
        return h, (h,)

    def layer(self, params, x, state, norms=None):
        (h,) = state
        norms_h = (norms or {}).get("h")
        u = self.effective_recurrent_weight(params)
        outputs = []
        for t, xp_t in enumerate(input_projection(x, params["weight_ih"], params["bias"])):
            h = torch.relu(torch.addcmul(xp_t, u, h))
            record_grad_norm(h, norms_h, t)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def extra_repr(self):
        return f"|u| <= 2^(1/{self.max_steps})"
