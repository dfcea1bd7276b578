"""Which tasks exist: seqbench's own, installed plugins (entry-point group ``seqbench.tasks``) and
any importable Task subclass named as ``package.module:ClassName``.

Kept free of torch: the command line's help, specs and leaderboards read names, summaries and
variants from here; a task's code is imported only when a run needs it (``task_class``,
``make_task``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from seqbench.errors import ConfigError
from seqbench.plugins import check_name, import_target, installed, match_name, unknown_name

#: the entry-point group an installed package lists its tasks under
ENTRY_POINT_GROUP = "seqbench.tasks"


@dataclass(frozen=True)
class TaskEntry:
    """A registered task: its name, where its class lives, one line of help and its variants
    (the default first; empty when only the class knows them, as for a plugin)."""

    name: str
    target: str  # "package.module:ClassName"
    summary: str
    variants: tuple[str, ...] = ()


#: seqbench's own tasks, in the order tables and figures list them. A new task: one line here.
#: The variants repeat the class's own (tests/test_task_registry.py holds them equal) so that help
#: texts can list them without importing torch.
BUILTIN_TASKS = (
    TaskEntry("adding", "seqbench.tasks.adding:AddingTask",
              "sum of the two marked values, read at the last step (Hochreiter 1997; Le 2015)",
              ("halves", "anywhere")),
    TaskEntry("copy", "seqbench.tasks.copy:CopyTask",
              "reproduce 10 symbols after T blanks and a delimiter (Arjovsky 2016)",
              ("arjovsky", "tcn")),
    TaskEntry("delayed_recall", "seqbench.tasks.delayed_recall:DelayedRecallTask",
              "report the step-0 symbol when cued at step T (ours)", ("noisy", "blank")),
    TaskEntry("temporal_order", "seqbench.tasks.temporal_order:TemporalOrderTask",
              "classify the order of 2 (6a) or 3 (6b) marked X/Y symbols (Hochreiter 1997 exp. 6)",
              ("6a", "6b")),
    TaskEntry("selective_copy", "seqbench.tasks.selective_copy:SelectiveCopyTask",
              "reproduce K data tokens scattered among T noise tokens (Gu & Dao 2023)",
              ("mamba", "arjovsky")),
    TaskEntry("variable_copy", "seqbench.tasks.variable_copy:VariableCopyTask",
              "copy 10 symbols after a delay drawn per sequence in 1..T (Henaff 2016; Tallec 2018)",
              ("end_aligned", "start_aligned")),
    TaskEntry("mqar", "seqbench.tasks.mqar:MQARTask",
              "recall the values of N keys queried after T steps (Arora 2023, Zoology)",
              ("block", "block16", "zoology")),
    TaskEntry("mnist", "seqbench.tasks.mnist:PixelMNISTTask",
              "classify MNIST digits read one pixel per step, T = 784 (Le 2015; needs the data)",
              ("sequential", "permuted")),
)


@functools.cache
def registry() -> dict[str, TaskEntry]:
    """Name -> entry: seqbench's tasks, then installed plugins (a plugin cannot shadow one)."""
    tasks = {e.name: e for e in BUILTIN_TASKS}
    for name, target, summary in installed(ENTRY_POINT_GROUP):
        tasks.setdefault(name, TaskEntry(name, target, summary))
    return tasks


def task_names() -> tuple[str, ...]:
    """Every registered task name, seqbench's first."""
    return tuple(registry())


def check_task_name(name: str) -> str:
    """The registered task ``name`` stands for (ignoring case: Adding is adding) or ``name`` as a
    ``package.module:ClassName``; else a ConfigError with the closest name (plugins.check_name)."""
    return check_name("task", name, task_names())


def check_variant(name: str, cls: type, variant: str | None) -> str | None:
    """The variant of task ``name`` (class ``cls``) that ``variant`` stands for, ignoring case;
    None stays None (the default); else a ConfigError that suggests the closest one."""
    if variant is None or not variant:
        return variant
    variants = getattr(cls, "variants", ())
    registered = match_name(variant, variants)
    if registered is None:
        raise ConfigError(unknown_name("variant", variant, variants, of=f" for task {name}"))
    return registered


@functools.cache
def task_class(name: str) -> type:
    """The Task subclass of task ``name``. Imports torch. Anything wrong with a plugin is a
    one-line ConfigError."""
    name = check_task_name(name)
    target = registry()[name].target if name in registry() else name
    cls = import_target("task", name, target)
    from seqbench.tasks.base import Task

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError(f"task {name!r}: {target} is not a subclass of seqbench.tasks.Task")
    variants = getattr(cls, "variants", ())
    if not (isinstance(variants, tuple) and variants and all(isinstance(v, str) for v in variants)):
        # Task() takes the first variant as the default, so there must be one
        raise ConfigError(f"task {name!r}: {target}.variants must be a non-empty tuple of names")
    return cls


def make_task(name: str, variant: str | None = None):
    """Build task ``name`` (registered, or ``package.module:ClassName``) in ``variant`` (None: its
    default); an unknown name or variant is a ConfigError listing the valid ones."""
    name = check_task_name(name)
    cls = task_class(name)
    variant = check_variant(name, cls, variant)
    try:
        task = cls(variant)
    except ConfigError:
        raise
    except Exception as exc:  # a plugin's constructor may fail in any way; the user gets one line
        raise ConfigError(f"task {name!r}: {cls.__name__}({variant!r}) failed: "
                          f"{type(exc).__name__}: {exc}") from None
    # rows and probes record task.name, and models are rebuilt from it (seqbench.model): it must
    # be the name the task was made by, also for a class path whose class names itself otherwise
    task.name = name
    return task
