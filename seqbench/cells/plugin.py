"""Bring your own cell: any module shaped like torch.nn.RNNCell (or nn.LSTMCell) as a seqbench cell.

The plain convention, PyTorch's own: the class is constructed as ``Cls(input_size, hidden_size)``
and called as ``cell(x_t, h) -> h`` with x_t (B, I) and h (B, H), or with a tuple state like
nn.LSTMCell, ``cell(x_t, (h, c)) -> (h, c)``; the first state is the output. Such a class is wrapped
in a ``ModuleCell``: the stack runs it step by step, its parameters are the module's own (drawn by
its constructor), and the gradient probe records ||dL/dh_t|| through autograd hooks on the states
it returns. A class may instead subclass ``seqbench.cells.base.Cell`` for the richer interface
(named states, a fast whole-sequence path, gate slices the remedies write to).
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.cells.base import Cell
from seqbench.errors import ConfigError

#: what a plugin is told when its class does not fit
INTERFACE = ("a torch.nn.Module constructed as Cls(input_size, hidden_size) and called as "
             "cell(x_t, h) -> h (or with a tuple state like nn.LSTMCell), or a "
             "seqbench.cells.base.Cell subclass")


def as_cell(obj, name: str) -> type[Cell]:
    """``obj`` as a Cell class: itself if it is one, a ModuleCell wrapper if it is a module class."""
    if isinstance(obj, type) and issubclass(obj, Cell):
        if not obj.states:
            raise ConfigError(f"cell {name!r}: {obj.__name__}.states names no state")
        return obj
    if isinstance(obj, type) and issubclass(obj, nn.Module):
        return type(f"ModuleCell[{obj.__name__}]", (ModuleCell,),
                    {"name": name, "module_class": obj, "__doc__": obj.__doc__})
    raise ConfigError(f"cell {name!r}: {obj!r} is not a cell; expected {INTERFACE}")


class ModuleCell(Cell):
    """A module shaped like torch.nn.RNNCell, run step by step (see the module docstring)."""

    module_class: type[nn.Module]

    def __init__(self, input_size, hidden_size, nonlinearity=None, max_steps=1):
        super().__init__(input_size, hidden_size, nonlinearity, max_steps)
        cls = self.module_class
        try:
            self.module = cls(input_size, hidden_size)
        except Exception as exc:
            raise ConfigError(f"cell {self.name!r}: {cls.__name__}({input_size}, {hidden_size}) "
                              f"failed: {type(exc).__name__}: {exc}") from None
        self.n_states = self._count_states()

    def _count_states(self) -> int:
        """Call the module once on zeros (batch 2, no grad, RNG untouched) to learn whether it
        takes a single state or a tuple, and check the shapes it returns."""
        H = self.hidden_size
        x = torch.zeros(2, self.input_size)
        errors = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for n in (1, 2, 3):
                state = torch.zeros(2, H) if n == 1 else tuple(torch.zeros(2, H) for _ in range(n))
                try:
                    out = self.module(x, state)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                outs = out if isinstance(out, tuple) else (out,)
                if len(outs) != n or any(not isinstance(o, torch.Tensor) or o.shape != (2, H)
                                         for o in outs):
                    got = [tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__
                           for o in outs]
                    raise ConfigError(f"cell {self.name!r}: called with {n} state(s) of shape "
                                      f"(2, {H}) it returned {got}; expected the same")
                return n
        raise ConfigError(f"cell {self.name!r}: calling it as cell(x_t, h) failed "
                          f"({errors[0]}); expected {INTERFACE}")

    @property
    def states(self) -> tuple[str, ...]:
        return ("h", "c", "s2")[: self.n_states]

    def parameter_shapes(self):
        return {}  # the module holds its own parameters

    def reset_parameters(self, params) -> None:
        pass  # the module's constructor drew them

    def step(self, params, x_t, state):
        out = self.module(x_t, state[0] if self.n_states == 1 else state)
        state = out if isinstance(out, tuple) else (out,)
        return state[0], state
