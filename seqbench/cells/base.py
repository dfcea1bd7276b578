"""The Cell interface: one recurrent layer's equations, written over named parameters.

A cell is a class. ``seqbench.cells.stack.HandRNN`` makes one instance per layer, registers the
parameters each instance asks for (``parameter_shapes``) on the stack as ``<name>_l<layer>`` (the
names of torch.nn.LSTM for the cells that have a built-in twin, so a state_dict loads into either),
and calls ``layer`` (or the faster ``fast_layer``) with those parameters. Everything else seqbench
does with a cell asks the class rather than branching on its name:

- ``states``: names of the recurrent state tensors, the first being the one the gradient probe
  measures as h (``("h",)``; the LSTM's ``("h", "c")``);
- ``nonlinearities``: the activations it accepts, its default first;
- ``recurrent_blocks``: how many square H x H blocks its ``weight_hh`` stacks (the init schemes
  act on each; 0: the cell has no such matrix, so those schemes do not apply);
- ``gate_bias``: named gate blocks of ``bias_ih`` / ``bias_hh`` where remedies write (forget bias
  into "forget"; chrono into "forget" or "update", and minus the same into "input");
- ``norms``: the in-cell normalizations seqbench.normcells implements for it;
- ``builtin``: the torch.nn twin's class name, or None;
- ``kernel(device)`` (a class method): the label of what runs it, recorded in every row;
- ``parametrize(module, layer)``: optional torch parametrizations of its registered parameters
  (an orthogonal W_hh), applied after initialization;
- ``fast_layer`` (optional) and ``fast_layer_norms``: a faster whole-sequence path, and whether it
  can record the per-step gradient norms the probe asks for (a parallel scan cannot: the stack
  then runs ``layer`` for the probe, the same function step by step).

A plugin (seqbench.cells.registry) may subclass Cell to get all of this; a plain module shaped
like torch.nn.RNNCell is wrapped by seqbench.cells.plugin.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

State = tuple[Tensor, ...]

ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01 (Maas et al. 2013)
    "elu": F.elu,  # alpha 1 (Clevert et al. 2015)
    "linear": lambda x: x,  # identity: the linear RNN of the gradient theory checks
}


def record_grad_norm(state: Tensor, norms: Tensor | None, t: int) -> None:
    """Have the backward pass write the per-sequence norm of dL/d``state`` (the total gradient
    arriving at it, from every use) into ``norms[t]``; nothing if ``norms`` is None. A complex
    state's norm is that of its real and imaginary parts together."""
    if norms is None or not state.requires_grad:
        return
    row = norms[t]

    def hook(grad: Tensor) -> None:
        if grad.is_complex():
            grad = torch.view_as_real(grad).flatten(-2)
        torch.linalg.vector_norm(grad, dim=-1, dtype=row.dtype, out=row)

    state.register_hook(hook)


def project_inputs(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> Tensor:
    """x W_ih^T (+ bias) for all steps in one product: (T, B, G)."""
    T, B, n_in = x.shape
    flat = x.reshape(T * B, n_in)
    xp = torch.addmm(bias, flat, w_ih.t()) if bias is not None else flat @ w_ih.t()
    return xp.view(T, B, -1)


def input_projection(x: Tensor, w_ih: Tensor, bias: Tensor | None) -> list[Tensor]:
    """``project_inputs`` as per-step views (indexing a stacked tensor per step instead would make
    the backward pass O(T^2))."""
    return list(project_inputs(x, w_ih, bias).unbind(0))


class Cell:
    """One layer of a recurrent cell: its parameters, initialization and equations."""

    name: ClassVar[str] = ""
    states: ClassVar[tuple[str, ...]] = ("h",)
    nonlinearities: ClassVar[tuple[str, ...]] = ("tanh",)
    recurrent_blocks: ClassVar[int] = 0
    gate_bias: ClassVar[dict[str, int]] = {}
    norms: ClassVar[tuple[str, ...]] = ()
    builtin: ClassVar[str | None] = None
    #: a module holding the layer's own parameters (plugins); None: the stack holds them
    module: nn.Module | None = None
    #: whether this layer is the top one, which the readout reads (the stack sets it before
    #: initialization; IndRNN initializes its top layer for long memories only)
    top_layer: bool = True

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str | None = None,
                 max_steps: int = 1):
        """``max_steps``: the longest sequence the layer is built for (cells whose
        initialization depends on it, such as IndRNN's bound on its recurrent weights)."""
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.nonlinearity = nonlinearity or self.nonlinearities[0]
        self.max_steps = max(int(max_steps), 1)

    # -- parameters ------------------------------------------------------------------------------
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every parameter of one layer, in the order they are drawn."""
        raise NotImplementedError

    def parametrize(self, module: nn.Module, layer: int) -> None:
        """Register torch parametrizations on ``module``'s parameters ``<name>_l<layer>`` after
        they are initialized (torch.nn.utils.parametrize); nothing by default."""

    @torch.no_grad()
    def reset_parameters(self, params: dict[str, Tensor]) -> None:
        """PyTorch's default for its recurrent modules: every parameter uniform in
        [-1/sqrt(H), 1/sqrt(H)], drawn in ``parameter_shapes`` order."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for p in params.values():
            nn.init.uniform_(p, -stdv, stdv)

    # -- equations -------------------------------------------------------------------------------
    def initial_state(self, batch: int, like: Tensor) -> State:
        """The state before the first step: zeros, one (B, H) tensor per name in ``states``."""
        return tuple(like.new_zeros(batch, self.hidden_size) for _ in self.states)

    def step(self, params: dict[str, Tensor], x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: x_t (B, I) and the state -> (output y_t (B, H), new state)."""
        raise NotImplementedError

    def layer(self, params: dict[str, Tensor], x: Tensor, state: State,
              norms: dict[str, Tensor] | None = None) -> tuple[Tensor, State]:
        """The whole sequence x (T, B, I) by ``step``: (outputs (T, B, H), final state).

        ``norms``: optional (T, B) tensors keyed by state name, into which the backward pass
        writes the per-sequence norm of dL/d(state_t) for every t (seqbench.probe)."""
        norms = norms or {}
        outputs = []
        for t, x_t in enumerate(x.unbind(0)):
            y, state = self.step(params, x_t, state)
            for name, s in zip(self.states, state):
                record_grad_norm(s, norms.get(name), t)
            outputs.append(y)
        return torch.stack(outputs), state

    #: optional: a faster ``layer`` computing the same function (same signature), or None
    fast_layer = None
    #: whether ``fast_layer`` fills ``norms``; if not, the stack runs ``layer`` when they are asked
    fast_layer_norms: ClassVar[bool] = True

    @classmethod
    def kernel(cls, device: torch.device) -> str:
        """What runs the recurrence, for the row's ``kernel`` column (a class method: asking needs
        no instance, whose construction may cost, as a plugin module's does)."""
        return "hand (fused)" if cls.fast_layer is not None else "hand (autograd)"

    def extra_repr(self) -> str:
        """Options shown in the stack's repr beyond the sizes."""
        return f"nonlinearity={self.nonlinearity}" if len(self.nonlinearities) > 1 else ""
