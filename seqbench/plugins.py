"""What the cell and task registries share: names given as ``package.module:ClassName``, entries
from an installed package's entry points, and importing a plugin with one-line errors.

Torch-free; seqbench.cells.registry and seqbench.tasks.registry build on it.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points

from seqbench.errors import ConfigError


def is_class_path(name: str) -> bool:
    """Whether ``name`` names a class as ``package.module:ClassName``."""
    module, _, attr = name.partition(":")
    return bool(module) and bool(attr) and all(p.isidentifier() for p in module.split(".")) \
        and attr.isidentifier()


def match_name(name: str, names: Iterable[str]) -> str | None:
    """The registered name ``name`` stands for: itself, or the one it equals ignoring case
    (``LSTM`` -> ``lstm``); None if neither."""
    names = list(names)
    if name in names:
        return name
    folded = [n for n in names if n.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def unknown_name(kind: str, name: str, names: Iterable[str], also: str = "", of: str = "") -> str:
    """``unknown <kind> 'x'<of>; did you mean 'y'? (allowed: a, b<also>)`` when a name is close
    (difflib), else ``unknown <kind> 'x'<of>; allowed: a, b<also>``: one line for a
    ConfigError."""
    names = list(names)
    allowed = ", ".join(names) + also
    close = difflib.get_close_matches(name.casefold(), [n.casefold() for n in names], n=1)
    if close:
        suggestion = next(n for n in names if n.casefold() == close[0])
        return f"unknown {kind} {name!r}{of}; did you mean {suggestion!r}? (allowed: {allowed})"
    return f"unknown {kind} {name!r}{of}; allowed: {allowed}"


def check_name(kind: str, name: str, names: Iterable[str]) -> str:
    """The registered ``kind`` (cell, task) ``name`` stands for, ignoring case, or ``name`` as a
    ``package.module:ClassName`` (kept as given: Python's names are case-sensitive); else a
    ConfigError that suggests the closest name and lists the allowed ones."""
    names = list(names)
    registered = match_name(name, names)
    if registered is not None:
        return registered
    if is_class_path(name):
        return name
    raise ConfigError(unknown_name(kind, name, names, ", or a class as package.module:ClassName"))


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
