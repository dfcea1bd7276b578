"""Benchmark specs: a TOML file that names a grid of runs, its settings and its named profiles.

A spec (``tasks/adding.toml``, ...) looks like this::

    description = "adding problem: tanh RNN vs LSTM vs GRU against the lag T"
    default_profile = "quick"          # used when no --profile is given (optional)

    [settings]                         # one value each, shared by every run
    task = "adding"
    impl = "builtin"
    lr = 1e-3

    [grid]                             # lists, crossed with each other (outermost key first)
    seq_len = [10, 25, 50, 100]
    cell = ["rnn", "lstm", "gru"]
    seed = [0, 1, 2]

    [[arms]]                           # optional: named partial configs, crossed with the grid
    name = "lstm_fb1"                  # recorded as the run's ``label``
    cell = "lstm"
    forget_bias = 1.0

    [profiles.quick]                   # a profile overrides settings, grid keys and/or arms
    settings = { hidden = 64, steps = 3000 }
    grid = { seed = [0, 1, 2] }

    select = ["lr"]                    # optional: grid keys the leaderboard tunes per arm on the
                                       # validation set (``seqbench leaderboard --select lr``)

Keys are the fields of ``RunConfig`` and ``CellConfig`` in one flat namespace (``steps``, ``lr``,
``cell``, ``hidden``, ...; ``label`` comes from the arms' names), derived from the dataclasses, so a
field added there is a valid spec key at once. A key given in a profile's ``settings`` replaces the
base grid's list for that key and vice versa. Arms (comparisons that are not a full cross product,
such as "tanh RNN vs each single fix") override the grid keys they set: every arm is crossed with the
remaining grid keys. Values are type-checked against the dataclass annotations (an integer where a
float is expected is accepted and stored as a float, so run identities do not depend on ``1`` vs
``1.0``). Every expanded run is validated before anything runs; any problem is a ``ConfigError`` of
one line that names the file, the key and what is allowed.
"""

from __future__ import annotations

import difflib
import itertools
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from seqbench.cells import CellConfig
from seqbench.config import RunConfig
from seqbench.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = ("description", "default_profile", "select", "settings", "grid", "arms", "profiles",
            "published")
#: keys of a ``[published.<arm>]`` table: a published result an arm reproduces (seqbench.published)
PUBLISHED_KEYS = {"paper": str, "title": str, "source": str, "metric": str, "value": float,
                  "outcome": str, "setting": str, "differences": str, "verified": bool}
PUBLISHED_METRICS = ("test_loss", "outcome")
OUTCOMES = ("solved", "partial", "baseline")
PROFILE_KEYS = ("description", "select", "settings", "grid", "arms")
#: RunConfig fields that are not flat spec keys: ``cell`` is the CellConfig (its fields are keys)
_NESTED = ("cell",)


def _hints(cls) -> dict[str, object]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def allowed_keys() -> dict[str, object]:
    """Every spec key and its type annotation: RunConfig's fields, then CellConfig's."""
    run = {k: v for k, v in _hints(RunConfig).items() if k not in _NESTED}
    cell = _hints(CellConfig)
    return {**run, **cell}


def cell_keys() -> set[str]:
    return {f.name for f in fields(CellConfig)}


# -- types ---------------------------------------------------------------------------------------

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _options(hint) -> list:
    """The concrete types (or Literal values) a hint allows, None left out (TOML has no null)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(hint) for t in _options(a)]
    if hint is type(None):
        return []
    return [hint]


def is_list_key(hint) -> bool:
    """Whether a key's one value is itself a list (``eval_seq_lens = [200, 500]``): in [settings]
    and --set a list, in [grid] a list of lists."""
    return any(typing.get_origin(t) is tuple for t in _options(hint))


def _is_item(value, item_type) -> bool:
    """Whether a TOML list element is of a tuple key's element type (int: not a bool)."""
    if item_type is str:
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def _coerce(value, hint):
    """``value`` converted to ``hint``, or raise ValueError with what is expected."""
    options = _options(hint)
    for t in options:
        if typing.get_origin(t) is tuple:  # tuple[int, ...] or tuple[str, ...]: a TOML list
            if isinstance(value, list) and all(_is_item(v, typing.get_args(t)[0])
                                               for v in value):
                return tuple(value)
        elif typing.get_origin(t) is typing.Literal:
            if value in typing.get_args(t):
                return value
        elif t is bool:
            if isinstance(value, bool):
                return value
        elif t is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif t is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif t is str:
            if isinstance(value, str):
                return value
        else:  # a type this checker does not know: leave it to RunConfig.validate
            return value
    words = []
    for t in options:
        if typing.get_origin(t) is typing.Literal:
            words.append(" or ".join(repr(a) for a in typing.get_args(t)))
        elif typing.get_origin(t) is tuple:
            words.append("a list of strings" if typing.get_args(t)[0] is str
                         else "a list of integers")
        else:
            words.append(_TYPE_WORDS.get(t, getattr(t, "__name__", str(t))))
    raise ValueError(f"must be {' or '.join(words)}, got {value!r}")


