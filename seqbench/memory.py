"""Bounds on the integer options, and the memory a run or a probe needs, checked before anything
is created.

``run_bytes`` and ``probe_bytes`` are arithmetic on the config (no tensor is allocated), so a run
that cannot fit is refused in milliseconds with one line (``check_run``, ``check_probe``) naming
the estimate, the limit and what to lower. The model, in float32 bytes (4 per number), with
S = the task's total steps, B = batch, H = hidden, L = layers, I/O = the task's input/output size:

- parameters: ``PARAM_COPIES`` copies (weights, gradients, the optimizer's two moment buffers) of
  ``GATES`` x L x (H x H + H x max(I, H) + 2H) + H x O numbers;
- training step: the autograd graph keeps ``train_factor(cell)`` numbers per step, sequence,
  hidden unit and layer: 4 S B H L x factor;
- evaluation (no graph, in chunks of ``EVAL_CHUNK`` sequences, seqbench.train.evaluate): the
  fused kernels return every step's hidden state: 4 S min(chunk, n) H L x ``EVAL_FACTOR``;
- the fixed sets held during the run: validation and test inputs and targets,
  4 (eval_size + test_size) S (I + O) (and each ``eval_seq_lens`` test set);
- a gradient probe (seqbench grads; run --probe-every) keeps ``PROBE_FACTOR`` numbers per step,
  sequence, hidden unit and layer;
- ``BASE_BYTES`` for Python and torch themselves.

Measured peak resident memory (resource.getrusage maxrss, one thread, T=2000, H=128, batch 64)
against the numbers per step, sequence, unit and layer: training lstm hand 13.9, lstm builtin
16.1, gru hand 15.9, rnn hand 5.2 (other cells: ``TRAIN_FACTORS``); evaluation of 512 sequences
lstm builtin 2.1; probe lstm hand 19.1, lstm builtin 10.7. The factors below are above every one
of these: the whole estimate came out 1.4-2.3x the measured peaks.

The limit is the memory available now (/proc/meminfo MemAvailable, else psutil), or
``SEQBENCH_MEMORY_LIMIT_GB`` when set (a test's small fake limit, or a machine's own share).
"""

from __future__ import annotations

import math
import os

from seqbench.errors import ConfigError

# -- bounds on the integer options (click.IntRange max; the help and the error show them) --------

#: the lag T (and --eval-seq-len): 100x the longest lag of the committed specs (5000)
MAX_SEQ_LEN = 1_000_000
#: hidden units: a 100,000-unit LSTM has 160 G parameters already; the memory check does the rest
MAX_HIDDEN = 100_000
MAX_LAYERS = 1_000
#: sequences per training step or probe batch, and per validation/test set
MAX_BATCH = 1_000_000
MAX_SET = 100_000_000
#: step budgets and every "every N steps"
MAX_STEPS = 1_000_000_000
#: --match-params: hidden_for_params builds models up to twice this size to bisect
MAX_PARAMS = 100_000_000
#: seeds fit a 32-bit generator seed (and the seed streams derived from them)
MAX_SEED = 2**32 - 1
#: --seeds of seqbench grads
MAX_SEEDS = 100_000
#: torch threads, workers, runs per GPU
MAX_THREADS = 1_024
MAX_WORKERS = 1_024
#: runs a sweep starts without --yes
SWEEP_CONFIRM = 1_000

# -- the memory model ------------------------------------------------------------------------------

FLOAT = 4  # bytes of a float32
BASE_BYTES = 512 * 2**20  # Python, torch and seqbench themselves (about 220 MB measured)
GATES = 4  # gate blocks per layer, the LSTM's (the most of the builtin cells)
PARAM_COPIES = 4  # weights, gradients, two optimizer moments (Adam)
#: numbers the autograd graph keeps per step, sequence, hidden unit and layer (measured at H=128,
#: batch 64: rnn 5.2-7.4, indrnn 7.2, exprnn 10.4, cornn 12.6, lstm 13.9-16.1, gru 15.9-16.3,
#: lru 16.1, minlstm 23.8); cells not listed get DEFAULT_TRAIN_FACTOR; a normalization doubles it
TRAIN_FACTORS = {"rnn": 12, "indrnn": 12}
DEFAULT_TRAIN_FACTOR = 32
EVAL_CHUNK = 512  # seqbench.train.evaluate's default chunk
EVAL_FACTOR = 4  # measured 2.1 (the layer's output, the readout's input)
PROBE_FACTOR = 24  # measured 19.1 (hand lstm), 10.7 (builtin lstm)
ENV_LIMIT = "SEQBENCH_MEMORY_LIMIT_GB"
GB = 2**30


def train_factor(cell: str, norm: str = "none") -> int:
    factor = TRAIN_FACTORS.get(cell, DEFAULT_TRAIN_FACTOR)
    return factor if norm in ("none", "", None) else 2 * factor


def param_bytes(hidden: int, layers: int, inputs: int, outputs: int) -> int:
    per_layer = hidden * hidden + hidden * max(inputs, hidden) + 2 * hidden
    return FLOAT * PARAM_COPIES * (GATES * layers * per_layer + hidden * outputs + outputs)


