"""Recurrent cells with normalization inside the cell (hand-written only; the fused built-in kernels
cannot express it).

``layer`` (Ba, Kiros & Hinton 2016): the input projection W_ih x and the recurrent projection
W_hh h are each layer-normalized over their G*H gate units (own gain, init 1, and bias, init 0)
before the gate biases are added; the LSTM cell state is normalized before the output tanh:
h = o * tanh(LN(c)).

``batch`` (recurrent batch normalization, Cooijmans et al. 2016): the same two projections and the
LSTM cell state are batch-normalized with statistics kept *per time step*: in training each step
uses its own batch's mean and variance and updates that step's running averages (momentum 0.1);
in evaluation each step uses its running averages (steps beyond those seen in training use the
last). The gains start at 0.1, which keeps the tanh and sigmoid units out of saturation at the
start (the paper's key finding); the projections' shifts are the gate biases themselves, the cell
state has its own shift (init 0).

Everything else (parameter names of the plain cell, initialization, residual connections, gradient
norms)
is HandRNN's: a NormRNN with its norm gains at 1 and shifts at 0 differs from HandRNN only by the
normalization.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench.cells import ACTIVATIONS, GATES, HandRNN, record_grad_norm

EPS = 1e-5
BN_MOMENTUM = 0.1
BN_GAIN_INIT = 0.1  # Cooijmans et al. 2016, section 4


class NormRNN(HandRNN):
    """HandRNN with layer or recurrent batch normalization inside every cell."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", norm: str = "layer", max_steps: int = 1,
                 residual: bool = False):
        super().__init__(mode, input_size, hidden_size, num_layers, nonlinearity,
                         residual=residual)
        if norm not in ("layer", "batch"):
            raise ValueError(f"norm must be 'layer' or 'batch', got {norm!r}")
        self.norm = norm
        self.max_steps = max(int(max_steps), 1)
        G, H = GATES[mode] * hidden_size, hidden_size
        parts = {"ih": G, "hh": G, **({"c": H} if mode == "lstm" else {})}
        for layer in range(num_layers):
            for part, size in parts.items():
                if norm == "layer":
                    self.register_parameter(f"ln_{part}_weight_l{layer}",
                                            nn.Parameter(torch.ones(size)))
                    self.register_parameter(f"ln_{part}_bias_l{layer}",
                                            nn.Parameter(torch.zeros(size)))
                else:
                    self.register_parameter(f"bn_{part}_weight_l{layer}",
                                            nn.Parameter(torch.full((size,), BN_GAIN_INIT)))
                    if part == "c":
                        self.register_parameter(f"bn_c_bias_l{layer}",
                                                nn.Parameter(torch.zeros(size)))
                    self.register_buffer(f"bn_{part}_mean_l{layer}",
                                         torch.zeros(self.max_steps, size))
                    self.register_buffer(f"bn_{part}_var_l{layer}",
                                         torch.ones(self.max_steps, size))

    def reset_parameters(self) -> None:
        """The plain cell's weights as HandRNN draws them (norm parameters keep their init)."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for name, weight in self.named_parameters():
            if name.startswith(("weight_", "bias_")):
                nn.init.uniform_(weight, -stdv, stdv)

    # -- normalizers ----------------------------------------------------------------------------
    def _get(self, name: str, layer: int):
        return getattr(self, f"{name}_l{layer}", None)

    def _norm_all_steps(self, v: Tensor, part: str, layer: int) -> Tensor:
        """Normalize (T, B, n) projections of every step at once (the input projection)."""
        if self.norm == "layer":
            return F.layer_norm(v, v.shape[-1:], self._get(f"ln_{part}_weight", layer),
                                self._get(f"ln_{part}_bias", layer), EPS)
        T = v.shape[0]
        steps = torch.arange(T, device=v.device).clamp(max=self.max_steps - 1)
        mean_buf, var_buf = self._get(f"bn_{part}_mean", layer), self._get(f"bn_{part}_var", layer)
        if self.training:
            mean, var = v.mean(1), v.var(1, unbiased=False)  # per step, over the batch
            with torch.no_grad():
                n = min(T, self.max_steps)
                unbiased = var[:n] * (v.shape[1] / max(v.shape[1] - 1, 1))
                mean_buf[:n].lerp_(mean[:n], BN_MOMENTUM)
                var_buf[:n].lerp_(unbiased, BN_MOMENTUM)
        else:
            mean, var = mean_buf[steps], var_buf[steps]
        gain = self._get(f"bn_{part}_weight", layer)
        return (v - mean.unsqueeze(1)) * torch.rsqrt(var.unsqueeze(1) + EPS) * gain

    def _norm_step(self, v: Tensor, part: str, layer: int, t: int) -> Tensor:
        """Normalize one step's (B, n) tensor (recurrent projection, cell state)."""
        if self.norm == "layer":
            return F.layer_norm(v, v.shape[-1:], self._get(f"ln_{part}_weight", layer),
                                self._get(f"ln_{part}_bias", layer), EPS)
        s = min(t, self.max_steps - 1)
        mean_buf, var_buf = self._get(f"bn_{part}_mean", layer), self._get(f"bn_{part}_var", layer)
        if self.training:
            mean, var = v.mean(0), v.var(0, unbiased=False)
            if t < self.max_steps:
                with torch.no_grad():
                    unbiased = var * (v.shape[0] / max(v.shape[0] - 1, 1))
                    mean_buf[s].lerp_(mean, BN_MOMENTUM)
                    var_buf[s].lerp_(unbiased, BN_MOMENTUM)
        else:
            mean, var = mean_buf[s], var_buf[s]
        out = (v - mean) * torch.rsqrt(var + EPS) * self._get(f"bn_{part}_weight", layer)
        bias = self._get(f"bn_{part}_bias", layer)
        return out + bias if bias is not None else out

    # -- one layer over the sequence (HandRNN.forward runs the stack) --------------------------
    def _layer(self, layer: int, x: Tensor, h: Tensor, c: Tensor | None, norms: dict):
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer)
        xp = self._norm_all_steps(x @ w_ih.t(), "ih", layer)  # (T, B, G*H)
        act = ACTIVATIONS[self.nonlinearity]
        outputs = []
        for t, xp_t in enumerate(xp.unbind(0)):
            hp = self._norm_step(h @ w_hh.t(), "hh", layer, t)
            if self.mode == "lstm":
                gates = xp_t + hp + b_ih + b_hh
                ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
                c = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
                record_grad_norm(c, norms.get("c"), t)
                h = torch.sigmoid(outgate) * torch.tanh(self._norm_step(c, "c", layer, t))
            elif self.mode == "gru":
                x_r, x_z, x_n = (xp_t + b_ih).chunk(3, 1)
                h_r, h_z, h_n = (hp + b_hh).chunk(3, 1)
                resetgate = torch.sigmoid(x_r + h_r)
                updategate = torch.sigmoid(x_z + h_z)
                newgate = torch.tanh(x_n + resetgate * h_n)
                h = newgate + updategate * (h - newgate)
            else:
                h = act(xp_t + hp + b_ih + b_hh)
            record_grad_norm(h, norms.get("h"), t)
            outputs.append(h)
        return torch.stack(outputs), h, c

    def extra_repr(self) -> str:
        return super().extra_repr() + f", norm={self.norm}"
