"""One layer of a recurrent stack as a discrete dynamical system s_t = f(s_{t-1}, x_t).

Every measure of seqbench.dynamics differentiates the *one-step map* of a layer with its
parameters held fixed (plain tensors, detached), by torch.func (jvp, vjp, vmap). The map is the
cell's own ``step`` (seqbench.cells.base.Cell.step: the equation every faster path of the cell is
tested against), so every registered cell and every plugin cell is covered without new code.

Conventions (README, "Dynamics"):

- the state s is the layer's *full* recurrent state, every tensor the cell names in ``states``
  concatenated in that order: h for rnn, gru, indrnn, exprnn, mingru, minlstm; (h, c) for lstm;
  (h, z) for cornn. A complex state (lru) counts as its real and imaginary parts, interleaved
  per unit (``torch.view_as_real``), so an lru layer of H units is a real system of width 2H;
- stacked layers are measured **per layer**: layer l is the system driven by the sequence the
  layer below hands it (the outputs of the same forward pass, plus its input with residual
  connections), with the layers below held on their trajectory. The Jacobian of the whole stack's
  state is block lower-triangular (layer l at t depends on layer l-1 at t, never the reverse), so
  the whole stack's Lyapunov exponents are those of its layers together;
- ``builtin`` models (fused torch.nn.RNN/LSTM/GRU) are measured on their hand twin,
  seqbench.cells.stack.HandRNN, loaded with the same ``state_dict`` (the parameter names are
  torch.nn's): the same function, and ``hand_twin`` checks the two agree on the batch's first
  steps before anything is measured;
- in-cell normalization (``--norm``) is refused: batch norm mixes the sequences of a batch (one
  sequence's next state depends on the others'), so no per-sequence map exists.

Time indexing: x_0 .. x_{S-1} are the task's inputs, s_t the state after reading x_t, s_{-1} the
initial state (zeros); J_t = d s_t / d s_{t-1} is the Jacobian of the step that reads x_t.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqbench.cells.base import Cell
from seqbench.cells.stack import HandRNN
from seqbench.errors import ConfigError

#: the twin must reproduce the built-in module's outputs to this (relative to their scale)
TWIN_TOLERANCE = 1e-4
#: steps of the batch on which ``hand_twin`` compares the two
TWIN_CHECK_STEPS = 8
#: ``LayerMap.pushforward`` vmaps up to this many directions, and folds more into the batch
FOLD_FROM = 32


@functools.cache
def forward_ad_ready() -> None:
    """Load what torch's forward-mode AD loads on its first use, once, with its deprecation
    warning silenced: torch 2.13 registers its jvp decompositions through torch.jit.script, which
    warns (an error where warnings are errors, as in seqbench's tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torch._decomp import decompositions_for_jvp  # noqa: F401
        except ImportError:  # another torch: it loads them its own way
            pass


def hand_stack(model, check: Tensor | None = None) -> HandRNN:
    """The hand-written stack whose cells' ``step`` the measures differentiate: the model's own
    (``impl hand``) or a twin of its built-in module (see ``hand_twin``, checked on ``check``)."""
    rnn = model.rnn if hasattr(model, "rnn") else model
    if getattr(rnn, "norm", "none") != "none" or type(rnn).__name__ == "NormRNN":
        raise ConfigError("the dynamics measures need a cell without in-cell normalization "
                          "(batch norm mixes the sequences of a batch: no per-sequence map); "
                          "drop --norm")
    if isinstance(rnn, HandRNN):
        return rnn
    if isinstance(rnn, nn.RNNBase):
        cfg = getattr(model, "cell_config", None)
        return hand_twin(rnn, residual=bool(cfg.residual) if cfg is not None else False,
                         check=check)
    raise ConfigError(f"cannot measure the dynamics of {type(rnn).__name__}: expected a "
                      "seqbench HandRNN or a torch.nn RNN/LSTM/GRU")


def hand_twin(rnn: nn.RNNBase, residual: bool = False, check: Tensor | None = None) -> HandRNN:
    """A HandRNN computing what the built-in ``rnn`` computes: same cell, sizes and nonlinearity,
    loaded with its ``state_dict`` (seqbench.cells.stack: the names and shapes are torch.nn's).

    ``check`` (S, B, I): inputs on which both are run for ``TWIN_CHECK_STEPS`` steps; a
    difference above ``TWIN_TOLERANCE`` (relative) is a RuntimeError, never a silent mismatch."""
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn", "RNN_RELU": "rnn"}[rnn.mode]
    nonlinearity = "relu" if rnn.mode == "RNN_RELU" else None
    if rnn.bidirectional or rnn.batch_first or getattr(rnn, "proj_size", 0) or not rnn.bias:
        raise ConfigError("only unidirectional, time-major built-in modules with biases and "
                          "without projections have a hand twin")
    with torch.random.fork_rng(devices=[]):  # the twin's own init must not move the global RNG
        twin = HandRNN(mode, rnn.input_size, rnn.hidden_size, rnn.num_layers, nonlinearity,
                       residual=residual)
    ref = rnn.weight_hh_l0
    twin = twin.to(device=ref.device, dtype=ref.dtype)
    twin.load_state_dict(rnn.state_dict())
    twin.train(rnn.training)
    if check is not None and not residual:
        x = check[:TWIN_CHECK_STEPS]
        with torch.no_grad():
            want, got = rnn(x)[0], twin(x)[0]
        err = float((want - got).abs().max()) / max(float(want.abs().max()), 1.0)
        if not err <= TWIN_TOLERANCE:
            raise RuntimeError(f"the hand twin of {rnn.mode} differs from it by {err:.2e} "
                               f"(relative; allowed {TWIN_TOLERANCE:g})")
    return twin


@dataclass
class LayerMap:
    """The one-step map of one layer, over a flat real state s (B, D)."""

    layer: int
    cell: Cell
    params: dict[str, Tensor]  # the layer's parameters, detached: held fixed
    widths: tuple[int, ...]  # real width of each state tensor (2H for a complex one)
    complex_states: tuple[bool, ...]
    init: Tensor  # (B, D) the flat initial state

    @property
    def dim(self) -> int:
        return sum(self.widths)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.cell.states)

    def flatten(self, state) -> Tensor:
        parts = [torch.view_as_real(s).flatten(-2) if s.is_complex() else s for s in state]
        return torch.cat(parts, -1) if len(parts) > 1 else parts[0]

    def unflatten(self, s: Tensor) -> tuple[Tensor, ...]:
        out = []
        for part, cplx in zip(s.split(list(self.widths), -1), self.complex_states):
            # torch.complex of the even and odd entries: view_as_complex would need a
            # contiguous last dimension, which forward-mode tangents need not have
            out.append(torch.complex(part[..., 0::2], part[..., 1::2]) if cplx else part)
        return tuple(out)

    def step(self, s: Tensor, x_t: Tensor, params: dict[str, Tensor] | None = None
             ) -> tuple[Tensor, Tensor]:
        """(s_t, y_t) from s_{t-1} (B, D) and x_t (B, I): the cell's own ``step``."""
        y, state = self.cell.step(self.params if params is None else params, x_t,
                                  self.unflatten(s))
        return self.flatten(state), y

    def h_width(self) -> int:
        """Real width of the first state (h), the part the sensitivity measures."""
        return self.widths[0]

    def pushforward(self, s: Tensor, x_t: Tensor) -> Callable[[Tensor], Tensor]:
        """v (n, B, D) -> J_t v (n, B, D): n directions per sequence, by ``torch.func.jvp``.

        Up to ``FOLD_FROM`` directions the jvp is vmapped over them; more are folded into the
        batch instead (the primal repeated n times: the sequences of a batch never interact, as
        in-cell batch norm is refused, so each (direction, sequence) pair is its own system).
        Measured at H = 128, B = 16 (LSTM, one thread): n = 8, vmap 1.1-1.3 s against fold
        1.9 s over 500 steps; n = 256, fold 0.05 s against vmap 0.11 s per step (1.2 s when v
        is an expanded, non-contiguous tensor: hence the ``contiguous``)."""
        def one(v: Tensor) -> Tensor:
            return torch.func.jvp(lambda u: self.step(u, x_t)[0], (s,), (v,))[1]

        def apply(v: Tensor) -> Tensor:
            n, B, D = v.shape
            if n <= FOLD_FROM:
                return torch.func.vmap(one)(v.contiguous())
            sr, xr = s.repeat(n, 1), x_t.repeat(n, 1)
            out = torch.func.jvp(lambda u: self.step(u, xr)[0], (sr,),
                                 (v.reshape(n * B, D),))[1]
            return out.view(n, B, D)

        return apply


