"""The curse of memory (Zucchet & Orvieto 2024): how much the state moves when the recurrent
parameters move, as the memory of the recurrence grows. docs/references.md section 5.4.

The scalar linear recurrence h_t = lambda h_{t-1} + gamma x_t (h_{-1} = 0; x white noise of
variance sigma^2) has h_t = gamma sum_{n=0..t} lambda^n x_{t-n}, so (derived here)

    E[h_t^2]                = gamma^2 sigma^2 sum_{n=0..t} lambda^(2n)
                            -> gamma^2 sigma^2 / (1 - lambda^2)
    E[(d h_t / d lambda)^2] = gamma^2 sigma^2 sum_{n=1..t} n^2 lambda^(2(n-1))
                            -> gamma^2 sigma^2 (1 + lambda^2) / (1 - lambda^2)^3

(the limit from sum_n n^2 r^n = r (1 + r) / (1 - r)^3, r = lambda^2). Without normalization
(gamma = 1) the state's variance grows like 1 / (1 - lambda) and its sensitivity like
1 / (1 - lambda)^3: the memory's cost. The LRU (Orvieto et al. 2023) scales the input by
gamma = sqrt(1 - |lambda|^2), which keeps E|h|^2 at sigma^2 and leaves a sensitivity of order
1 / (1 - |lambda|^2)^2, and parametrizes lambda = exp(-exp(nu_log) + i exp(theta_log)), so that
d lambda / d nu_log = lambda log|lambda| ~ -(1 - |lambda|): the sensitivity to nu_log,
|lambda|^2 (log|lambda|)^2 (1 + |lambda|^2) / (1 - |lambda|^2)^2 sigma^2, tends to sigma^2 / 2 as
|lambda| -> 1: the curse is lifted for the memory's own parameter. The phase parameter theta_log
is not tamed by it (d lambda / d theta_log = i lambda exp(theta_log) keeps its size as |lambda|
-> 1); ``curse_of_memory`` reports each parameter on its own row.

``curse_of_memory`` measures ||d h_T / d theta||_F (seqbench.dynamics.measures.sensitivity) on
white-noise inputs for a grid of memories m in (0, 1), for:

- ``linear``: the scalar recurrence above (an rnn cell, linear, one unit, W_ih = 1, W_hh = m,
  no bias), theta = W_hh = lambda: the formula is in the ``theory`` column;
- ``rnn``: the tanh Elman RNN, W_hh = m Q (Q a random orthogonal matrix, so every singular
  value is m), zero biases, theta = W_hh;
- ``lstm``: the LSTM with its forget-gate bias at logit(m) (the gate starts at m), theta = W_hh;
- ``lru``: the LRU with |lambda| = m for every unit (the ring r_min = r_max = m), theta = nu_log
  and theta_log, each on its own row; for nu_log the ``theory`` column is ``lru_nu_sensitivity``
  summed over the units, each driven with variance gamma^2 |B_j|^2 (B_j = B_re + i B_im, one
  input of variance 1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from seqbench import seeding
from seqbench.cells.stack import HandRNN
from seqbench.dynamics import measures as M
from seqbench.dynamics.state import layer_maps, run_layer
from seqbench.errors import ConfigError

CURSE_CELLS = ("linear", "rnn", "lstm", "lru")
#: the columns of a curse-of-memory CSV (``seqbench curse``): one row per model, memory and
#: parameter, with the provenance of the measurement
CURSE_COLUMNS = ["cell", "memory", "param", "steps", "batch", "hidden", "value", "value_median",
                 "state_rms", "theory", "exact", "probes", "seed", "device", "device_name",
                 "threads", "malloc", "denormals", "torch_version", "cudnn_version",
                 "onednn_version", "seqbench_version", "git_commit"]


def scalar_sensitivity_variance(lam: float, t: int | None = None, sigma2: float = 1.0,
                                gamma: float = 1.0) -> float:
    """E[(d h_t / d lambda)^2] of h_t = lambda h_{t-1} + gamma x_t after t + 1 inputs (steps
    0 .. t), white x of variance sigma2; the limit t -> infinity when ``t`` is None."""
    if t is None:
        if not abs(lam) < 1:
            return math.inf
        r = lam * lam
        return gamma**2 * sigma2 * (1 + r) / (1 - r) ** 3
    n = np.arange(1, t + 1, dtype=np.float64)
    return float(gamma**2 * sigma2 * np.sum(n**2 * np.float64(lam) ** (2 * (n - 1))))


def scalar_state_variance(lam: float, t: int | None = None, sigma2: float = 1.0,
                          gamma: float = 1.0) -> float:
    """E[h_t^2] of the same recurrence (the limit when ``t`` is None)."""
    r = lam * lam
    if t is None:
        return gamma**2 * sigma2 / (1 - r) if r < 1 else math.inf
    n = np.arange(0, t + 1, dtype=np.float64)
    return float(gamma**2 * sigma2 * np.sum(np.float64(r) ** n))


def lru_nu_sensitivity(r: float, t: int | None = None, sigma2: float = 1.0) -> float:
    """E|d h_t / d nu_log|^2 of one LRU unit with |lambda| = r, gamma = sqrt(1 - r^2), driven by
    white noise of variance sigma2 (complex or real: the cross terms vanish either way):
    r^2 log(r)^2 (1 - r^2) sum_{n=1..t} n^2 r^(2(n-1)) sigma2, whose limit
    r^2 log(r)^2 (1 + r^2) / (1 - r^2)^2 sigma2 tends to sigma2 / 2 as r -> 1."""
    return r * r * math.log(r) ** 2 * scalar_sensitivity_variance(
        r, t, sigma2, gamma=math.sqrt(1 - r * r))


def _theta_entries(cell: str, hidden: int) -> int:
    """Entries of the largest parameter measured on its own (``_model``'s theta)."""
    return {"linear": 1, "rnn": hidden * hidden, "lstm": 4 * hidden * hidden}.get(cell, hidden)


def curse_bytes(cells, steps: int, batch: int, hidden: int, probes: int) -> int:
    """Peak bytes of ``curse_of_memory`` (estimate, arithmetic only, as
    seqbench.dynamics.records.dynamics_bytes): the white noise and the norms (S B, float32 and
    float64), plus the largest of the models, measured one at a time: its parameters (the module
    and the map's copies), the trajectory built as a list then stacked (twice S B (D + H), D = 2H
    the widest state), the directions over theta (every entry up to SENSITIVITY_EXACT_MAX, else
    ``probes``) and their state tangents with the step's intermediates (``WORK_FACTOR`` numbers
    per direction, sequence and state unit, counted as float64)."""
    from seqbench import memory as mem
    from seqbench.dynamics.records import WORK_FACTOR

    S, B = int(steps), int(batch)
    largest = 0
    for cell in cells:
        H = 1 if cell == "linear" else int(hidden)
        D = 2 * H
        P = _theta_entries(cell, H)
        n_dir = P if P <= M.SENSITIVITY_EXACT_MAX else int(probes)
        model = 2 * mem.param_bytes(H, 1, 1, 1) // mem.PARAM_COPIES
        trajectory = 2 * 4 * S * B * (D + H)
        directions = 4 * n_dir * P + 8 * n_dir * B * D * WORK_FACTOR
        largest = max(largest, model + trajectory + directions)
    return mem.BASE_BYTES + 4 * S * B + 8 * S * B + largest


def check_curse(cells, steps: int, batch: int, hidden: int, probes: int) -> None:
    """Refuse, in one line, a scan whose estimate (``curse_bytes``) exceeds the memory limit
    (seqbench.memory: MemAvailable, or SEQBENCH_MEMORY_LIMIT_GB)."""
    from seqbench import memory as mem

    limit = mem.available_bytes()
    if limit is None:
        return
    need = curse_bytes(cells, steps, batch, hidden, probes)
    if need > limit:
        raise ConfigError(
            f"this curse-of-memory scan (steps {steps}, batch {batch}, hidden {hidden}, "
            f"{probes} probes) needs about {mem.gb(need)} of memory (estimate), more than the "
            f"limit of {mem.gb(limit)} ({mem.limit_text()}); lower --steps, --batch, --hidden "
            "or --probes")


def _model(cell: str, memory: float, hidden: int, seed: int) -> tuple[HandRNN, tuple[str, ...]]:
    """A one-layer stack of ``cell`` with memory ``memory`` (see the module docstring) and the
    parameters theta measured, each on its own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeding.derive_seed(seed, "init"))
        if cell == "linear":
            rnn = HandRNN("rnn", 1, 1, 1, "linear")
        else:
            rnn = HandRNN(cell, 1, hidden, 1)
        with torch.no_grad():
            if cell == "linear":
                rnn.weight_ih_l0.fill_(1.0)
                rnn.weight_hh_l0.fill_(memory)
                rnn.bias_ih_l0.zero_()
                rnn.bias_hh_l0.zero_()
                return rnn, ("weight_hh",)
            if cell == "rnn":
                q = torch.nn.init.orthogonal_(torch.empty(hidden, hidden))
                rnn.weight_hh_l0.copy_(memory * q)
                rnn.bias_ih_l0.zero_()
                rnn.bias_hh_l0.zero_()
                return rnn, ("weight_hh",)
            if cell == "lstm":
                H = hidden
                rnn.bias_ih_l0[H : 2 * H].fill_(math.log(memory / (1 - memory)))  # gates i, f, g, o
                rnn.bias_hh_l0[H : 2 * H].zero_()
                return rnn, ("weight_hh",)
            if cell == "lru":
                # |lambda| = memory for every unit: nu_log = log(-log r); gamma at its init
                rnn.nu_log_l0.fill_(math.log(-math.log(memory)))
                rnn.gamma_log_l0.fill_(0.5 * math.log1p(-memory * memory))
                return rnn, ("nu_log", "theta_log")
    raise ConfigError(f"unknown curse-of-memory model {cell!r}; allowed: {', '.join(CURSE_CELLS)}")


def curse_of_memory(memories=(0.5, 0.9, 0.99), cells=CURSE_CELLS, steps: int = 1000,
                    batch: int = 64, hidden: int = 16, seed: int = 0, probes: int = 16
                    ) -> pd.DataFrame:
    """||d h_T / d theta||_F (root mean square over ``batch`` white-noise sequences of ``steps``
    steps, T = steps - 1) for each cell, memory m in (0, 1) and parameter: one row each, with
    the state's root-mean-square size ``state_rms`` and, for ``linear`` and the lru's nu_log,
    the closed form (``theory``, the square root of the variance)."""
    for m in memories:
        if not 0 < m < 1:
            raise ConfigError(f"a memory must lie in (0, 1), got {m}")
    x = torch.randn(steps, batch, 1, generator=seeding.generator(seed, "dynamics"))
    rows = []
    for cell in cells:
        for memory in memories:
            rnn, params = _model(cell, float(memory), hidden, seed)
            m = layer_maps(rnn, batch, x)[0]
            states, _ = run_layer(m, x)
            h = states[-1, :, : m.h_width()].double()
            state_rms = float(torch.sqrt(h.pow(2).sum(-1).mean()))
            for name in params:
                gen = seeding.generator(seed, "dynamics-directions")
                se = M.sensitivity(m, x, probes, gen, params=(name,))
                last = se.norms[-1]
                theory = float("nan")
                if cell == "linear":
                    theory = math.sqrt(scalar_sensitivity_variance(memory, steps - 1))
                elif cell == "lru" and name == "nu_log":
                    drive = float((m.params["B_re"] ** 2 + m.params["B_im"] ** 2).sum())
                    theory = math.sqrt(lru_nu_sensitivity(memory, steps - 1) * drive)
                rows.append({"cell": cell, "memory": float(memory), "param": name,
                             "steps": steps, "batch": batch,
                             "hidden": 1 if cell == "linear" else hidden,
                             "value": float(np.sqrt(np.mean(last**2))),
                             "value_median": float(np.median(last)), "state_rms": state_rms,
                             "theory": theory, "exact": se.exact, "probes": se.probes,
                             "seed": seed})
    return pd.DataFrame(rows)
