"""Synthetic long-dependency tasks, each a unit: a registry of tasks and one module per task.

- ``seqbench.tasks.registry``: which tasks exist (seqbench's, installed plugins under the
  entry-point group ``seqbench.tasks``, any ``package.module:ClassName``), with names, help and
  variants, without importing torch; ``make_task`` builds one;
- ``seqbench.tasks.base``: the ``Task`` interface and ``Batch``;
- ``seqbench.tasks.adding``, ``copy``, ``delayed_recall``, ``temporal_order``, ``selective_copy``,
  ``variable_copy``, ``mqar``:
  seqbench's tasks, each docstring drawing its sequence layout.

Importing this package does not import torch: ``Task``, ``Batch`` and the task classes are loaded
on first use (``from seqbench.tasks import Task``), so that help texts and leaderboards stay light.
"""

from __future__ import annotations

import importlib

from seqbench.tasks.registry import (
    ENTRY_POINT_GROUP,
    TaskEntry,
    check_task_name,
    make_task,
    registry,
    task_class,
    task_names,
)

#: attribute -> the module that defines it, imported (with torch) when first asked for
_LAZY = {
    "Task": "seqbench.tasks.base",
    "Batch": "seqbench.tasks.base",
    "AddingTask": "seqbench.tasks.adding",
    "CopyTask": "seqbench.tasks.copy",
    "DelayedRecallTask": "seqbench.tasks.delayed_recall",
    "TemporalOrderTask": "seqbench.tasks.temporal_order",
    "SelectiveCopyTask": "seqbench.tasks.selective_copy",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ENTRY_POINT_GROUP", "AddingTask", "Batch", "CopyTask", "DelayedRecallTask",
           "SelectiveCopyTask", "Task", "TaskEntry", "TemporalOrderTask", "check_task_name",
           "make_task", "registry", "task_class", "task_names"]
