"""What the cell and task registries share: names given as ``package.module:ClassName``, entries
from an installed package's entry points, and importing a plugin with one-line errors.

Torch-free; seqbench.cells.registry and seqbench.tasks.registry build on it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from seqbench.errors import ConfigError


def is_class_path(name: str) -> bool:
    """Whether ``name`` names a class as ``package.module:ClassName``."""
    module, _, attr = name.partition(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".")) \
        and attr.isidentifier()


def installed(group: str) -> list[tuple[str, str, str]]:
    """(name, "module:Class", summary) of every entry point in ``group``, sorted by name."""
    found = []
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        dist = ep.dist.name if ep.dist is not None else "an installed package"
        found.append((ep.name, ep.value, f"plugin from {dist} ({ep.value})"))
    return found


def import_target(kind: str, name: str, target: str):
    """The object ``target`` ("module:attr") names; ConfigError "<kind> '<name>': ..." in one line
    if the module cannot be imported (a plugin's import may fail in any way) or lacks it."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(f"{kind} {name!r}: cannot import {module_name}: "
                          f"{type(exc).__name__}: {exc}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"{kind} {name!r}: module {module_name} has no {attr!r}")
    return obj
