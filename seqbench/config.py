"""The configuration of one training run, its validation and its identity.

Every default lives here, one per line, with its unit or intent. The run's identity (``config_id``),
its folder name (``run_name``) and the runs.csv columns a configuration fills (``columns``; the
full row schema is seqbench.results.RUN_COLUMNS) are written here once; the runner, the sweep and
the leaderboard use them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace

from seqbench.cells import CellConfig
from seqbench.choices import (  # optimizers: train.make_optimizer
    CLIP_MODES,
    DEVICES,
    OPTIMIZERS,
    PROBES,
)
from seqbench.errors import ConfigError

#: fields that say where and how fast a run executes, not what it computes: not in its identity
ENVIRONMENT_FIELDS = ("device", "threads")
#: the flossing fields and their defaults (RunConfig): with floss 0 they are out of the run's
#: identity and blank in its row
FLOSS_DEFAULTS = {"floss": 0, "floss_weight": 1.0, "floss_steps": 500}
#: RunConfig fields whose runs.csv column has another name
COLUMN_NAMES = {"steps": "step_budget"}


def config_column_names() -> list[str]:
    """The runs.csv columns of a configuration, in field order: the run's fields with the cell's
    fields in place of ``cell``, renamed (COLUMN_NAMES), environment fields left out."""
    names = []
    for f in fields(RunConfig):
        if f.name == "cell":
            names += [c.name for c in fields(CellConfig)]
        elif f.name not in ENVIRONMENT_FIELDS and f.name != "probes":  # probes: config.json
            names.append(COLUMN_NAMES.get(f.name, f.name))
    return names


def _finite(value) -> bool:
    """A real number that is not inf or NaN (a non-finite option is bad input, not a run)."""
    try:
        return math.isfinite(value)
    except TypeError:
        return True  # not a number at all: the comparisons below say so


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    task: str = "adding"  # a registered task (seqbench run --help) or package.module:ClassName
    variant: str | None = None  # task variant; None = the task's default
    seq_len: int = 100  # the lag T the task is named by (total steps are recorded too)
    cell: CellConfig = field(default_factory=CellConfig)
    optimizer: str = "adam"  # adam | rmsprop | sgd
    lr: float = 1e-3  # learning rate of the optimizer
    clip: float = 1.0  # clipping threshold; 0 = off
    clip_mode: str = "norm"  # norm: rescale the global gradient norm (Pascanu 2013) | value: clamp each entry
    batch_size: int = 64  # sequences per training step
    steps: int = 10_000  # training-step budget
    eval_every: int = 100  # evaluate on the validation set every this many steps
    eval_size: int = 512  # validation sequences (fixed, "eval" seed stream): stopping, selection
    test_size: int = 1024  # test sequences (fixed, "test" seed stream): read once, at the end
    until_solved: bool = True  # stop at the first evaluation where the validation set is solved
    # the validation set counts as solved once it met the criterion at this many consecutive
    # evaluations (1: the first crossing). Stopping at the first noisy crossing selects a model
    # that sits on the threshold, and its test set can land on the wrong side of it
    solved_evals: int = 1
    seed: int = 0  # one seed; init, train, eval and probe streams are derived from it
    probe_every: int = 0  # gradient-vs-lag probe at step 0, every N steps and at the end; 0 = off
    match_params: int = 0  # > 0: hidden size chosen so the model has about this many parameters
    label: str = ""  # name of the comparison arm a spec gave this run (e.g. "lstm_fb1"); "" = none
    eval_seq_lens: tuple[int, ...] = ()  # also test the final model at these lags (generalization)
    # gradient flossing (Engelken 2023; seqbench.flossing): floss_weight x the mean squared k
    # largest Lyapunov exponents of every layer added to the loss for the first floss_steps steps
    floss: int = 0  # k, the exponents flossed per layer (1 .. hidden); 0 = off
    floss_weight: float = 1.0  # weight of the flossing loss (needs floss >= 1)
    floss_steps: int = 500  # flossing in the first N training steps (the author's 500; needs floss)
    # what each probe (probe_every) measures: "gradient" (grads.csv), "lyapunov", "jacobian",
    # "sensitivity" (dynamics.csv); () = gradient alone. Recorded in config.json, not runs.csv
    probes: tuple[str, ...] = ()
    device: str = "auto"  # auto (cuda when present) | cpu | cuda
    threads: int | None = None  # torch intra-op threads; None = torch's default

    def validate(self) -> RunConfig:
        """Check every field; return the config with the task variant and the cell resolved."""
        from seqbench.model import hidden_for_params  # torch: only when a run is checked
        from seqbench.tasks import make_task

        task = make_task(self.task, self.variant)
        task.check_seq_len(self.seq_len)
        checks = [
            (self.optimizer in OPTIMIZERS,
             f"unknown optimizer {self.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}"),
            (_finite(self.lr), f"lr must be a finite number, got {self.lr}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (_finite(self.clip), f"clip must be a finite number (0 = off), got {self.clip}"),
            (self.clip >= 0, f"clip must be >= 0 (0 = off), got {self.clip}"),
            (self.clip_mode in CLIP_MODES, f"unknown clip_mode {self.clip_mode!r}; allowed: norm, value"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.eval_every >= 1, f"eval_every must be >= 1, got {self.eval_every}"),
            (self.eval_size >= 1, f"eval_size must be >= 1, got {self.eval_size}"),
            (self.test_size >= 1, f"test_size must be >= 1, got {self.test_size}"),
            (isinstance(self.solved_evals, int) and not isinstance(self.solved_evals, bool)
             and self.solved_evals >= 1,
             f"solved_evals must be a whole number >= 1 (1 = the first solved evaluation), "
             f"got {self.solved_evals!r}"),
            (self.match_params >= 0, f"match_params must be >= 0 (0 = off), got {self.match_params}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.probe_every >= 0, f"probe_every must be >= 0 (0 = off), got {self.probe_every}"),
            (self.device in DEVICES, f"unknown device {self.device!r}; allowed: auto, cpu, cuda"),
            (self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (isinstance(self.eval_seq_lens, (tuple, list)),
             f"eval_seq_lens must be a list of lags, got {self.eval_seq_lens!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        probes = self._probes()
        floss_weight = self._check_floss()
        for length in self.eval_seq_lens:
            try:
                task.check_seq_len(length)
            except ConfigError as e:
                raise ConfigError(f"eval_seq_lens: {e}") from None
        cell = self.cell.validate()
        if self.match_params:  # the hidden size is derived, so the row's `hidden` says what ran
            cell = replace(cell, hidden=hidden_for_params(task, cell, self.match_params,
                                                          self.seq_len))
        if self.floss > cell.hidden:
            raise ConfigError(f"floss must be at most hidden ({cell.hidden}): it counts the "
                              f"Lyapunov exponents flossed per layer, got {self.floss}")
        from seqbench.tasks.registry import check_task_name

        # the registered spelling (Adding is adding), so that both have one config id
        return replace(self, task=check_task_name(self.task), variant=task.variant, cell=cell,
                       eval_seq_lens=tuple(sorted(set(self.eval_seq_lens))), probes=probes,
                       floss_weight=floss_weight)

    def _check_floss(self) -> float:
        """The flossing fields (seqbench.flossing), one line per problem; the weight as a float
        (a TOML 2 and 2.0 are one run)."""
        k, w, n = self.floss, self.floss_weight, self.floss_steps

        def whole(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not (whole(k) and k >= 0):
            raise ConfigError(f"floss must be a whole number >= 0 (the Lyapunov exponents "
                              f"flossed per layer; 0 = off), got {k!r}")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not _finite(w) or w <= 0:
            raise ConfigError(f"floss_weight must be a finite number > 0, got {w!r}")
        if not (whole(n) and n >= 1):
            raise ConfigError(f"floss_steps must be a whole number >= 1, got {n!r}")
        if not k and (w != FLOSS_DEFAULTS["floss_weight"] or n != FLOSS_DEFAULTS["floss_steps"]):
            raise ConfigError("floss_weight and floss_steps need floss >= 1 (--floss K, the "
                              "exponents flossed; 0 = off)")
        if k and self.cell.norm != "none":
            raise ConfigError(f"floss needs a cell without in-cell normalization (as seqbench "
                              f"dynamics: no one-step map of one sequence to differentiate); drop "
                              f"--norm {self.cell.norm} or --floss")
        return float(w)

    def _probes(self) -> tuple[str, ...]:
        """``probes`` checked and put in canonical order (PROBES), duplicates dropped; the
        gradient probe alone (the default) is ``()``, so that such runs keep their config ids."""
        given = self.probes
        if isinstance(given, str) or not isinstance(given, (tuple, list)):
            raise ConfigError(f"probes must be a list of {', '.join(PROBES)}, got {given!r}")
        bad = [p for p in given if p not in PROBES]
        if bad:
            raise ConfigError(f"unknown probe {bad[0]!r}; allowed: {', '.join(PROBES)}")
        probes = tuple(p for p in PROBES if p in given)
        if probes == ("gradient",):
            probes = ()
        if given and self.probe_every == 0:
            raise ConfigError("probes need probe_every > 0 (--probe-every N: probe at step 0, "
                              "every N steps and at the end)")
        dynamics = [p for p in probes if p != "gradient"]
        if dynamics and self.cell.norm != "none":
            raise ConfigError(f"the {dynamics[0]} probe needs a cell without in-cell "
                              "normalization (batch norm mixes the sequences of a batch: no "
                              f"per-sequence map); drop --norm {self.cell.norm} or that probe")
        return probes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown run config keys {sorted(unknown)}; allowed: {sorted(known)}")
        cell = d.pop("cell", {})
        if isinstance(cell, dict):
            cell_known = {f.name for f in fields(CellConfig)}
            if set(cell) - cell_known:
                raise ConfigError(
                    f"unknown cell keys {sorted(set(cell) - cell_known)}; allowed: {sorted(cell_known)}"
                )
            cell = CellConfig(**cell)
        if isinstance(d.get("eval_seq_lens"), list):  # JSON has no tuples
            d["eval_seq_lens"] = tuple(d["eval_seq_lens"])
        if isinstance(d.get("probes"), list):
            d["probes"] = tuple(d["probes"])
        return cls(cell=cell, **d)

    def columns(self) -> dict:
        """The runs.csv columns this config fills by itself (``config_column_names``)."""
        d = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "cell":
                d.update(value.to_dict())
            elif f.name == "eval_seq_lens":  # one cell of runs.csv: "200 500"
                d[f.name] = " ".join(map(str, value))
            elif f.name in FLOSS_DEFAULTS and not self.floss:  # off: blank, as in older rows
                d[f.name] = None
            elif f.name == "solved_evals" and value == 1:  # the default: blank, as in older rows
                d[f.name] = None
            elif f.name not in ENVIRONMENT_FIELDS and f.name != "probes":
                d[COLUMN_NAMES.get(f.name, f.name)] = value
        return d

    def run_name(self) -> str:
        """The run folder's name: <task>-T<T>-<cell>-<impl>-s<seed>-<config id>, with characters
        other than letters, digits, '.', '_' and '-' (a plugin's module:Class) as '_'."""
        c = self.validate().cell  # the impl that runs (a cell without a torch twin: hand)
        name = f"{self.task}-T{self.seq_len}-{c.cell}-{c.impl}-s{self.seed}-{self.config_id()[:8]}"
        return re.sub(r"[^A-Za-z0-9._-]", "_", name)

    def config_id(self) -> str:
        """A stable hash of everything that determines the result (not device or threads)."""
        d = {k: v for k, v in self.validate().to_dict().items() if k not in ENVIRONMENT_FIELDS}
        if not d["eval_seq_lens"]:  # added later: runs without it keep the ids they were given
            del d["eval_seq_lens"]
        if not d["probes"]:  # the same: runs with the gradient probe alone keep their ids
            del d["probes"]
        if d["solved_evals"] == 1:  # the same: runs stopping at the first crossing keep their ids
            del d["solved_evals"]
        if not d["floss"]:  # the same: runs without flossing keep their ids
            for name in FLOSS_DEFAULTS:
                del d[name]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
