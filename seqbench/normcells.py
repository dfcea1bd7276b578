"""Recurrent cells with normalization inside the cell (hand-written only; the fused built-in kernels
cannot express it).

Layer normalization (Ba, Kiros & Hinton 2016), LN(z; g, b) = g * (z - mu) / sigma + b with mu and
sigma taken over the units of z of one sample at one step:

``layer``, rnn: the paper's eq. 4. The *summed* pre-activation a_t = W_hh h_{t-1} + W_ih x_t is
    normalized once, h_t = f(g / sigma_t * (a_t - mu_t) + b): one gain g (``ln_a_weight``, init 1)
    and, as b, the cell's own biases b_ih + b_hh (added after the normalization, as in eq. 4).
``layer``, lstm: the layer-normalized LSTM of the paper's supplementary material,
    (i, f, g, o) = LN(W_hh h_{t-1}; a1, b1) + LN(W_ih x_t; a2, b2) + b,
    c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g),  h_t = sigmoid(o) tanh(LN(c_t; a3, b3)):
    the two projections normalized *separately*, each over all 4H gate units (its own gain, init 1,
    and shift, init 0), b = b_ih + b_hh.
``layer``, gru: the layer-normalized GRU of the same supplementary material: the update and reset
    gates' projections normalized together (2H units), the candidate's input term W_in x_t and
    recurrent term W_hn h_{t-1} each on their own (H units), every projection separately:
    r, z = sigmoid(LN(W_h{r,z} h) + LN(W_i{r,z} x) + b),  n = tanh(LN(W_in x) + r * (LN(W_hn h) + b_hn)).
    (The paper writes h_t = (1 - z) h_{t-1} + z n; PyTorch's GRU, kept here, uses z for the old
    state, h_t = (1 - z) n + z h_{t-1}: the same family with z and 1 - z exchanged.)
``layer_split``, rnn only: W_ih x_t and W_hh h_{t-1} each normalized on its own and then summed, the
    LSTM recipe carried over to the Elman cell. **Not the paper's RNN** (eq. 4 normalizes the sum);
    kept as a named variant because earlier seqbench versions ran it under the name ``layer``.

Recurrent batch normalization (Cooijmans et al. 2017, section 3), BN(z; gamma, beta) with mean and
variance over the batch, kept *per time step*: in training each step uses its own batch's mean and
variance and updates that step's running averages (momentum 0.1); in evaluation each step uses its
running averages (steps beyond those seen in training use the last). The gains start at 0.1, which
keeps the tanh and sigmoid units out of saturation at the start (the paper's section 4 finding).

``batch``: the paper's BN-LSTM, carried over to every cell:
    gates = BN(W_hh h_{t-1}; gamma_h) + BN(W_ih x_t; gamma_x) + b,  h_t = sigmoid(o) tanh(BN(c_t;
    gamma_c, beta_c)) (lstm): the projections' shifts are the gate biases themselves (the paper sets
    beta_h = beta_x = 0 for the same reason), the cell state has its own shift (init 0).
    Caveat: BN of the input term subtracts its batch mean at each step, so an input that is equal
    across the batch at a step (the delayed-recall cue, the copy delimiter and blanks) is erased:
    W_ih x_t - mean = 0 exactly, whatever x_t.
``batch_recurrent``: only the recurrent term is batch-normalized, gates = BN(W_hh h_{t-1}; gamma_h)
    + W_ih x_t + b, and the LSTM cell state is not (BN(c_t) would subtract the same batch-constant
    input once it is written into c_t). **Not the paper's cell**: a variant that lets batch-constant
    inputs reach the state. A batch-constant component of h_{t-1} is still removed from the
    recurrent term at the next step; what the state keeps of such an input is what the
    nonlinearity made sample-dependent.

Everything else (parameter names of the plain cell, initialization, residual connections, gradient
norms) is HandRNN's: a NormRNN with its norm gains at 1 and shifts at 0 differs from HandRNN only by
the normalization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench.cells import cell_class
from seqbench.cells.base import ACTIVATIONS, record_grad_norm
from seqbench.cells.gru import gru_update
from seqbench.cells.stack import HandRNN
from seqbench.choices import NORMS
from seqbench.errors import ConfigError

EPS = 1e-5
BN_MOMENTUM = 0.1
BN_GAIN_INIT = 0.1  # Cooijmans et al. 2017, section 4
#: the norms a NormRNN implements ("none" is HandRNN itself)
NORM_MODES = tuple(n for n in NORMS if n != "none")


def norm_parts(norm: str, mode: str, hidden: int) -> dict[str, int]:
    """The tensors ``norm`` normalizes in a ``mode`` cell, with their sizes: ``a`` the summed
    pre-activation, ``ih`` / ``hh`` the input / recurrent projection, ``c`` the LSTM cell state."""
    G, H = cell_class(mode).recurrent_blocks * hidden, hidden
    cell_state = {"c": H} if mode == "lstm" else {}
    if norm == "layer":
        return {"a": H} if mode == "rnn" else {"ih": G, "hh": G, **cell_state}
    if norm == "layer_split":
        return {"ih": G, "hh": G}
    if norm == "batch":
        return {"ih": G, "hh": G, **cell_state}
    return {"hh": G}  # batch_recurrent


def ln_groups(mode: str, part: str, hidden: int) -> tuple[int, ...]:
    """Sizes of the unit groups over which layer norm takes its statistics, in order: the whole
    tensor, except a GRU projection, whose gates (r, z) and candidate (n) are normalized apart
    (Ba et al. 2016, supplementary: the layer-normalized GRU)."""
    if mode == "gru" and part in ("ih", "hh"):
        return (2 * hidden, hidden)
    return (norm_parts("layer", mode, hidden).get(part, cell_class(mode).recurrent_blocks * hidden),)


class NormRNN(HandRNN):
    """HandRNN with layer or recurrent batch normalization inside every cell."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", norm: str = "layer", max_steps: int = 1,
                 residual: bool = False):
        super().__init__(mode, input_size, hidden_size, num_layers, nonlinearity,
                         residual=residual)
        if norm not in NORM_MODES:
            raise ConfigError(f"unknown norm {norm!r}; allowed: {', '.join(NORM_MODES)}")
        if norm not in self.cells[0].norms:
            raise ConfigError(f"norm {norm!r} does not apply to cell {mode!r}")
        self.norm = norm
        self.kind = "layer" if norm.startswith("layer") else "batch"
        self.max_steps = max(int(max_steps), 1)
        self.parts = norm_parts(norm, mode, hidden_size)
        for layer in range(num_layers):
            for part, size in self.parts.items():
                self._register_norm(part, size, layer)

    def _register_norm(self, part: str, size: int, layer: int) -> None:
        """Gain and shift (and, for batch norm, per-step running statistics) of one part."""
        def param(name: str, value: float) -> None:
            self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.full((size,), value)))

        if self.kind == "layer":
            param(f"ln_{part}_weight", 1.0)
            if part != "a":  # eq. 4's shift b is the cell's own bias b_ih + b_hh
                param(f"ln_{part}_bias", 0.0)
            return
        param(f"bn_{part}_weight", BN_GAIN_INIT)
        if part == "c":  # the projections' shifts are the gate biases (Cooijmans: beta_h = beta_x = 0)
            param("bn_c_bias", 0.0)
        self.register_buffer(f"bn_{part}_mean_l{layer}", torch.zeros(self.max_steps, size))
        self.register_buffer(f"bn_{part}_var_l{layer}", torch.ones(self.max_steps, size))

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        p = self.layer_params(layer)
        return p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"]

    # -- normalizers ----------------------------------------------------------------------------
    def _get(self, name: str, layer: int):
        return getattr(self, f"{name}_l{layer}", None)

    def _layer_norm(self, v: Tensor, part: str, layer: int) -> Tensor:
        """LN over the last dimension, statistics per unit group (see ``ln_groups``)."""
        gain, shift = self._get(f"ln_{part}_weight", layer), self._get(f"ln_{part}_bias", layer)
        groups = ln_groups(self.mode, part, self.hidden_size)
        if len(groups) == 1:
            return F.layer_norm(v, v.shape[-1:], gain, shift, EPS)
        normed = torch.cat([F.layer_norm(g, g.shape[-1:], eps=EPS)
                            for g in v.split(groups, dim=-1)], dim=-1)
        return torch.addcmul(shift, normed, gain) if shift is not None else normed * gain

    def _norm_all_steps(self, v: Tensor, part: str, layer: int) -> Tensor:
        """Normalize (T, B, n) projections of every step at once (the input projection)."""
        if self.kind == "layer":
            return self._layer_norm(v, part, layer)
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
        """Normalize one step's (B, n) tensor (recurrent projection, cell state, summed input)."""
        if self.kind == "layer":
            return self._layer_norm(v, part, layer)
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
    def _layer(self, layer: int, x: Tensor, state: tuple[Tensor, ...], norms: dict):
        h, c = state if self.mode == "lstm" else (state[0], None)
        if "a" in self.parts:
            return self._summed_rnn_layer(layer, x, h, norms)
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer)
        xp = x @ w_ih.t()  # (T, B, G*H)
        if "ih" in self.parts:
            xp = self._norm_all_steps(xp, "ih", layer)
        act = ACTIVATIONS[self.nonlinearity]
        outputs = []
        for t, xp_t in enumerate(xp.unbind(0)):
            hp = self._norm_step(h @ w_hh.t(), "hh", layer, t)
            if self.mode == "lstm":
                gates = xp_t + hp + b_ih + b_hh
                ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
                c = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
                record_grad_norm(c, norms.get("c"), t)
                c_out = self._norm_step(c, "c", layer, t) if "c" in self.parts else c
                h = torch.sigmoid(outgate) * torch.tanh(c_out)
            elif self.mode == "gru":
                h = gru_update(xp_t + b_ih, hp + b_hh, h)
            else:
                h = act(xp_t + hp + b_ih + b_hh)
            record_grad_norm(h, norms.get("h"), t)
            outputs.append(h)
        return torch.stack(outputs), ((h, c) if c is not None else (h,))

    def _summed_rnn_layer(self, layer: int, x: Tensor, h: Tensor, norms: dict):
        """Ba et al. 2016, eq. 4: h_t = f(g / sigma_t * (a_t - mu_t) + b), with
        a_t = W_hh h_{t-1} + W_ih x_t normalized once over its H units and b = b_ih + b_hh."""
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer)
        xp = x @ w_ih.t()  # (T, B, H): the input half of a_t for every step, before the loop
        bias = b_ih + b_hh
        act = ACTIVATIONS[self.nonlinearity]
        outputs = []
        for t, xp_t in enumerate(xp.unbind(0)):
            a = torch.addmm(xp_t, h, w_hh.t())
            h = act(self._norm_step(a, "a", layer, t) + bias)
            record_grad_norm(h, norms.get("h"), t)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", norm={self.norm}"
