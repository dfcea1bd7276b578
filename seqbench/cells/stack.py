"""Recurrent stacks: the hand-written ``HandRNN`` over any registered cell, and the built-in
torch.nn modules (cuDNN on a GPU, oneDNN/ATen on a CPU) for the cells that have one.

``HandRNN`` holds one ``seqbench.cells.base.Cell`` per layer and registers the parameters each asks
for on itself as ``<name>_l<layer>``: for rnn, lstm and gru these are torch.nn.RNN/LSTM/GRU's own
names and shapes (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ...), drawn in
the same order, so with the same RNG state both implementations start from identical weights and a
``state_dict`` loads into either.

Because it runs the cell's own equations, the hand-written stack can also expose what the fused
kernels hide: the norm of the gradient arriving at every state (h_t, and c_t for the LSTM),
||dL/dh_t|| per sequence, recorded during a single backward pass (``grad_norms``; seqbench.probe).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from seqbench.cells import CellConfig, cell_class
from seqbench.cells.base import Cell

#: nonlinearities torch.nn.RNN can express
BUILTIN_NONLINEARITIES = ("tanh", "relu")


class HandRNN(nn.Module):
    """A multi-layer stack of any registered cell, run by the cell's own code (its fast
    whole-sequence path when it has one), a drop-in for the built-in modules where they exist.

    Time-major (``batch_first=False``), unidirectional. ``forward(x, hx)`` returns what the built-in
    module returns: ``(output, h_n)`` for a cell with one state, ``(output, (h_n, c_n, ...))`` for
    more (the LSTM's ``(h_n, c_n)``), each stacked over layers.
    """

    def __init__(self, cell: str | type[Cell], input_size: int, hidden_size: int,
                 num_layers: int = 1, nonlinearity: str | None = None, residual: bool = False,
                 fused: bool = True, max_steps: int = 1):
        super().__init__()
        cls = cell_class(cell) if isinstance(cell, str) else cell
        self.mode = cell if isinstance(cell, str) else cls.name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.residual = residual
        self.fused = fused  # the cells' fast whole-sequence paths; False: their plain layers
        self.cells = [cls(input_size if layer == 0 else hidden_size, hidden_size, nonlinearity,
                          max_steps) for layer in range(num_layers)]
        for c in self.cells[:-1]:
            c.top_layer = False
        self.nonlinearity = self.cells[0].nonlinearity
        self.state_names = self.cells[0].states
        self._names = []  # per layer: the cell's parameter names
        # Registered layer by layer in the cell's order (for rnn/lstm/gru: nn.RNNBase's w_ih,
        # w_hh, b_ih, b_hh), so that reset_parameters draws what the built-in module draws.
        for layer, c in enumerate(self.cells):
            if c.module is not None:
                self.add_module(f"cell_l{layer}", c.module)
            shapes = c.parameter_shapes()
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(shape)))
            self._names.append(tuple(shapes))
        self.reset_parameters()
        for layer, c in enumerate(self.cells):
            c.parametrize(self, layer)

    def reset_parameters(self) -> None:
        """Every layer's cell initializes its own parameters, layer by layer (before any
        parametrization: ``__init__`` applies those after the first initialization)."""
        for layer, c in enumerate(self.cells):
            c.reset_parameters(self.layer_params(layer))

    def layer_params(self, layer: int) -> dict[str, Tensor]:
        """The parameters of one layer, by the cell's names (``weight_hh``, ...)."""
        return {name: getattr(self, f"{name}_l{layer}") for name in self._names[layer]}

    def initial_state(self, batch: int, like: Tensor) -> tuple[Tensor, ...]:
        """Zero states shaped like ``hx``: one (L, B, .) tensor per state name."""
        per_layer = [c.initial_state(batch, like) for c in self.cells]
        return tuple(torch.stack(s) for s in zip(*per_layer))

    def forward(self, x: Tensor, hx=None, grad_norms: Sequence[dict] | None = None):
        """x: (T, B, input_size). hx: initial state(s), shaped as for the built-in module.

        grad_norms: optional, one dict per layer with floating (T, B) tensors keyed by state name
        (``"h"``, and ``"c"`` for the LSTM), into which the backward pass writes the per-sequence
        norm of dL/d(state_t) for every t in that layer. The function computed is unchanged.
        """
        B = x.shape[1]
        if hx is None:
            hx = self.initial_state(B, x)
        elif len(self.state_names) == 1:
            hx = (hx,)
        finals = []
        out = x
        for layer in range(self.num_layers):
            layer_input = out
            norms = grad_norms[layer] if grad_norms is not None else {}
            out, state = self._layer(layer, out, tuple(s[layer] for s in hx), norms)
            if self.residual and layer > 0:  # He et al. 2016; Wu et al. 2016 for LSTM stacks
                out = out + layer_input
            finals.append(state)
        final = tuple(torch.stack(s) for s in zip(*finals))
        return (out, final[0]) if len(final) == 1 else (out, final)

    def _layer(self, layer: int, x: Tensor, state: tuple[Tensor, ...], norms: dict):
        """One layer over the whole sequence: (outputs (T, B, H), final state)."""
        cell = self.cells[layer]
        fast = self.fused and cell.fast_layer is not None and (cell.fast_layer_norms or not norms)
        run = cell.fast_layer if fast else cell.layer
        return run(self.layer_params(layer), x, state, norms)

    def extra_repr(self) -> str:
        s = f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        extra = self.cells[0].extra_repr()
        s += f", {extra}" if extra else ""
        return s + (", residual=True" if self.residual else "")


def builtin_module(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   nonlinearity: str | None = None) -> nn.Module:
    """The built-in torch.nn module of ``cell`` (rnn, lstm, gru: the cells with a twin)."""
    twin = cell_class(cell).builtin
    if twin is None:
        raise ValueError(f"cell {cell!r} has no torch.nn built-in module")
    if twin == "RNN":
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity or "tanh")
    return getattr(nn, twin)(input_size, hidden_size, num_layers)


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


def make_recurrent(cfg: CellConfig, input_size: int, max_steps: int = 1) -> nn.Module:
    """Build the recurrent stack ``cfg`` describes, at the cell's default initialization. With the
    same global RNG state, ``builtin`` and ``hand`` get identical weights (same parameters, same
    order, same draws). Residual connections of a built-in stack are applied by the model."""
    cfg = cfg.validate()
    if cfg.impl == "builtin":
        return builtin_module(cfg.cell, input_size, cfg.hidden, cfg.layers, cfg.nonlinearity)
    return HandRNN(cfg.cell, input_size, cfg.hidden, cfg.layers, cfg.nonlinearity,
                   residual=cfg.residual, max_steps=max_steps)
