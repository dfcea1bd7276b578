"""coRNN, the coupled oscillatory RNN (Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural
Network (coRNN): An Accurate and (Gradient) Stable Architecture for Learning Long Time
Dependencies", ICLR): a network of damped, driven, coupled oscillators,

    y'' = tanh(W y + Wz y' + V u + b) - gamma y - eps y'

discretized by their implicit-explicit scheme (eq. 3), z standing for y' and dt for the step:

    z_n = z_{n-1} + dt tanh(W y_{n-1} + Wz z_{n-1} + V u_n + b) - dt gamma y_{n-1} - dt eps z_n
    y_n = y_{n-1} + dt z_n

The damping term is implicit (eps z_n, so z_n = (z_{n-1} + dt (tanh(.) - gamma y_{n-1})) /
(1 + dt eps)) and y is updated from the new z_n. The authors' code (tk-rusch/coRNN) takes the
damping explicitly, - dt eps z_{n-1}, which differs from eq. 3 by a factor 1 / (1 + dt eps)
against 1 - dt eps on z_{n-1} (0.53 against 0.10 with the constants below); ``implicit_damping =
False`` runs that form. The states are h = y (what the readout sees and the probe measures) and
z = y'; both start at zero.

Constants: dt = 0.06, gamma = 66, eps = 15, the defaults of the authors' adding-problem script
(tk-rusch/coRNN, adding/adding_task.py; hidden size 128 there). The hyperparameter table of the
paper's appendix could not be consulted here to confirm them.

Parameters: the authors' single nn.Linear over the concatenation [u, z, y] (input width I + 2H),
split into V (H x I), Wz (H x H), W (H x H) and b (H). Drawn as that layer draws them: the (H,
I + 2H) matrix then the bias, every entry uniform in [-1/sqrt(I + 2H), 1/sqrt(I + 2H)] (PyTorch's
nn.Linear default), so that from the same RNG state the numbers are those of their layer.
"""

from __future__ import annotations

import math

import torch

from seqbench.cells.base import Cell, input_projection, record_grad_norm


class CoRNN(Cell):
    """Coupled oscillators y'' = tanh(W y + Wz y' + V u + b) - gamma y - eps y' (module docstring)."""

    name = "cornn"
    states = ("h", "z")  # h = y, the oscillators' positions; z = y', their velocities
    nonlinearities = ("tanh",)
    recurrent_blocks = 0  # W and Wz are not the gate-stacked W_hh the init schemes act on
    gate_bias = {}
    builtin = None
    dt = 0.06  # time step
    gamma = 66.0  # restoring force on y
    epsilon = 15.0  # damping of z = y'
    implicit_damping = True  # eq. 3; False: the authors' code, explicit - dt eps z_{n-1}

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hz": (H, H), "weight_hy": (H, H), "bias": (H,)}

    @torch.no_grad()
    def reset_parameters(self, params):
        H, I = self.hidden_size, self.input_size
        bound = 1.0 / math.sqrt(I + 2 * H)
        w = params["weight_ih"]
        stacked = torch.empty(H, I + 2 * H, dtype=w.dtype, device=w.device).uniform_(-bound, bound)
        v, wz, wy = stacked.split([I, H, H], dim=1)  # the authors' order: [u, z, y]
        params["weight_ih"].copy_(v)
        params["weight_hz"].copy_(wz)
        params["weight_hy"].copy_(wy)
        params["bias"].uniform_(-bound, bound)

    def _update(self, drive, y, z):
        """(y_n, z_n) from the pre-activation ``drive`` and (y_{n-1}, z_{n-1})."""
        dt = self.dt
        if self.implicit_damping:
            z = (z + dt * (torch.tanh(drive) - self.gamma * y)) / (1.0 + dt * self.epsilon)
        else:
            z = z + dt * (torch.tanh(drive) - self.gamma * y - self.epsilon * z)
        return y + dt * z, z

    def step(self, params, x_t, state):
        y, z = state
        p = params
        drive = x_t @ p["weight_ih"].t() + p["bias"] + y @ p["weight_hy"].t() \
            + z @ p["weight_hz"].t()
        y, z = self._update(drive, y, z)
        return y, (y, z)

    def layer(self, params, x, state, norms=None):
        y, z = state
        norms = norms or {}
        w_hy_t, w_hz_t = params["weight_hy"].t(), params["weight_hz"].t()
        outputs = []
        for t, xp_t in enumerate(input_projection(x, params["weight_ih"], params["bias"])):
            drive = torch.addmm(torch.addmm(xp_t, y, w_hy_t), z, w_hz_t)
            y, z = self._update(drive, y, z)
            record_grad_norm(z, norms.get("z"), t)
            record_grad_norm(y, norms.get("h"), t)
            outputs.append(y)
        return torch.stack(outputs), (y, z)

    def extra_repr(self):
        return f"dt={self.dt:g}, gamma={self.gamma:g}, epsilon={self.epsilon:g}"