def layer_maps(rnn: HandRNN, batch: int, like: Tensor) -> list[LayerMap]:
    """One LayerMap per layer of ``rnn`` (parameters detached), initial states zeros."""
    forward_ad_ready()
    maps = []
    for layer, cell in enumerate(rnn.cells):
        params = {k: v.detach() for k, v in rnn.layer_params(layer).items()}
        state = cell.initial_state(batch, like)
        widths = tuple(2 * s.shape[-1] if s.is_complex() else s.shape[-1] for s in state)
        m = LayerMap(layer, cell, params, widths, tuple(s.is_complex() for s in state),
                     init=torch.zeros(0))
        m.init = m.flatten(state).to(like.dtype)
        maps.append(m)
    return maps


def run_layer(m: LayerMap, x: Tensor) -> tuple[Tensor, Tensor]:
    """The layer over the whole sequence by its step: (states (S, B, D), outputs (S, B, H))."""
    s, states, outs = m.init, [], []
    with torch.no_grad():
        for x_t in x.unbind(0):
            s, y = m.step(s, x_t)
            states.append(s)
            outs.append(y)
    return torch.stack(states), torch.stack(outs)


def next_input(rnn: HandRNN, layer: int, x: Tensor, outputs: Tensor) -> Tensor:
    """What layer ``layer`` + 1 reads: the outputs, plus the layer's input with residual
    connections (layers above the first, as HandRNN.forward)."""
    return outputs + x if rnn.residual and layer > 0 else outputs


def check_width(name: str, k: int, dim: int) -> int:
    """``k`` clipped to the state width (a request above it asks for every direction)."""
    if k < 1:
        raise ConfigError(f"{name} must be at least 1, got {k}")
    return min(int(k), dim)
