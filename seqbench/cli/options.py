"""Option groups shared by several commands (task, cell and its remedies, device); the task and
cell names, help lines and variants come from their registries."""

from __future__ import annotations

import click

from seqbench import memory as M
from seqbench.cells.registry import BUILTIN_CELLS, check_cell_name, registry
from seqbench.choices import DEVICES, IMPLS, INITS, NONLINEARITIES, NORMS
from seqbench.errors import ConfigError
from seqbench.tasks.registry import check_task_name
from seqbench.tasks.registry import registry as task_registry


class Choice(click.Choice):
    """click.Choice that ignores case (``--impl HAND`` is hand) and, for a value that is none of
    the choices, suggests the closest one: ``'handd' is not one of 'builtin', 'hand'; did you
    mean 'hand'?``."""

    def __init__(self, choices, case_sensitive: bool = False):
        super().__init__(choices, case_sensitive=case_sensitive)

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            import difflib

            names = [str(c) for c in self.choices]
            close = difflib.get_close_matches(str(value).casefold(),
                                              [n.casefold() for n in names], n=1)
            if not close:
                raise
            suggestion = next(n for n in names if n.casefold() == close[0])
            self.fail(f"{exc.message.rstrip('.')}; did you mean {suggestion!r}?", param, ctx)


class CellName(click.ParamType):
    """A registered cell (seqbench's or an installed plugin's) or package.module:ClassName."""

    name = "cell"

    def convert(self, value, param, ctx):
        try:
            return check_cell_name(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param, ctx=None):
        return cell_metavar()


CELL = CellName()


class CellOption(click.Option):
    """``--cell``, whose help lists the registry when the help is shown (not when seqbench.cli
    is imported), so that cells registered since then are listed too."""

    def __init__(self, *args, help_suffix: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.help_suffix = help_suffix

    def get_help_record(self, ctx):
        self.help = f"{cell_help()}{self.help_suffix}."
        return super().get_help_record(ctx)


def cell_help() -> str:
    """The --cell help: every registered cell with its line, from the registry."""
    lines = [f"{e.name}: {e.summary}" for e in registry().values()]
    return "; ".join(lines) + "; or a class as package.module:ClassName"


def cell_metavar() -> str:
    return "[" + "|".join(registry()) + "|MODULE:CLASS]"


class TaskName(click.ParamType):
    """A registered task (seqbench's or an installed plugin's) or package.module:ClassName."""

    name = "task"

    def convert(self, value, param, ctx):
        try:
            return check_task_name(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)

    def get_metavar(self, param, ctx=None):
        return task_metavar()


TASK = TaskName()


class RegistryHelpOption(click.Option):
    """An option whose help is built from a registry when the help is shown (not when seqbench.cli
    is imported), so that tasks registered since then are listed too: ``help_from`` gives it."""

    def __init__(self, *args, help_from, **kwargs):
        super().__init__(*args, **kwargs)
        self.help_from = help_from

    def get_help_record(self, ctx):
        self.help = self.help_from()
        return super().get_help_record(ctx)


def _variants(entry) -> str:
    if not entry.variants:
        return "its class's variants"
    first, *rest = entry.variants
    return ", ".join([f"{first} (default)", *rest])


def task_help() -> str:
    """The --task help: every registered task with its line and variants, from the registry."""
    lines = [f"{e.name}: {e.summary} [{_variants(e)}]" for e in task_registry().values()]
    return "Which task. " + "; ".join(lines) + "; or a Task subclass as package.module:ClassName."


def variant_help() -> str:
    """The --variant help: each registered task's variants, the default first."""
    lines = [f"{e.name}: {_variants(e)}" for e in task_registry().values()]
    return "Task variant [default: the task's first]. " + "; ".join(lines) + "."


def task_metavar() -> str:
    return "[" + "|".join(task_registry()) + "|MODULE:CLASS]"


def _stack(decorators):
    def apply(fn):
        for decorator in reversed(decorators):
            fn = decorator(fn)
        return fn

    return apply


def task_options(fn):
    return _stack([
        click.option("--task", cls=RegistryHelpOption, type=TASK, default="adding",
                     show_default=True, help_from=task_help),
        click.option("--variant", cls=RegistryHelpOption, default=None, help_from=variant_help),
        click.option("--seq-len", "-T", type=click.IntRange(1, M.MAX_SEQ_LEN), default=100, show_default=True,
                     help="The lag T the task is named by (total sequence steps are recorded too)."),
    ])(fn)


def cell_options(multiple: bool):
    """Cell options; with ``multiple``, the choice options may repeat (a grid is measured)."""
    many = " (repeatable)" if multiple else ""

    def opt(*names, default, **kw):
        if multiple:
            default = (default,) if default is not None else ()
        return click.option(*names, multiple=multiple, default=default, **kw)

    return _stack([
        opt("--cell", cls=CellOption, type=CELL, default="lstm", show_default=True,
            help_suffix=many),
        opt("--impl", type=Choice(IMPLS), default="hand" if multiple else "builtin",
            show_default=True,
            help="builtin: torch.nn module (cuDNN / oneDNN), for "
                 f"{', '.join(e.name for e in BUILTIN_CELLS if e.name in ('rnn', 'lstm', 'gru'))}; "
                 f"hand: seqbench's own code (the only one of the other cells){many}."),
        click.option("--hidden", type=click.IntRange(1, M.MAX_HIDDEN), default=128, show_default=True,
                     help="Hidden units per layer."),
        click.option("--layers", type=click.IntRange(1, M.MAX_LAYERS), default=1, show_default=True),
        opt("--nonlinearity", type=Choice(NONLINEARITIES), default=None,
            help="Activation of the rnn cell [default: the cell's own, tanh for rnn]; builtin "
                 "allows tanh and relu" + many + "."),
        opt("--init", type=Choice(INITS), default="default", show_default=True,
            help="Recurrent-weight initialization (identity also zeroes the biases; irnn: "
                 "Le 2015's ReLU RNN, identity W_hh, zero biases, input weights N(0, 0.001^2))"
                 f"{many}."),
        opt("--init-gain", type=click.FloatRange(min=0, min_open=True), default=1.0,
            show_default=True, help=f"Multiplies the recurrent weights after --init{many}."),
        opt("--forget-bias", type=float, default=None,
            help=f"LSTM forget-gate bias [default: PyTorch's init]{many}."),
        click.option("--chrono", is_flag=True,
                     help="Chrono initialization of LSTM/GRU gate biases, T_max = sequence steps."),
        opt("--norm", type=Choice(NORMS), default="none", show_default=True,
            help="Normalization inside the cell (hand only): layer (Ba 2016), layer_split (rnn; "
                 "each projection apart, not the paper's), batch (Cooijmans 2017), "
                 f"batch_recurrent (recurrent term only){many}."),
        click.option("--residual", is_flag=True,
                     help="Residual connections between stacked layers (needs --layers >= 2)."),
    ])


def device_options(fn):
    return _stack([
        click.option("--device", type=Choice(DEVICES), default="auto", show_default=True,
                     help="auto picks CUDA when present."),
        click.option("--threads", type=click.IntRange(1, M.MAX_THREADS), default=None,
                     help="Torch CPU threads [default: torch's choice, one per core; a training "
                          "run next to other seqbench runs takes its share of the cores]. A number "
                          "given here is never changed."),
    ])(fn)
