"""minGRU and minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?",
arXiv:2410.01201): the GRU and the LSTM with gates that read the input x_t only.

    minGRU (section 3.1):   z_t = sigmoid(Linear_z(x_t))        h~_t = g(Linear_h(x_t))
                            h_t = (1 - z_t) * h_{t-1} + z_t * h~_t
    minLSTM (section 3.2):  f_t = sigmoid(Linear_f(x_t))        i_t = sigmoid(Linear_i(x_t))
                            f'_t = f_t / (f_t + i_t)            i'_t = i_t / (f_t + i_t)
                            h~_t = g(Linear_h(x_t))             h_t = f'_t * h_{t-1} + i'_t * h~_t

Sections 3.1-3.2 write h~_t = Linear_h(x_t); g(x) = x + 1/2 for x >= 0 and sigmoid(x) for x < 0
is the paper's log-space version (appendix B), which keeps h~_t > 0 so that every term has a
logarithm; both forms here use it. No gate reads h_{t-1}, so h_t = a_t h_{t-1} + b_t with a_t, b_t
known for all steps at once, and the sequence is one scan: ``fast_layer`` runs it in log space
(appendix B, after Heinsen 2023): log a_t = log(1 - z_t) = -softplus(k_t), log z_t =
-softplus(-k_t) for the minGRU; log f'_t = -softplus(d_t), log i'_t = -softplus(-d_t) with
d_t = softplus(-k_f) - softplus(-k_i) for the minLSTM; log g(x) = log(x + 1/2) or -softplus(-x).
``step`` and ``layer`` compute the same function one step at a time (with the same g), and are
what the gradient probe runs.

The initial state: the paper's code puts log g(h_0) first in the log-space scan, which turns a
zero state into 1/2 and makes the sequential and parallel forms start from different states. Here
h_0 is the recurrence's own state in both forms, and h_0 = 0 (the stack's default), which has no
logarithm, is exact: seqbench.cells.scan.log_space_scan adds h_0's term, prod(a) * h_0, outside the
logarithms. A final state handed back as the next h_0 thus continues the sequence exactly.

Parameters: one input projection per layer, the gates' and the candidate's blocks stacked as
``weight_ih`` (blocks x H, I) and ``bias_ih``, initialized as torch.nn.Linear's default (uniform in
+-1/sqrt(I) for weights and biases), which is what the paper's code uses (``nn.Linear`` per gate,
appendix B; lucidrains/minGRU-pytorch drops the biases). The output is h_t itself (hidden size H;
no output projection).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from seqbench.cells.base import Cell, input_projection, project_inputs, record_grad_norm
from seqbench.cells.scan import linear_scan, log_space_scan


def g(x: Tensor) -> Tensor:
    """x + 1/2 for x >= 0, sigmoid(x) below: positive, continuous, increasing (appendix B)."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), without forming g: the relu keeps the unused branch's logarithm finite."""
    return torch.where(x >= 0, torch.log(torch.relu(x) + 0.5), -F.softplus(-x))