def _suggest(name: str, allowed) -> str:
    """``; did you mean 'x'? (allowed: a, b)`` when a name of ``allowed`` is close to ``name``
    (difflib), else ``; allowed: a, b``."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(name), allowed, n=1)
    listed = ", ".join(allowed)
    return f"; did you mean {close[0]!r}? (allowed: {listed})" if close else f"; allowed: {listed}"


def _named(key: str, value):
    """A task or cell name as its registry spells it (``LSTM`` -> ``lstm``; a did-you-mean
    ConfigError for an unknown one); other values unchanged."""
    if key == "task" and isinstance(value, str):
        from seqbench.tasks.registry import check_task_name

        return check_task_name(value)
    if key == "cell" and isinstance(value, str):
        from seqbench.cells.registry import check_cell_name

        return check_cell_name(value)
    return value


#: ``--set seeds=N``: seeds 0 .. N-1 (the grid's seed list), not a RunConfig field
SEEDS_KEY = "seeds"


def parse_overrides(pairs, where: str = "--set") -> dict:
    """``["steps=200", "seeds=2", "cell=gru"]`` -> ``{"steps": 200, "seeds": 2, "cell": "gru"}``,
    each value read as a TOML value (a bare word as a string) and type-checked against the spec
    keys (``seeds``: an integer >= 1); a ConfigError of one line for a malformed pair, an unknown
    key (with the closest one) or a value of the wrong type."""
    allowed = allowed_keys()
    out: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{where} {pair!r}: give key=value, e.g. {where} steps=200")
        if key != SEEDS_KEY and key not in allowed:
            raise ConfigError(f"{where} {key}: unknown key" + _suggest(key, [*allowed, SEEDS_KEY]))
        if key in out:
            raise ConfigError(f"{where} {key} is given twice; give it once")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()  # a bare word: a name (cell=gru, nonlinearity=relu)
        if isinstance(value, dict) or (isinstance(value, list)
                                       and not (key in allowed and is_list_key(allowed[key]))):
            raise ConfigError(f"{where} {key} must be a single value, got {text!r}")
        if key == SEEDS_KEY:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{where} seeds must be an integer >= 1 (seeds 0 .. N-1), "
                                  f"got {text!r}")
        else:
            try:
                value = _named(key, _coerce(value, allowed[key]))
            except ValueError as e:  # ConfigError too
                raise ConfigError(f"{where} {key} {e}" if not isinstance(e, ConfigError)
                                  else f"{where} {key}: {e}") from None
        out[key] = value
    if SEEDS_KEY in out and "seed" in out:
        raise ConfigError(f"{where} seed and {where} seeds both choose the seeds; give one")
    return out


# -- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A parsed, checked spec file (not yet expanded)."""

    path: Path
    description: str = ""
    default_profile: str | None = None
    settings: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    arms: list | None = None
    profiles: dict = field(default_factory=dict)
    select: tuple[str, ...] = ()  # keys tuned per arm on validation (a profile may replace them)
    published: dict = field(default_factory=dict)  # arm name -> its published result

    def selected(self, profile: str | None = None) -> tuple[str, ...]:
        """The keys the leaderboard selects over for ``profile`` (or the default profile)."""
        profile = profile if profile is not None else self.default_profile
        chosen = self.profiles.get(profile, {}).get("select") if profile else None
        return tuple(chosen) if chosen is not None else self.select

    @property
    def profile_names(self) -> list[str]:
        return list(self.profiles)

    def resolve(self, profile: str | None = None) -> tuple[dict, dict, list[dict]]:
        """Settings, grid and arms with ``profile`` (or the default profile) applied."""
        profile = profile if profile is not None else self.default_profile
        settings, grid = dict(self.settings), dict(self.grid)
        arms = list(self.arms or [])
        if profile is not None:
            if profile not in self.profiles:
                allowed = ", ".join(self.profiles) or "none (this spec defines no profiles)"
                raise ConfigError(f"{self.path}: unknown profile {profile!r}"
                                  + (_suggest(profile, self.profiles) if self.profiles
                                     else f"; allowed: {allowed}"))
            p = self.profiles[profile]
            for key, value in p.get("settings", {}).items():
                grid.pop(key, None)
                settings[key] = value
            for key, values in p.get("grid", {}).items():
                settings.pop(key, None)
                grid[key] = values
            if p.get("arms") is not None:
                arms = list(p["arms"])
        if not grid and not arms:
            where = f"profile {profile!r} of " if profile else ""
            raise ConfigError(f"{where}{self.path}: nothing to run: [grid] is empty and there are no "
                              "[[arms]]; give at least one grid key with a list of values")
        return settings, grid, arms

    def count(self, profile: str | None = None, overrides: dict | None = None) -> int:
        """The runs ``expand`` would give at most (before duplicates are dropped), from the grid's
        list lengths and the arms alone: nothing is built or validated, so a huge grid is counted
        at once."""
        settings, grid, arms = self.resolve(profile)
        overrides = dict(overrides or {})
        seeds = overrides.pop(SEEDS_KEY, None)
        if seeds is not None:
            grid["seed"] = range(seeds)
        for key in overrides:
            grid.pop(key, None)
        return math.prod(len(v) for v in grid.values()) * max(1, len(arms))

    def expand(self, profile: str | None = None, overrides: dict | None = None) -> list[RunConfig]:
        """Every run of the spec (with ``profile``), validated, duplicates dropped, in grid order:
        the first grid key outermost, the arms innermost.

        overrides (``parse_overrides``, ``seqbench sweep --set``): values that replace the
        settings', the grid's and the arms' for every run; ``seeds`` N makes the seed grid
        0 .. N-1. A run whose values change gets another config id, so it is not taken for a
        recorded run of the spec as written."""
        settings, grid, arms = self.resolve(profile)
        overrides = dict(overrides or {})
        seeds = overrides.pop(SEEDS_KEY, None)
        if seeds is not None:
            settings.pop("seed", None)
            grid["seed"] = list(range(seeds))  # in the seed list's place, if the grid has one
        for key, value in overrides.items():
            grid.pop(key, None)
            settings[key] = value
        ckeys = cell_keys()
        chosen = profile if profile is not None else self.default_profile
        where = f"{self.path}" + (f" (profile {chosen})" if chosen else "")
        configs: list[RunConfig] = []
        seen: set[str] = set()
        combos = itertools.product(*grid.values()) if grid else [()]
        for combo in combos:
            for arm in arms or [None]:
                values = {**settings, **dict(zip(grid, combo))}
                if arm is not None:
                    values.update({k: v for k, v in arm.items() if k != "name"})
                    values["label"] = arm["name"]
                values.update(overrides)  # over the arms' values too
                cell = {k: v for k, v in values.items() if k in ckeys}
                run = {k: v for k, v in values.items() if k not in ckeys}
                try:
                    cfg = RunConfig(cell=CellConfig(**cell), **run).validate()
                    cid = cfg.config_id()
                except ConfigError as e:
                    raise ConfigError(f"{where}: run {_describe(values)}: {e}") from None
                if cid not in seen:
                    seen.add(cid)
                    configs.append(cfg)
        return configs


