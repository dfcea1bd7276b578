"""``CellConfig``: which recurrent stack to build, and the remedies that act on its cells.

Importable without torch (leaderboards and specs read its fields); ``validate`` asks the cell's
class what it accepts (seqbench.cells.base.Cell), which imports it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from seqbench.choices import IMPLS, INITS, NORMS
from seqbench.errors import ConfigError

#: nonlinearities torch.nn.RNN can express
BUILTIN_NONLINEARITIES = ("tanh", "relu")


@dataclass(frozen=True)
class CellConfig:
    """What recurrent stack to build: cell type, implementation, sizes and the remedies for
    vanishing gradients that act on the cell (seqbench.init, seqbench.normcells)."""

    cell: str = "lstm"  # a registered cell (seqbench cells --help) or package.module:ClassName
    impl: str = "builtin"  # builtin (torch.nn, where the cell has one) | hand (seqbench's own code)
    hidden: int = 128  # hidden units per layer
    layers: int = 1  # stacked recurrent layers
    nonlinearity: str | None = None  # None: the cell's own; rnn: tanh | relu | leaky_relu | elu | linear
    init: str = "default"  # default | xavier | he | orthogonal | identity | irnn (rnn + relu)
    init_gain: float = 1.0  # multiplies the recurrent weights after the init scheme
    forget_bias: float | None = None  # lstm: forget-gate bias; None = PyTorch's default init
    chrono: bool = False  # lstm, gru: chrono init of gate biases from the sequence length
    norm: str = "none"  # none | layer | layer_split (rnn) | batch | batch_recurrent (hand only)
    residual: bool = False  # layers >= 2: each layer above the first adds its input to its output

    def validate(self) -> CellConfig:
        """Check every field against what the cell accepts; return the config resolved: the
        cell's own nonlinearity when none is given, and ``impl = "hand"`` for a cell that has no
        torch.nn twin (its own code is its only implementation)."""
        from seqbench.cells.registry import cell_class, check_cell_name

        cls = cell_class(self.cell)
        if self.impl not in IMPLS:
            raise ConfigError(f"unknown impl {self.impl!r}; allowed: {', '.join(IMPLS)}")
        if self.hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {self.hidden}")
        if self.layers < 1:
            raise ConfigError(f"layers must be >= 1, got {self.layers}")
        resolved = replace(self, cell=check_cell_name(self.cell),  # LSTM is lstm: one config id
                           nonlinearity=self.nonlinearity or cls.nonlinearities[0],
                           impl=self.impl if cls.builtin is not None else "hand")
        resolved._check_remedies(cls)
        return resolved

    def _check_remedies(self, cls) -> None:
        def cells_with(has) -> str:
            """seqbench's cells that have ``has`` (a cell that fails to import is left out, so
            that it cannot replace this message with its own)."""
            from seqbench.cells.registry import BUILTIN_CELLS, cell_class

            names = []
            for e in BUILTIN_CELLS:
                try:
                    if has(cell_class(e.name)):
                        names.append(e.name)
                except ConfigError:
                    continue
            return ", ".join(names)

        if self.nonlinearity not in cls.nonlinearities:
            if len(cls.nonlinearities) == 1:
                raise ConfigError(
                    f"cell {self.cell!r} uses {cls.nonlinearities[0]} only; a choice of "
                    f"nonlinearity exists for: {cells_with(lambda c: len(c.nonlinearities) > 1)}")
            raise ConfigError(f"unknown nonlinearity {self.nonlinearity!r} for cell "
                              f"{self.cell!r}; allowed: {', '.join(cls.nonlinearities)}")
        if (self.impl == "builtin" and len(cls.nonlinearities) > 1
                and self.nonlinearity not in BUILTIN_NONLINEARITIES):
            raise ConfigError(
                f"nonlinearity {self.nonlinearity!r} exists for --impl hand only; "
                f"builtin allows: {', '.join(BUILTIN_NONLINEARITIES)}")
        if self.init not in INITS:
            raise ConfigError(f"unknown init {self.init!r}; allowed: {', '.join(INITS)}")
        if (self.init != "default" or self.init_gain != 1.0) and not cls.recurrent_blocks:
            raise ConfigError(
                f"init and init_gain act on a free recurrent weight matrix (stacked H x H "
                f"blocks), which cell {self.cell!r} does not have; cells with one: "
                f"{cells_with(lambda c: c.recurrent_blocks)}")
        if self.init == "irnn" and (cls.recurrent_blocks, self.nonlinearity) != (1, "relu"):
            raise ConfigError(
                "init 'irnn' (Le et al. 2015) applies to cell 'rnn' with nonlinearity 'relu' only; "
                "identity recurrent weights for other cells: init 'identity'")
        if not self.init_gain > 0:
            raise ConfigError(f"init_gain must be > 0, got {self.init_gain}")
        if not math.isfinite(self.init_gain):
            raise ConfigError(f"init_gain must be a finite number, got {self.init_gain}")
        if self.forget_bias is not None and not math.isfinite(self.forget_bias):
            raise ConfigError(f"forget_bias must be a finite number, got {self.forget_bias}")
        if self.forget_bias is not None and "forget" not in cls.gate_bias:
            raise ConfigError(f"forget_bias applies to cells with a forget gate "
                              f"({cells_with(lambda c: 'forget' in c.gate_bias)}), "
                              f"not {self.cell!r}")
        if self.chrono and not {"forget", "update"} & set(cls.gate_bias):
            raise ConfigError(f"chrono initialization applies to cells "
                              f"{cells_with(lambda c: {'forget', 'update'} & set(c.gate_bias))} "
                              f"only, not {self.cell!r}")
        if self.chrono and self.forget_bias is not None:
            raise ConfigError("chrono and forget_bias both set the forget-gate bias; choose one")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; allowed: {', '.join(NORMS)}")
        if self.norm != "none" and self.impl == "builtin":
            raise ConfigError(
                f"norm {self.norm!r} (normalization inside the cell) exists for --impl hand only")
        if self.norm != "none" and self.norm not in cls.norms:
            raise ConfigError(
                f"norm {self.norm!r} does not apply to cell {self.cell!r}; "
                + (f"it allows: {', '.join(cls.norms)}" if cls.norms else
                   f"cells with in-cell normalization: {cells_with(lambda c: c.norms)}"))
        if self.residual and self.layers < 2:
            raise ConfigError(f"residual needs layers >= 2, got layers={self.layers}")

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
    floss = cell.get("floss")  # a results row's gradient flossing (RunConfig.floss)
    if not missing(floss) and float(floss) > 0:
        extra = [f"weight {float(cell['floss_weight']):g}"
                 if not missing(cell.get("floss_weight")) else "",
                 f"{int(float(cell['floss_steps']))} steps"
                 if not missing(cell.get("floss_steps")) else ""]
        extra = [e for e in extra if e]
        parts.append(f"flossing {int(float(floss))}" + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts)
