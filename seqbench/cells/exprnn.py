"""expRNN (Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal Constraints in Neural Networks:
A Simple Parametrization of the Orthogonal and Unitary Group", ICML; arXiv:1901.08428).

    h_t = modReLU(W_hh h_{t-1} + W_ih x_t),   W_hh = exp(A),   A = -A^T,
    modReLU(z)_i = sign(z_i) * max(|z_i| + b_i, 0)

The recurrent matrix is the matrix exponential of a skew-symmetric A (the Lie exponential of
SO(H), the paper's section 3), so it is orthogonal whatever value training gives A: the
constraint is exact and the optimizer is the ordinary unconstrained one on A.

Settings are those of the paper's copying-problem experiments (section 5), with the constants
taken from the authors' code as released with the paper (github.com/Lezcano/expRNN, ``exprnn.py``,
``initialization.py``, and the README's command ``1_copying.py -m exprnn --hidden_size 190
--init henaff --lr 2e-4 --lr_orth 2e-5``); the paper has no adding-problem experiment.

- nonlinearity: modReLU, the uRNN's (Arjovsky, Shah & Bengio 2016: (|z| + b) z / |z| where
  |z| + b >= 0, else 0), on real inputs, with a learned bias b per unit drawn from
  U(-0.01, 0.01); the input projection has no bias of its own (b is the cell's only bias), as in
  the authors' ``ExpRNN``.
- W_hh: Henaff initialization (Henaff, Szlam & LeCun 2016, "Recurrent orthogonal networks and
  long-memory tasks"), the one the paper's copy experiments use (the Cayley initialization of
  Helfrich et al. 2018 is the one of its MNIST runs): A is block diagonal with 2 x 2 blocks
  [[0, s_k], [-s_k, 0]], s_k ~ U[-pi, pi], and a 1 x 1 zero block when H is odd, so W_hh is a
  block rotation with eigenvalues exp(+-i s_k): phases |s_k| uniform on [0, pi]. (The authors'
  code drew s_k from U[-pi, 0] at the ICML release and from U[-pi, pi] later, and multiplies h by
  exp(A) from the right, W_hh = exp(-A) here; the spectrum is the same, only each plane's sense of
  rotation differs.)
- W_ih: He normal, std sqrt(2 / fan_in) (``kaiming_normal_(nonlinearity="relu")`` in their code).

Static trivialization: W_hh = exp(A) around the identity for the whole run, A the trained
parameter (the ICML expRNN). The authors' later "dynamic trivialization" (dtriv, Lezcano-Casado,
NeurIPS 2019) moves the base point, W = B exp(A) with B <- W every K steps; expRNN is its K = inf
case. torch.nn.utils.parametrizations.orthogonal(orthogonal_map="matrix_exp") is not the paper's
map either: it stores the initial matrix as a base (W = W_0 exp(A), A starting at 0, a single
change of base at registration), and without a base it cannot be registered on an initialized
weight. Hence a parametrization of our own (``ExpSkew``, registered with
torch.nn.utils.parametrize), computed once per forward pass and shared by every step, which is
the paper's implementation trick (section 4.3).

A is stored as its H(H-1)/2 entries above the diagonal (the authors keep an H x H tensor and use
only its upper triangle: the same gradients and the same Adam/RMSprop updates, without dead
entries), so that the model's parameter count is the free parameters of SO(H), not H^2, and
seqbench's equal-parameter sizing (``--match-params``) compares like with like. The stack's
``weight_hh_l<layer>`` is the parametrized H x H matrix exp(A); the state_dict holds A's entries
(``parametrizations.weight_hh_l<layer>.original``).

Not reproduced: the paper trains A with its own RMSprop at a learning rate 10x smaller than the
other parameters' (2e-5 against 2e-4 on the copy task; the README's advice for RNNs). seqbench runs
one optimizer with one learning rate for every parameter, so A moves with the common rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from seqbench.cells.base import Cell, input_projection, record_grad_norm

#: modReLU's bias is drawn from U(-MODRELU_BIAS_INIT, MODRELU_BIAS_INIT) (the authors' code)
MODRELU_BIAS_INIT = 0.01


def modrelu(z: Tensor, b: Tensor) -> Tensor:
    """sign(z) * max(|z| + b, 0): keeps the sign of each unit, shifts and rectifies its size."""
    return torch.sign(z) * torch.relu(z.abs() + b)


def skew(upper: Tensor, n: int) -> Tensor:
    """The n x n skew-symmetric matrix whose entries above the diagonal are ``upper``, in
    row-major order (torch.triu_indices(n, n, 1))."""
    rows, cols = torch.triu_indices(n, n, 1, device=upper.device)
    a = upper.new_zeros(n, n).index_put((rows, cols), upper)
    return a - a.t()


def henaff_angles(n: int) -> Tensor:
    """s_k ~ U[-pi, pi], one per 2 x 2 rotation block (n // 2), from the global RNG."""
    return torch.empty(n // 2, dtype=torch.float64).uniform_(-math.pi, math.pi)


def block_upper(angles: Tensor, n: int) -> Tensor:
    """The above-diagonal entries of the block-diagonal A with blocks [[0, s_k], [-s_k, 0]]."""
    a = torch.zeros(n, n, dtype=angles.dtype)
    k = torch.arange(len(angles))
    a[2 * k, 2 * k + 1] = angles
    rows, cols = torch.triu_indices(n, n, 1)
    return a[rows, cols]


class ExpSkew(nn.Module):
    """Parametrization: A's above-diagonal entries (H(H-1)/2,) -> exp(A), an H x H rotation."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, upper: Tensor) -> Tensor:
        return torch.linalg.matrix_exp(skew(upper, self.n))

    def extra_repr(self) -> str:
        return f"n={self.n}"


class ExpRNN(Cell):
    """h_t = modReLU(exp(A) h_{t-1} + W_ih x_t; b), A skew-symmetric; see the module docstring."""

    name = "exprnn"
    nonlinearities = ("modrelu",)
    recurrent_blocks = 0  # W_hh is orthogonal by construction: seqbench.init's schemes keep off
    gate_bias = {}
    builtin = None

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H * (H - 1) // 2,), "bias": (H,)}

    @torch.no_grad()
    def reset_parameters(self, params):
        """The paper's: He-normal W_ih, Henaff A, modReLU bias U(-0.01, 0.01), in this order."""
        nn.init.kaiming_normal_(params["weight_ih"], nonlinearity="relu")
        A = params["weight_hh"]
        A.copy_(block_upper(henaff_angles(self.hidden_size), self.hidden_size))
        nn.init.uniform_(params["bias"], -MODRELU_BIAS_INIT, MODRELU_BIAS_INIT)

    def parametrize(self, module, layer):
        # no right_inverse: the stored entries are A itself (drawn by reset_parameters), and
        # unsafe because the parametrized tensor (H, H) has another shape than A's entries
        parametrize.register_parametrization(module, f"weight_hh_l{layer}",
                                             ExpSkew(self.hidden_size), unsafe=True)

    def step(self, params, x_t, state):
        (h,) = state
        p = params
        h = modrelu(x_t @ p["weight_ih"].t() + h @ p["weight_hh"].t(), p["bias"])
        return h, (h,)

    def layer(self, params, x, state, norms=None):
        (h,) = state
        p, norms_h = params, (norms or {}).get("h")
        w_hh_t = p["weight_hh"].t()  # exp(A), computed once for the whole sequence
        b = p["bias"]
        outputs = []
        for t, xp_t in enumerate(input_projection(x, p["weight_ih"], None)):
            h = modrelu(torch.addmm(xp_t, h, w_hh_t), b)
            record_grad_norm(h, norms_h, t)
            outputs.append(h)
        return torch.stack(outputs), (h,)