class _MinRNN(Cell):
    """What minGRU and minLSTM share: one input projection of every block, h_t = a_t h_{t-1} + b_t
    with (a_t, b_t) from x_t alone (``coefficients``; ``log_coefficients`` in log space)."""

    nonlinearities = ("g",)  # on the candidate; the gates are sigmoids
    recurrent_blocks = 0  # no W_hh: the init schemes have nothing to act on
    gate_bias = {}  # the gates' biases sit in bias_ih only (no bias_hh for the remedies)
    builtin = None
    #: the parallel scan has no per-step states to hook: the probe runs ``layer``
    fast_layer_norms = False
    #: the blocks of ``weight_ih``, in order
    blocks: ClassVar[tuple[str, ...]] = ()

    def parameter_shapes(self):
        G, I = len(self.blocks) * self.hidden_size, self.input_size
        return {"weight_ih": (G, I), "bias_ih": (G,)}

    @torch.no_grad()
    def reset_parameters(self, params):
        # torch.nn.Linear's default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
        bound = 1.0 / math.sqrt(self.input_size)
        for p in params.values():
            p.uniform_(-bound, bound)

    def coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) from the projected input xp = W x_t + b (..., blocks x H)."""
        raise NotImplementedError

    def log_coefficients(self, xp: Tensor) -> tuple[Tensor, Tensor]:
        """(log a_t, log b_t), computed in log space (appendix B)."""
        raise NotImplementedError

    def step(self, params, x_t, state):
        a, b = self.coefficients(x_t @ params["weight_ih"].t() + params["bias_ih"])
        h = torch.addcmul(b, a, state[0])
        return h, (h,)

    def layer(self, params, x, state, norms=None):
        (h,) = state
        norms_h = (norms or {}).get("h")
        outputs = []
        for t, xp_t in enumerate(input_projection(x, params["weight_ih"], params["bias_ih"])):
            a, b = self.coefficients(xp_t)
            h = torch.addcmul(b, a, h)
            record_grad_norm(h, norms_h, t)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def log_space_layer(self, params, x, state, norms=None):
        """The paper's parallel form: the whole sequence as one scan in log space (appendix B)."""
        h = log_space_scan(*self.log_coefficients(self._projection(params, x)), state[0])
        return h, (h[-1],)

    def linear_scan_layer(self, params, x, state, norms=None):
        """The same scan in linear space (seqbench.cells.scan.linear_scan)."""
        h = linear_scan(*self.coefficients(self._projection(params, x)), state[0])
        return h, (h[-1],)

    def fast_layer(self, params, x, state, norms=None):
        # On a GPU the paper's log-space form. On the CPU torch's logcumsumexp alone costs about
        # 350 ms at T = 1000, B = 64, H = 128, and the log-space scan made a minGRU training step
        # 2.8x slower than the step loop (1183 against 425 ms, measured here); the linear-space
        # scan of the same recurrence is stable too (every step is a convex combination of the
        # old state and a positive candidate) and as fast as the loop.
        run = self.log_space_layer if x.device.type == "cuda" else self.linear_scan_layer
        return run(params, x, state, norms)

    @staticmethod
    def _projection(params, x: Tensor) -> Tensor:
        return project_inputs(x, params["weight_ih"], params["bias_ih"])

    @classmethod
    def kernel(cls, device):
        return "hand (scan)"


class MinGRU(_MinRNN):
    """h_t = (1 - z_t) h_{t-1} + z_t g(Linear_h(x_t)), z_t = sigmoid(Linear_z(x_t))."""

    name = "mingru"
    blocks = ("update", "candidate")

    def coefficients(self, xp):
        k, pre = xp.chunk(2, -1)
        z = torch.sigmoid(k)
        return torch.sigmoid(-k), z * g(pre)  # sigmoid(-k) = 1 - z without the cancellation

    def log_coefficients(self, xp):
        k, pre = xp.chunk(2, -1)
        return -F.softplus(k), -F.softplus(-k) + log_g(pre)  # log(1 - z), log z + log g


class MinLSTM(_MinRNN):
    """h_t = f'_t h_{t-1} + i'_t g(Linear_h(x_t)), with f', i' the forget and input gates
    normalized to sum to one."""

    name = "minlstm"
    blocks = ("forget", "input", "candidate")

    def coefficients(self, xp):
        k_f, k_i, pre = xp.chunk(3, -1)
        f, i = torch.sigmoid(k_f), torch.sigmoid(k_i)
        total = f + i
        return f / total, i / total * g(pre)

    def log_coefficients(self, xp):
        k_f, k_i, pre = xp.chunk(3, -1)
        # log f' = log f - log(f + i) = -softplus(d) and log i' = -softplus(-d), d = log i - log f
        d = F.softplus(-k_f) - F.softplus(-k_i)
        return -F.softplus(d), -F.softplus(-d) + log_g(pre)