def _describe(values: dict) -> str:
    keys = ("label", "task", "variant", "cell", "impl", "seq_len", "seed")
    parts = [f"{k}={values[k]}" for k in keys if values.get(k) not in (None, "")]
    return "(" + ", ".join(parts) + ")"


def _check_table(path: Path, where: str, table, kind: str) -> dict:
    """Check a [settings] (``kind`` "settings") or [grid] (``kind`` "grid") table."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table of keys, got {table!r}")
    allowed = allowed_keys()
    out = {}
    for key, value in table.items():
        if key not in allowed:
            raise ConfigError(f"{path}: {where}.{key}: unknown key" + _suggest(key, allowed))
        if kind == "settings":
            if isinstance(value, dict) or (isinstance(value, list)
                                           and not is_list_key(allowed[key])):
                raise ConfigError(f"{path}: {where}.{key} must be a single value, got {value!r} "
                                  "(put lists of values in [grid])")
            out[key] = _checked(path, f"{where}.{key}", value, allowed[key], key)
        else:
            if not isinstance(value, list):
                raise ConfigError(f"{path}: {where}.{key} must be a list of values, got {value!r} "
                                  "(put single values in [settings])")
            if not value:
                raise ConfigError(f"{path}: {where}.{key} is an empty list; give at least one value")
            items = [_checked(path, f"{where}.{key}", v, allowed[key], key) for v in value]
            dupes = sorted({repr(v) for v in items if items.count(v) > 1})
            if dupes:
                raise ConfigError(f"{path}: {where}.{key} lists {', '.join(dupes)} more than once")
            out[key] = items
    return out


def _checked(path: Path, where: str, value, hint, key: str = ""):
    if isinstance(value, dict) or (isinstance(value, list) and not is_list_key(hint)):
        raise ConfigError(f"{path}: {where} must be a single value, got {value!r}")
    try:
        value = _coerce(value, hint)
    except ValueError as e:
        raise ConfigError(f"{path}: {where} {e}") from None
    try:
        return _named(key, value)
    except ConfigError as e:
        raise ConfigError(f"{path}: {where}: {e}") from None


def _check_arms(path: Path, where: str, arms) -> list[dict]:
    if not isinstance(arms, list) or not all(isinstance(a, dict) for a in arms):
        raise ConfigError(f"{path}: {where} must be an array of tables ([[{where}]] name = ...)")
    if not arms:
        raise ConfigError(f"{path}: {where} is empty; give at least one arm or leave it out")
    allowed = allowed_keys()
    out, names = [], set()
    for i, arm in enumerate(arms):
        here = f"{where}[{i}]"
        name = arm.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: {here}.name is missing; every arm needs a name (a string), "
                              "which is recorded as the run's label")
        if name in names:
            raise ConfigError(f"{path}: {here}.name {name!r} is used by two arms; names must be unique")
        names.add(name)
        checked = {"name": name}
        for key, value in arm.items():
            if key == "name":
                continue
            if key == "label":
                raise ConfigError(f"{path}: {here}.label: an arm's label is its name; use name only")
            if key not in allowed:
                raise ConfigError(f"{path}: {here}.{key}: unknown key" + _suggest(
                    key, ["name", *(k for k in allowed if k != "label")]))
            checked[key] = _checked(path, f"{here}.{key}", value, allowed[key], key)
        out.append(checked)
    return out


def _check_overlap(path: Path, where: str, settings: dict, grid: dict) -> None:
    both = sorted(set(settings) & set(grid))
    if both:
        raise ConfigError(f"{path}: {where}: {', '.join(both)} given both in settings and in grid; "
                          "keep one")


def _check_select(path: Path, where: str, value) -> tuple[str, ...]:
    """``select``: a key or a list of keys, each a spec key (``lr``, ``hidden``, ...)."""
    keys = [value] if isinstance(value, str) else value
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{path}: {where} must be a key or a list of keys, e.g. select = [\"lr\"]")
    allowed = [k for k in allowed_keys() if k not in ("seed", "label", "device", "threads")]
    for k in keys:
        if k not in allowed:
            raise ConfigError(f"{path}: {where}: {k!r} cannot be selected; allowed: {', '.join(allowed)}")
    return tuple(keys)


def _check_published(path: Path, table, arm_names: set[str]) -> dict:
    """``[published.<arm>]`` tables: each names an arm and what a paper reported for it."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: published must be tables: [published.<arm name>]")
    out = {}
    for name, entry in table.items():
        where = f"published.{name}"
        if name not in arm_names:
            raise ConfigError(f"{path}: {where}: no arm named {name!r}; arms: "
                              f"{', '.join(sorted(arm_names)) or 'none'}")
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {where} must be a table of {', '.join(PUBLISHED_KEYS)}")
        for key, value in entry.items():
            kind = PUBLISHED_KEYS.get(key)
            if kind is None:
                raise ConfigError(f"{path}: {where}.{key}: unknown key; allowed: "
                                  f"{', '.join(PUBLISHED_KEYS)}")
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
                  else isinstance(value, kind))
            if not ok:
                raise ConfigError(f"{path}: {where}.{key} must be {_TYPE_WORDS[kind]}, got {value!r}")
        for key in ("paper", "source", "metric", "outcome"):
            if key not in entry:
                raise ConfigError(f"{path}: {where}.{key} is missing; give paper, source, metric "
                                  "and outcome (and value for metric test_loss)")
        if entry["metric"] not in PUBLISHED_METRICS:
            raise ConfigError(f"{path}: {where}.metric: unknown {entry['metric']!r}; allowed: "
                              f"{', '.join(PUBLISHED_METRICS)}")
        if entry["outcome"] not in OUTCOMES:
            raise ConfigError(f"{path}: {where}.outcome: unknown {entry['outcome']!r}; allowed: "
                              f"{', '.join(OUTCOMES)}")
        if entry["metric"] == "test_loss" and "value" not in entry:
            raise ConfigError(f"{path}: {where}.value is missing (metric test_loss needs the number)")
        out[name] = {**entry, **({"value": float(entry["value"])} if "value" in entry else {})}
    return out


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file: every key, type and profile (runs are checked by ``expand``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"spec file {path} does not exist" if not path.exists()
                          else f"spec {path} is not a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: {key}: unknown top-level key" + _suggest(key, TOP_KEYS)
                              + " (run settings go in [settings] or [grid])")
    for key in ("description", "default_profile"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(f"{path}: {key} must be a string, got {data[key]!r}")
    settings = _check_table(path, "settings", data.get("settings", {}), "settings")
    grid = _check_table(path, "grid", data.get("grid", {}), "grid")
    if "grid" in data and not grid:
        raise ConfigError(f"{path}: grid is empty; give at least one key with a list of values, "
                          "e.g. seed = [0, 1, 2]")
    _check_overlap(path, "top level", settings, grid)
    arms = _check_arms(path, "arms", data["arms"]) if "arms" in data else None
    labelled = sorted({"label"} & (set(settings) | set(grid)))
    if arms is not None and labelled:
        raise ConfigError(f"{path}: label is set by the arms' names; remove it from settings/grid")

    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise ConfigError(f"{path}: profiles must be tables: [profiles.quick], [profiles.full], ...")
    profiles = {}
    for name, p in raw_profiles.items():
        where = f"profiles.{name}"
        if not isinstance(p, dict):
            raise ConfigError(f"{path}: {where} must be a table with keys {', '.join(PROFILE_KEYS)}")
        for key in p:
            if key not in PROFILE_KEYS:
                raise ConfigError(f"{path}: {where}.{key}: unknown key" + _suggest(key, PROFILE_KEYS)
                                  + f" (run settings go in {where}.settings)")
        checked = {
            "description": p.get("description", ""),
            "settings": _check_table(path, f"{where}.settings", p.get("settings", {}), "settings"),
            "grid": _check_table(path, f"{where}.grid", p.get("grid", {}), "grid"),
        }
        if not isinstance(checked["description"], str):
            raise ConfigError(f"{path}: {where}.description must be a string")
        _check_overlap(path, where, checked["settings"], checked["grid"])
        if "arms" in p:
            checked["arms"] = _check_arms(path, f"{where}.arms", p["arms"])
        if "select" in p:
            checked["select"] = _check_select(path, f"{where}.select", p["select"])
        profiles[name] = checked

    default = data.get("default_profile")
    if default is not None and default not in profiles:
        raise ConfigError(f"{path}: default_profile {default!r} is not a profile; allowed: "
                          f"{', '.join(profiles) or 'none (no [profiles.*] tables)'}")
    select = _check_select(path, "select", data["select"]) if "select" in data else ()
    arm_names = {a["name"] for a in arms or []}
    arm_names |= {a["name"] for p in profiles.values() for a in p.get("arms", [])}
    published = _check_published(path, data["published"], arm_names) if "published" in data else {}
    return Spec(path=path, description=data.get("description", ""), default_profile=default,
                settings=settings, grid=grid, arms=arms, profiles=profiles, select=select,
                published=published)


def expand_spec(path: str | Path, profile: str | None = None) -> list[RunConfig]:
    """Load ``path`` and expand it with ``profile`` (or its default profile) into validated runs."""
    return load_spec(path).expand(profile)