def _activations(steps: int, sequences: int, hidden: int, layers: int, factor: float) -> int:
    return FLOAT * steps * sequences * hidden * layers * factor


def _sizes(task_name: str, variant: str | None, seq_len: int) -> tuple[int, int, int]:
    from seqbench.tasks import make_task

    task = make_task(task_name, variant)
    return task.total_steps(seq_len), task.input_size or 1, task.output_size or 1


def run_parts(cfg) -> dict[str, int]:
    """The bytes of each part of a training run (a validated RunConfig), by name."""
    c = cfg.cell
    S, I, O = _sizes(cfg.task, cfg.variant, cfg.seq_len)
    H, L = c.hidden, c.layers
    chunk = min(EVAL_CHUNK, max(cfg.eval_size, cfg.test_size))
    parts = {
        "base": BASE_BYTES,
        "parameters": param_bytes(H, L, I, O),
        "training step": _activations(S, cfg.batch_size, H, L, train_factor(c.cell, c.norm)),
        "evaluation": _activations(S, chunk, H, L, EVAL_FACTOR),
        "data sets": FLOAT * (cfg.eval_size + cfg.test_size) * S * (I + O),
    }
    if cfg.probe_every > 0:
        parts["probe"] = _activations(S, cfg.batch_size, H, L, PROBE_FACTOR)
    for length in cfg.eval_seq_lens:  # a test set at another lag, after training
        S2 = _sizes(cfg.task, cfg.variant, length)[0]
        parts[f"test at T={length}"] = (FLOAT * cfg.test_size * S2 * (I + O)
                                        + _activations(S2, min(EVAL_CHUNK, cfg.test_size), H, L,
                                                       EVAL_FACTOR))
    return parts


def run_bytes(cfg) -> int:
    """Peak bytes of a training run: base, parameters and data sets, plus the largest of the
    phases that do not overlap (a training step, an evaluation, a probe, a test at another lag)."""
    parts = run_parts(cfg)
    held = parts["base"] + parts["parameters"] + parts["data sets"]
    phases = [v for k, v in parts.items() if k not in ("base", "parameters", "data sets")]
    return held + max(phases)


def probe_bytes(task_name: str, variant: str | None, seq_len: int, cell, batch_size: int) -> int:
    """Peak bytes of one gradient probe at initialization (seqbench grads)."""
    S, I, O = _sizes(task_name, variant, seq_len)
    return (BASE_BYTES + param_bytes(cell.hidden, cell.layers, I, O)
            + FLOAT * S * batch_size * (I + O)
            + _activations(S, batch_size, cell.hidden, cell.layers, PROBE_FACTOR))


def available_bytes() -> int | None:
    """The memory limit: SEQBENCH_MEMORY_LIMIT_GB, else MemAvailable, else psutil's available;
    None when none is known (no check)."""
    env = os.environ.get(ENV_LIMIT, "").strip()
    if env:
        try:
            gb = float(env)
        except ValueError:
            raise ConfigError(f"{ENV_LIMIT} must be a number of GB, got {env!r}") from None
        if not math.isfinite(gb) or gb <= 0:
            raise ConfigError(f"{ENV_LIMIT} must be a positive number of GB, got {env!r}")
        return int(gb * GB)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # optional: not a dependency
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def limit_text() -> str:
    return (f"{ENV_LIMIT}" if os.environ.get(ENV_LIMIT, "").strip()
            else "the memory available now")


def gb(n: float) -> str:
    return f"{n / GB:,.1f} GB" if n < 1000 * GB else f"{n / GB:,.3g} GB"


def check_run(cfg) -> None:
    """Refuse, in one line, a run (validated RunConfig) whose estimate exceeds the limit. On CUDA
    the estimate is set against this machine's memory too (a conservative stand-in)."""
    limit = available_bytes()
    if limit is None:
        return
    need = run_bytes(cfg)
    if need > limit:
        parts = run_parts(cfg)
        biggest = max((k for k in parts if k != "base"), key=parts.get)
        raise ConfigError(
            f"this run needs about {gb(need)} of memory (estimate; largest part: {biggest} "
            f"{gb(parts[biggest])}), more than the limit of {gb(limit)} ({limit_text()}); "
            "lower --batch-size, --eval-size/--test-size, --hidden or -T")


def check_probe(task_name: str, variant: str | None, seq_len: int, cell, batch_size: int) -> None:
    """Refuse, in one line, a gradient probe whose estimate exceeds the limit."""
    limit = available_bytes()
    if limit is None:
        return
    need = probe_bytes(task_name, variant, seq_len, cell, batch_size)
    if need > limit:
        raise ConfigError(
            f"this probe (T={seq_len}, {cell.cell} hidden {cell.hidden}, batch {batch_size}) "
            f"needs about {gb(need)} of memory (estimate), more than the limit of {gb(limit)} "
            f"({limit_text()}); lower --batch-size, --hidden or -T")
