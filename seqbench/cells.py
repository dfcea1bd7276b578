"""Recurrent cells in two implementations that compute the same function.

``builtin``: ``torch.nn.RNN/LSTM/GRU`` (cuDNN on a GPU, oneDNN/ATen on a CPU).
``hand``:    ``HandRNN``, the gate equations of PyTorch's documentation written out in plain tensor
             operations, with parameter names and shapes identical to the built-in module's
             (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ...), so a
             ``state_dict`` loads into either implementation.

The hand-written layer is written for speed within plain autograd (docs/references.md section 7):
the input projection of all steps is one matrix product before the loop, the loop walks
``unbind(0)`` views (indexing a stacked tensor per step makes the backward pass O(T^2)), and each
step does one ``addmm`` plus pointwise work.

Because it is written out, the hand-written layer can also expose what the fused kernels hide: the
norm of the gradient arriving at every h_t (and c_t), ||dL/dh_t|| per sequence, recorded during a
single backward pass (``grad_norms``; see seqbench.probe).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqbench import fused
from seqbench.choices import CELLS, IMPLS, INITS, NONLINEARITIES, NORMS  # noqa: F401  (re-exported)
from seqbench.errors import ConfigError

#: gate blocks stacked in weight_ih / weight_hh, in PyTorch's order
GATES = {"rnn": 1, "lstm": 4, "gru": 3}  # lstm: i, f, g, o;  gru: r, z, n

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01 (Maas et al. 2013)
    "elu": F.elu,  # alpha 1 (Clevert et al. 2015)
    "linear": lambda x: x,  # identity: the linear RNN of the gradient theory checks
}
assert tuple(ACTIVATIONS) == NONLINEARITIES
#: nonlinearities torch.nn.RNN can express
BUILTIN_NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class CellConfig:
    """What recurrent stack to build: cell type, implementation, sizes and the remedies for
    vanishing gradients that act on the cell (seqbench.init, seqbench.normcells)."""

    cell: str = "lstm"  # rnn | lstm | gru
    impl: str = "builtin"  # builtin (torch.nn) | hand (HandRNN)
    hidden: int = 128  # hidden units per layer
    layers: int = 1  # stacked recurrent layers
    nonlinearity: str = "tanh"  # rnn only: tanh | relu (both impls) | leaky_relu | elu | linear (hand)
    init: str = "default"  # default | xavier | he | orthogonal | identity | irnn (rnn + relu)
    init_gain: float = 1.0  # multiplies the recurrent weights after the init scheme
    forget_bias: float | None = None  # lstm: forget-gate bias; None = PyTorch's default init
    chrono: bool = False  # lstm, gru: chrono init of gate biases from the sequence length
    norm: str = "none"  # none | layer | layer_split (rnn) | batch | batch_recurrent (hand only)
    residual: bool = False  # layers >= 2: each layer above the first adds its input to its output

    def validate(self) -> CellConfig:
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; allowed: {', '.join(CELLS)}")
        if self.impl not in IMPLS:
            raise ConfigError(f"unknown impl {self.impl!r}; allowed: {', '.join(IMPLS)}")
        if self.hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")
        if self.layers < 1:
            raise ConfigError(f"layers must be >= 1, got {self.layers}")
        if self.nonlinearity not in ACTIVATIONS:
            raise ConfigError(
                f"unknown nonlinearity {self.nonlinearity!r}; allowed: {', '.join(ACTIVATIONS)}"
            )
        if self.cell != "rnn" and self.nonlinearity != "tanh":
            raise ConfigError(
                f"nonlinearity applies to cell 'rnn' only, not {self.cell!r} "
                "(gated cells use sigmoid gates and tanh)"
            )
        if self.impl == "builtin" and self.nonlinearity not in BUILTIN_NONLINEARITIES:
            raise ConfigError(
                f"nonlinearity {self.nonlinearity!r} exists for --impl hand only; "
                f"builtin allows: {', '.join(BUILTIN_NONLINEARITIES)}"
            )
        if self.init not in INITS:
            raise ConfigError(f"unknown init {self.init!r}; allowed: {', '.join(INITS)}")
        if self.init == "irnn" and (self.cell, self.nonlinearity) != ("rnn", "relu"):
            raise ConfigError(
                "init 'irnn' (Le et al. 2015) applies to cell 'rnn' with nonlinearity 'relu' only; "
                "identity recurrent weights for other cells: init 'identity'"
            )
        if not self.init_gain > 0:
            raise ConfigError(f"init_gain must be > 0, got {self.init_gain}")
        if self.forget_bias is not None and self.cell != "lstm":
            raise ConfigError(f"forget_bias applies to cell 'lstm' only, not {self.cell!r}")
        if self.chrono and self.cell == "rnn":
            raise ConfigError("chrono initialization applies to cells 'lstm' and 'gru' only")
        if self.chrono and self.forget_bias is not None:
            raise ConfigError("chrono and forget_bias both set the forget-gate bias; choose one")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; allowed: {', '.join(NORMS)}")
        if self.norm != "none" and self.impl == "builtin":
            raise ConfigError(
                f"norm {self.norm!r} (normalization inside the cell) exists for --impl hand only"
            )
        if self.norm == "layer_split" and self.cell != "rnn":
            raise ConfigError(
                f"norm 'layer_split' applies to cell 'rnn' only, not {self.cell!r} "
                "(norm 'layer' of lstm and gru already normalizes the two projections apart)"
            )
        if self.residual and self.layers < 2:
            raise ConfigError(f"residual needs layers >= 2, got layers={self.layers}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    def options_label(self) -> str:
        """The options that differ from the defaults, in words ('' for a default cell)."""
        return options_label(self.to_dict())


def options_label(cell: dict) -> str:
    """Words for the non-default remedies in a CellConfig dict (or a results row)."""

    def missing(v) -> bool:
        return v is None or v == "" or (isinstance(v, float) and v != v)

    parts = []
    if cell.get("nonlinearity", "tanh") not in ("tanh", None) and cell.get("cell") == "rnn":
        parts.append(str(cell["nonlinearity"]))
    if cell.get("init", "default") not in ("default", None) and not missing(cell.get("init")):
        parts.append(f"{cell['init']} init")
    gain = cell.get("init_gain", 1.0)
    if not missing(gain) and float(gain) != 1.0:
        parts.append(f"gain {float(gain):g}")
    if not missing(cell.get("forget_bias")):
        parts.append(f"forget bias {float(cell['forget_bias']):g}")
    if str(cell.get("chrono", False)).lower() == "true":
        parts.append("chrono")
    if cell.get("norm", "none") not in ("none", None) and not missing(cell.get("norm")):
        parts.append(f"{cell['norm']} norm")
    if str(cell.get("residual", False)).lower() == "true":
        parts.append("residual")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# One layer over a whole sequence. x: (T, B, I); h, c: (B, H); returns outputs (T, B, H) and the
# final state. norms_h / norms_c: optional (T, B) tensors into which the backward pass writes
# ||dL/dh_t|| / ||dL/dc_t|| per sequence (seqbench.probe).
# --------------------------------------------------------------------------------------------


def _input_projection(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> list[Tensor]:
    """x W_ih^T (+ bias) for all steps in one product, returned as per-step views."""
    T, B, n_in = x.shape
    flat = x.reshape(T * B, n_in)
    xp = torch.addmm(bias, flat, w_ih.t()) if bias is not None else flat @ w_ih.t()
    return list(xp.view(T, B, -1).unbind(0))


def record_grad_norm(state: Tensor, norms: Tensor | None, t: int) -> None:
    """Have the backward pass write the per-sequence norm of dL/d``state`` (the total gradient
    arriving at it, from every use) into ``norms[t]``; nothing if ``norms`` is None."""
    if norms is None or not state.requires_grad:
        return
    row = norms[t]

    def hook(grad: Tensor) -> None:
        torch.linalg.vector_norm(grad, dim=-1, dtype=row.dtype, out=row)

    state.register_hook(hook)


def rnn_layer(x, h, w_ih, w_hh, b_ih, b_hh, activation, norms_h=None):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    bias = b_ih + b_hh if b_ih is not None else None
    w_hh_t = w_hh.t()
    outputs = []
    for t, xp_t in enumerate(_input_projection(x, w_ih, bias)):
        h = activation(torch.addmm(xp_t, h, w_hh_t))
        record_grad_norm(h, norms_h, t)
        outputs.append(h)
    return torch.stack(outputs), h


def lstm_layer(x, h, c, w_ih, w_hh, b_ih, b_hh, norms_h=None, norms_c=None):
    """PyTorch's LSTM equations, gates in the order i, f, g, o:

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)      f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)         o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g                              h' = o * tanh(c')
    """
    bias = b_ih + b_hh if b_ih is not None else None
    w_hh_t = w_hh.t()
    outputs = []
    for t, xp_t in enumerate(_input_projection(x, w_ih, bias)):
        gates = torch.addmm(xp_t, h, w_hh_t)  # (B, 4H)
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        c = torch.sigmoid(forgetgate) * c + torch.sigmoid(ingate) * torch.tanh(cellgate)
        h = torch.sigmoid(outgate) * torch.tanh(c)
        record_grad_norm(c, norms_c, t)
        record_grad_norm(h, norms_h, t)
        outputs.append(h)
    return torch.stack(outputs), h, c


def gru_layer(x, h, w_ih, w_hh, b_ih, b_hh, norms_h=None):
    """PyTorch's GRU equations, gates in the order r, z, n:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
    """
    w_hh_t = w_hh.t()
    outputs = []
    for t, xp_t in enumerate(_input_projection(x, w_ih, b_ih)):
        hp = torch.addmm(b_hh, h, w_hh_t) if b_hh is not None else h @ w_hh_t  # (B, 3H)
        x_r, x_z, x_n = xp_t.chunk(3, 1)
        h_r, h_z, h_n = hp.chunk(3, 1)
        resetgate = torch.sigmoid(x_r + h_r)
        updategate = torch.sigmoid(x_z + h_z)
        newgate = torch.tanh(x_n + resetgate * h_n)
        h = newgate + updategate * (h - newgate)  # = (1 - z) * n + z * h
        record_grad_norm(h, norms_h, t)
        outputs.append(h)
    return torch.stack(outputs), h


class HandRNN(nn.Module):
    """Hand-written multi-layer RNN / LSTM / GRU, a drop-in for the built-in modules.

    Time-major (``batch_first=False``), unidirectional, no projection, no dropout: the subset
    seqbench uses. ``forward(x, hx)`` returns what the built-in module returns:
    ``(output, h_n)`` for rnn and gru, ``(output, (h_n, c_n))`` for lstm.
    """

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        residual: bool = False,
        fused: bool = True,
    ):
        super().__init__()
        if mode not in GATES:
            raise ConfigError(f"unknown cell {mode!r}; allowed: {', '.join(GATES)}")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.nonlinearity = nonlinearity
        self.bias = bias
        self.residual = residual
        self.fused = fused  # seqbench.fused's whole-sequence Functions; False: the plain layers here
        gate_size = GATES[mode] * hidden_size
        # Registered in nn.RNNBase's order (w_ih, w_hh, b_ih, b_hh per layer), so that
        # reset_parameters draws the same numbers from the same RNG state as the built-in module.
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size
            shapes = {"weight_ih": (gate_size, layer_input), "weight_hh": (gate_size, hidden_size)}
            if bias:
                shapes |= {"bias_ih": (gate_size,), "bias_hh": (gate_size,)}
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default: every weight and bias uniform in [-1/sqrt(H), 1/sqrt(H)]."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def layer_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        get = lambda name: getattr(self, f"{name}_l{layer}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def forward(self, x: Tensor, hx=None, grad_norms: Sequence[dict] | None = None):
        """x: (T, B, input_size). hx: initial state(s), shaped as for the built-in module.

        grad_norms: optional, one dict per layer with floating tensors ``"h"`` (and ``"c"`` for
        lstm) of shape (T, B), into which the backward pass writes ||dL/dh_t|| (||dL/dc_t||) of
        each sequence, for every t in that layer. The function computed is unchanged.
        """
        T, B, _ = x.shape
        L, H = self.num_layers, self.hidden_size
        if hx is None:
            zeros = x.new_zeros(L, B, H)
            hx = (zeros, zeros) if self.mode == "lstm" else zeros
        h0, c0 = hx if self.mode == "lstm" else (hx, None)
        h_n, c_n = [], []
        out = x
        for layer in range(L):
            layer_input = out
            norms = grad_norms[layer] if grad_norms is not None else {}
            c_init = c0[layer] if c0 is not None else None
            out, h, c = self._layer(layer, out, h0[layer], c_init, norms)
            if self.residual and layer > 0:  # He et al. 2016; Wu et al. 2016 for LSTM stacks
                out = out + layer_input
            h_n.append(h)
            c_n.append(c)
        h_n = torch.stack(h_n)
        return (out, (h_n, torch.stack(c_n))) if self.mode == "lstm" else (out, h_n)

    def _layer(self, layer: int, x: Tensor, h: Tensor, c: Tensor | None, norms: dict):
        """One layer over the whole sequence: (outputs (T, B, H), h_T, c_T or None)."""
        weights = self.layer_weights(layer)
        if self.mode == "lstm":
            return (fused.lstm if self.fused else lstm_layer)(
                x, h, c, *weights, norms_h=norms.get("h"), norms_c=norms.get("c"))
        if self.mode == "gru":
            out, h = (fused.gru if self.fused else gru_layer)(x, h, *weights,
                                                               norms_h=norms.get("h"))
        elif self.fused:
            out, h = fused.rnn(x, h, *weights, self.nonlinearity, norms_h=norms.get("h"))
        else:
            out, h = rnn_layer(x, h, *weights, ACTIVATIONS[self.nonlinearity],
                               norms_h=norms.get("h"))
        return out, h, None

    def extra_repr(self) -> str:
        s = f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        s += f", nonlinearity={self.nonlinearity}" if self.mode == "rnn" else ""
        return s + (", residual=True" if self.residual else "")


def builtin_module(mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   nonlinearity: str = "tanh") -> nn.Module:
    """The built-in torch.nn module for ``mode``."""
    if mode == "rnn":
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity)
    return {"lstm": nn.LSTM, "gru": nn.GRU}[mode](input_size, hidden_size, num_layers)


def builtin_layers(rnn: nn.RNNBase) -> list[tuple[nn.Module, dict[str, Tensor]]]:
    """Split a stacked built-in module into its layers, each still run by the fused kernel:
    a single-layer template module and that layer's parameters (named as layer 0) to call it with
    through ``torch.func.functional_call``. Gradients flow to the stacked module's parameters."""
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}[rnn.mode]
    nonlinearity = "relu" if rnn.mode == "RNN_RELU" else "tanh"
    layers = []
    with torch.random.fork_rng(devices=[]):  # the templates' own init must not move the global RNG
        for layer in range(rnn.num_layers):
            n_in = rnn.input_size if layer == 0 else rnn.hidden_size
            template = builtin_module(mode, n_in, rnn.hidden_size, 1, nonlinearity)
            template = template.to(device=rnn.weight_hh_l0.device, dtype=rnn.weight_hh_l0.dtype)
            suffix = f"_l{layer}"
            params = {name[: -len(suffix)] + "_l0": p for name, p in rnn.named_parameters()
                      if name.endswith(suffix)}
            layers.append((template, params))
    return layers


def run_builtin_residual(rnn: nn.RNNBase, x: Tensor) -> Tensor:
    """Top-layer outputs of a built-in stack run layer by layer, each layer above the first
    adding its input to its output (what ``HandRNN(residual=True)`` computes)."""
    out = x
    for layer, (module, params) in enumerate(builtin_layers(rnn)):
        y = torch.func.functional_call(module, params, (out,))[0]
        out = y + out if layer > 0 else y
    return out


def make_recurrent(cfg: CellConfig, input_size: int) -> nn.Module:
    """Build the recurrent stack ``cfg`` describes, at PyTorch's default initialization. With the
    same global RNG state, ``builtin`` and ``hand`` get identical weights (same parameters, same
    order, same draws). Residual connections of a built-in stack are applied by the model."""
    cfg.validate()
    if cfg.impl == "builtin":
        return builtin_module(cfg.cell, input_size, cfg.hidden, cfg.layers, cfg.nonlinearity)
    return HandRNN(cfg.cell, input_size, cfg.hidden, cfg.layers, cfg.nonlinearity,
                   residual=cfg.residual)
