"""The Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, "Resurrecting
Recurrent Neural Networks for Long Sequences", ICML): a diagonal complex linear recurrence

    x_t = lambda * x_{t-1} + gamma * (B u_t)        y_t = Re(C x_t) + D u_t

with ``*`` elementwise, u_t the layer's input (I), x_t the complex state (N) and y_t its output (H).

Settings, the paper's:

- exponential parametrization (section 3.3): lambda = exp(-exp(nu_log) + i exp(theta_log)), so
  |lambda| < 1 whatever nu_log, and the phase is exp(theta_log) (the appendix A code's form);
- ring initialization (section 3.2, Lemma 3.2): lambda uniform on the ring r_min <= |lambda| <=
  r_max of the complex plane with phase in [0, max_phase]: |lambda|^2 = u1 (r_max^2 - r_min^2) +
  r_min^2 and phase max_phase u2, u1 and u2 uniform. The defaults are appendix A's
  (``init_lru_parameters``): r_min = 0, r_max = 1, max_phase = 6.28 (section 3.2's 2 pi); u1 and u2
  are drawn from (0, 1), as a zero would make nu_log or theta_log infinite;
- normalization (section 3.4): gamma = exp(gamma_log), a learned parameter initialized at
  log sqrt(1 - |lambda|^2), so that the state's variance does not grow as |lambda| -> 1;
- B, C complex, B = B_re + i B_im with entries N(0, 1/(2 I)) (Glorot, split between real and
  imaginary parts) and C = C_re + i C_im with entries N(0, 1/N) (appendix A).

Two departures, both because the layer here is one cell of a seqbench stack:

- D: the paper's D is diagonal (input size = output size, entries N(0, 1)); here the input size I
  may differ from the hidden size H, so D is a dense real (H, I) matrix with entries N(0, 1/I),
  which gives each output the variance the diagonal one gives it for unit-variance inputs;
- state size N = hidden size H (the paper allows N != H): the stack's state and outputs are H wide.

The LRU alone is a linear time-invariant system; the paper's deep model puts a nonlinear MLP/GLU,
normalization and a skip connection between LRU layers (its figure 1), which seqbench's stack does
not. Every parameter is a real tensor (real and imaginary parts apart, log-parameters), so that
optimizers and state_dicts see plain floats; the state x_t alone is complex (``initial_state``).

``step`` is the recurrence, ``layer`` its step-by-step loop (recording the gradient norms the
probe asks for), ``fast_layer`` the same function by the parallel scan of seqbench.cells.scan.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from seqbench.cells.base import Cell, record_grad_norm
from seqbench.cells.scan import linear_scan

#: the ring of |lambda| at initialization, and the largest phase (appendix A's defaults)
R_MIN, R_MAX, MAX_PHASE = 0.0, 1.0, 6.28


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype that holds a state computed from ``dtype`` parameters."""
    return torch.promote_types(dtype, torch.complex64)


class LRU(Cell):
    """The Linear Recurrent Unit (see the module docstring): complex state h = x_t, real output."""

    name = "lru"
    nonlinearities = ("linear",)  # the recurrence and the readout are linear
    recurrent_blocks = 0  # lambda is a vector: no square W_hh for the init schemes
    gate_bias = {}
    builtin = None
    #: a scan has no per-step states to hook: the probe runs ``layer``
    fast_layer_norms = False
    r_min, r_max, max_phase = R_MIN, R_MAX, MAX_PHASE

    def parameter_shapes(self):
        N, H, I = self.hidden_size, self.hidden_size, self.input_size
        return {"nu_log": (N,), "theta_log": (N,), "gamma_log": (N,),
                "B_re": (N, I), "B_im": (N, I), "C_re": (H, N), "C_im": (H, N), "D": (H, I)}

    @torch.no_grad()
    def reset_parameters(self, params):
        N, I = self.hidden_size, self.input_size
        tiny = torch.finfo(torch.float64).tiny  # u in (0, 1): finite log-parameters
        u1 = torch.rand(N, dtype=torch.float64).clamp_min_(tiny)
        u2 = torch.rand(N, dtype=torch.float64).clamp_min_(tiny)
        radius2 = u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2  # |lambda|^2
        params["nu_log"].copy_(torch.log(-0.5 * torch.log(radius2)))
        params["theta_log"].copy_(torch.log(self.max_phase * u2))
        params["gamma_log"].copy_(0.5 * torch.log1p(-radius2))  # log sqrt(1 - |lambda|^2)
        params["B_re"].normal_(0.0, 1.0 / math.sqrt(2 * I))
        params["B_im"].normal_(0.0, 1.0 / math.sqrt(2 * I))
        params["C_re"].normal_(0.0, 1.0 / math.sqrt(N))
        params["C_im"].normal_(0.0, 1.0 / math.sqrt(N))
        params["D"].normal_(0.0, 1.0 / math.sqrt(I))

    def initial_state(self, batch, like):
        """A complex zero state, of the complex dtype matching ``like``'s."""
        return (torch.zeros(batch, self.hidden_size, dtype=complex_dtype(like.dtype),
                            device=like.device),)

    # -- the equations, as real products -----------------------------------------------------------
    @staticmethod
    def diag_lambda(params) -> Tensor:
        """lambda = exp(-exp(nu_log) + i exp(theta_log)), (N,) complex."""
        return torch.exp(torch.complex(-torch.exp(params["nu_log"]), torch.exp(params["theta_log"])))

    @staticmethod
    def project_in(params, u: Tensor) -> Tensor:
        """gamma * (B u): (..., I) real -> (..., N) complex, by one real product whose weight rows
        alternate real and imaginary parts (so the result is a complex tensor's memory as is)."""
        gamma = torch.exp(params["gamma_log"]).unsqueeze(-1)
        weight = (torch.stack([params["B_re"], params["B_im"]], 1) * gamma.unsqueeze(1)).flatten(0, 1)
        return torch.view_as_complex((u @ weight.t()).unflatten(-1, (-1, 2)))

    @staticmethod
    def project_out(params, x: Tensor, u: Tensor) -> Tensor:
        """Re(C x) + D u = C_re Re(x) - C_im Im(x) + D u: (..., N) complex, (..., I) -> (..., H)."""
        weight = torch.stack([params["C_re"], -params["C_im"]], 2).flatten(1, 2)
        return torch.view_as_real(x).flatten(-2) @ weight.t() + u @ params["D"].t()

    def step(self, params, x_t, state):
        h = self.diag_lambda(params) * state[0] + self.project_in(params, x_t)
        return self.project_out(params, h, x_t), (h,)

    def layer(self, params, x, state, norms=None):
        norms_h = (norms or {}).get("h")
        lam, h = self.diag_lambda(params), state[0]
        states = []
        for t, bu_t in enumerate(self.project_in(params, x).unbind(0)):
            h = lam * h + bu_t
            record_grad_norm(h, norms_h, t)
            states.append(h)
        return self.project_out(params, torch.stack(states), x), (h,)

    def fast_layer(self, params, x, state, norms=None):
        states = linear_scan(self.diag_lambda(params), self.project_in(params, x), state[0])
        return self.project_out(params, states, x), (states[-1],)

    @classmethod
    def kernel(cls, device):
        return "hand (scan)"
