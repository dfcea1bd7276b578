"""Gradient norm against time lag: ||dL/dh_t|| for every lag k = t* - t.

The loss L is the task's loss at its query step t* alone (adding: the last step; delayed recall:
the cue; copy: the first recall step), summed over the probe batch so that each sequence's
gradient is its own (not divided by the batch size). For every lag k = 0 .. t* we report the batch
mean and median of the per-sequence norms ||dL/dh_{t*-k}|| (and ||dL/dc_{t*-k}|| for LSTM), for
every layer. This is the quantity Arjovsky et al. (2016, fig. 4) plotted; see docs/references.md
section 5. When the batch has a mask (seqbench.tasks.base) and the position t* is masked out for
some sequences, those have no loss at t*: L sums over the others, and the statistics are theirs.

How it is measured:

- ``hand`` cells: one backward pass from L to the initial state, with the weights held constant,
  records ||dL/dh_t|| (and ||dL/dc_t||) for every t and layer as it goes (``HandRNN``'s
  ``grad_norms``): the pass through time computes every dL/dh_t anyway, and no weight gradient is
  computed. Its cost is about that of a training step's backward without the weight gradients.
- ``builtin`` cells (fused cuDNN / oneDNN kernels expose only the gradient of the *initial* state):
  each layer is run chunk by chunk through the same fused kernel, split after each measured step
  t = t* - k; a zero probe is added to the state handed to the next chunk and to that step's output
  (the same value h_t, used twice), so its gradient is the total dL/dh_t, exactly. Lags are a
  log-spaced set (``builtin_lags``) so that the chunks stay few and the kernel stays fast.

Summaries per curve: the decay factor per step is exp(slope) of a least-squares line through
log(norm) against lag, over the lags whose norm is well above float32 underflow (``FIT_FLOOR``,
about 1.2e-32, where flushed denormals start to freeze the backward pass); norms that underflowed
(below the smallest normal float32, ``UNDERFLOW``: exact zeros and denormals) are kept in the
data as they are, flagged ``underflow``, and never fitted.
The gradient horizon is the smallest lag whose norm falls below 1e-6 of the lag-0 norm (empty
when it never does within the sequence).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from seqbench.cells.stack import HandRNN, builtin_layers
from seqbench.model import SequenceModel
from seqbench.tasks import Batch, Task

#: the smallest normal float32: a norm below it has underflowed (to 0, or to a denormal that has
#: lost its precision) and is reported as underflow, never as a value
UNDERFLOW = float(np.finfo(np.float32).tiny)
#: norms at or below this are not fitted: 1e6 x the smallest normal float32 (1.18e-38, so about
#: 1.2e-32). Below it the backward pass is no longer exact: with denormals flushed to zero
#: (seqbench.denormals, as every run does) a product of the gradient and a Jacobian entry under
#: 1e-6 becomes 0, so a component stops changing and the norm can settle on a constant floor
#: (measured: coRNN at initialization, adding T = 500, freezes at 1.65e-35 from lag ~275, and
#: the fit through that floor gave x0.85 per step where the curve above it falls x0.73; with
#: denormals kept the same curve goes on falling, to 5.9e-41 at lag 300). Exact zeros and
#: denormals (underflow) are below it too.
FIT_FLOOR = 1e6 * UNDERFLOW
#: the gradient horizon is the first lag whose norm is below this fraction of the lag-0 norm
HORIZON_FRACTION = 1e-6


@dataclass
class LagCurve:
    """Per-lag gradient statistics of one layer (arrays aligned with ``lags``)."""

    layer: int
    lags: np.ndarray  # (K,) int, increasing, starts at 0
    grad_norm: np.ndarray  # (K,) batch mean of ||dL/dh_{t*-k}||
    grad_norm_median: np.ndarray  # (K,)
    cell_grad_norm: np.ndarray | None = None  # (K,) LSTM: batch mean of ||dL/dc_{t*-k}||
    cell_grad_norm_median: np.ndarray | None = None

    def decay_factor(self) -> float:
        return decay_factor(self.lags, self.grad_norm)

    def horizon(self) -> int | None:
        return gradient_horizon(self.lags, self.grad_norm)


def decay_factor(lags: np.ndarray, norms: np.ndarray) -> float:
    """exp(slope) of log(norm) against lag, fitted where norm > FIT_FLOOR; NaN if < 2 points."""
    lags = np.asarray(lags, dtype=np.float64)
    norms = np.asarray(norms, dtype=np.float64)
    ok = np.isfinite(norms) & (norms > FIT_FLOOR)
    if ok.sum() < 2 or np.ptp(lags[ok]) == 0:
        return float("nan")
    slope = np.polyfit(lags[ok], np.log(norms[ok]), 1)[0]
    return float(math.exp(slope))


def horizon_bracket(lags: np.ndarray, norms: np.ndarray) -> tuple[int, int] | None:
    """(lo, hi): the first norm below HORIZON_FRACTION x the lag-0 norm is at a lag in [lo, hi].

    hi is the gradient horizon; lo is one past the measured lag before it. A probe that measures
    every lag (the hand cells) gives lo == hi; the built-in modules' probe measures about 32
    log-spaced lags, so its horizon is only known to lie in the bracket. None if never below."""
    hi = gradient_horizon(lags, norms)
    if hi is None:
        return None
    lags = np.asarray(lags)
    before = lags[lags < hi]
    return (int(before.max()) + 1 if len(before) else hi), hi


def gradient_horizon(lags: np.ndarray, norms: np.ndarray) -> int | None:
    """Smallest lag whose norm is below HORIZON_FRACTION x the lag-0 norm; None if none is."""
    lags = np.asarray(lags)
    norms = np.asarray(norms, dtype=np.float64)
    if len(norms) == 0 or lags[0] != 0 or not norms[0] > 0:
        return None
    below = np.nonzero(norms < HORIZON_FRACTION * norms[0])[0]
    return int(lags[below[0]]) if len(below) else None


def builtin_lags(query_step: int, n: int = 32) -> np.ndarray:
    """About ``n`` log-spaced lags in [0, query_step], always including 0, 1 and query_step."""
    if query_step <= n:
        return np.arange(query_step + 1)
    inner = np.unique(np.round(np.geomspace(1, query_step, n - 1)).astype(int))
    return np.concatenate([[0], inner])


def _per_sequence_norms(grad: Tensor) -> Tensor:
    """grad: (K, B, H) -> (K, B) norms, taken in float64 (squares of float32 gradients near
    1e-20 would underflow in float32)."""
    return torch.linalg.vector_norm(grad, dim=-1, dtype=torch.float64)


def _batch_stats(norms: Tensor, counted: Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(K, B) per-sequence norms in time order -> batch mean and median, each (K,), in lag order
    (reversed); over the ``counted`` sequences only when a mask leaves some out at t*."""
    norms = norms.flip(0)
    if counted is not None:
        norms = norms[:, counted]
        if norms.shape[1] == 0:  # no sequence counted at t*: nothing was measured
            nan = np.full(norms.shape[0], np.nan)
            return nan, nan.copy()
    return norms.mean(1).cpu().numpy(), norms.median(1).values.cpu().numpy()


def _counted_at_query(task: Task, batch: Batch, seq_len: int) -> Tensor | None:
    """(B,) bool: the sequences whose readout position at t* counts (None: all of them)."""
    if batch.mask is None:
        return None
    return batch.mask[task.query_step(seq_len) - task.readout_steps(seq_len).start]


def _query_loss(model: SequenceModel, task: Task, batch: Batch, seq_len: int, h_query: Tensor) -> Tensor:
    """The task's loss at t* from the top layer's h_{t*} (B, H), summed over the batch (over the
    sequences whose position t* counts, when the batch has a mask: the others have no loss)."""
    t_query = task.query_step(seq_len)
    r = t_query - task.readout_steps(seq_len).start
    logits = model.readout(h_query).unsqueeze(0)  # (1, B, out)
    counted = _counted_at_query(task, batch, seq_len)
    if counted is None:
        return task.loss(logits, batch.targets[r : r + 1]) * h_query.shape[0]
    if not counted.any():  # nothing to differentiate: every gradient is zero
        return logits.sum() * 0.0
    return task.loss(logits, batch.targets[r : r + 1], counted.unsqueeze(0)) * int(counted.sum())


def _curves(layer_norms: list[dict[str, Tensor]], lags: np.ndarray,
            counted: Tensor | None = None) -> list[LagCurve]:
    """One curve per layer from its (K, B) per-sequence norms of dL/dh (and dL/dc), time order;
    the batch statistics over the ``counted`` sequences only, when given."""
    curves = []
    for layer, norms in enumerate(layer_norms):
        curve = LagCurve(layer, lags, *_batch_stats(norms["h"], counted))
        if "c" in norms:
            curve.cell_grad_norm, curve.cell_grad_norm_median = _batch_stats(norms["c"], counted)
        curves.append(curve)
    return curves


def probe_hand(model: SequenceModel, task: Task, batch: Batch, seq_len: int) -> list[LagCurve]:
    """Every lag 0..t* from one backward pass that records the norms as it goes."""
    rnn = model.rnn
    assert isinstance(rnn, HandRNN)
    t_query = task.query_step(seq_len)
    x = batch.inputs[: t_query + 1]  # steps after t* cannot change the loss at t*
    S, B, _ = x.shape
    # h (what the curves are), and the LSTM's c; a cell's other states are not recorded
    keys = [k for k in rnn.state_names if k in ("h", "c")]
    norms = [{k: torch.zeros(S, B, dtype=torch.float64, device=x.device) for k in keys}
             for _ in range(rnn.num_layers)]
    # the initial states are what the loss is differentiated by; the weights are constants here
    hx = tuple(s.requires_grad_() for s in rnn.initial_state(B, x))
    weights = {name: p.detach() for name, p in rnn.named_parameters()}
    out = functional_call(rnn, weights, (x, hx if len(hx) > 1 else hx[0]),
                          {"grad_norms": norms})[0]
    loss = _query_loss(model, task, batch, seq_len, out[t_query])
    torch.autograd.grad(loss, hx, allow_unused=True)
    # row t holds ||dL/dh_t||; lag k = t* - t (the curves are reversed into lag order)
    return _curves(norms, np.arange(t_query + 1), _counted_at_query(task, batch, seq_len))


@torch.no_grad()
def _lstm_dh_dc(params: dict[str, Tensor], x_t: Tensor, h_prev: Tensor, c_t: Tensor) -> Tensor:
    """o_t * (1 - tanh(c_t)^2): the local derivative of h_t = o_t tanh(c_t) with respect to c_t,
    with the output gate recomputed from the step's input and previous state (gates i, f, g, o)."""
    H = c_t.shape[-1]
    w_ih, w_hh = params["weight_ih_l0"][3 * H :], params["weight_hh_l0"][3 * H :]
    pre = x_t @ w_ih.t() + h_prev @ w_hh.t()
    if "bias_ih_l0" in params:
        pre = pre + params["bias_ih_l0"][3 * H :] + params["bias_hh_l0"][3 * H :]
    return torch.sigmoid(pre) * (1 - torch.tanh(c_t) ** 2)


def probe_builtin(model: SequenceModel, task: Task, batch: Batch, seq_len: int,
                  lags: np.ndarray | None = None) -> list[LagCurve]:
    """Exact dL/dh_t at the given lags through the fused built-in kernel, chunk by chunk."""
    rnn = model.rnn
    assert isinstance(rnn, nn.RNNBase)
    lstm = rnn.mode == "LSTM"
    t_query = task.query_step(seq_len)
    lags = builtin_lags(t_query) if lags is None else np.unique(np.asarray(lags))
    if lags[0] != 0 or lags[-1] > t_query:
        raise ValueError(f"lags must start at 0 and end at most at t* = {t_query}")
    x = batch.inputs[: t_query + 1]
    B, H = x.shape[1], rnn.hidden_size
    residual = model.cell_config.residual
    ends = sorted(t_query - int(k) for k in lags)  # each chunk ends at a measured step
    keys = ("h", "c") if lstm else ("h",)
    probes = [
        {k: torch.zeros(len(ends), B, H, device=x.device, dtype=x.dtype, requires_grad=True)
         for k in keys}
        for _ in range(rnn.num_layers)
    ]
    local = []  # LSTM: dh_t/dc_t = o_t * (1 - tanh(c_t)^2) at each measured step, per layer
    layer_input = x
    for layer, (module, params) in enumerate(builtin_layers(rnn)):
        zeros = x.new_zeros(1, B, H)
        state = (zeros, zeros) if lstm else zeros
        outputs, start, dh_dc = [], 0, []
        for i, end in enumerate(ends):
            h_before = state[0] if lstm else state
            y, state = functional_call(module, params, (layer_input[start : end + 1], state))
            p = probes[layer]
            # h_t = h_t + P: the same probe on the output at t and on the state carried to t+1
            if lstm:
                h_prev = y[-2] if len(y) > 1 else h_before[0]
                dh_dc.append(_lstm_dh_dc(params, layer_input[end], h_prev, state[1][0]))
                state = (state[0] + p["h"][i], state[1] + p["c"][i])
            else:
                state = state + p["h"][i]
            outputs += [y[:-1], y[-1:] + p["h"][i]]
            start = end + 1
        out = torch.cat(outputs)
        layer_input = out + layer_input if residual and layer > 0 else out
        if lstm:
            local.append(torch.stack(dh_dc))
    loss = _query_loss(model, task, batch, seq_len, layer_input[t_query])
    flat = [p[k] for p in probes for k in keys]
    grads = torch.autograd.grad(loss, flat)
    layer_norms = []
    for layer in range(rnn.num_layers):
        g = dict(zip(keys, grads[layer * len(keys) : (layer + 1) * len(keys)]))
        if lstm:
            # The c probe sits after the kernel has used c_t for h_t, so it sees only the path
            # c_t -> c_{t+1}; add the path c_t -> h_t: dL/dh_t * o_t * (1 - tanh(c_t)^2).
            g["c"] = g["c"] + g["h"] * local[layer]
        layer_norms.append({k: _per_sequence_norms(v) for k, v in g.items()})
    # chunk i ends at step ends[i] = t* - lag: the norms are reversed into increasing lags
    return _curves(layer_norms, np.asarray(sorted(lags)), _counted_at_query(task, batch, seq_len))


def probe(model: SequenceModel, task: Task, batch: Batch, seq_len: int) -> list[LagCurve]:
    """Gradient norm against lag for every layer, by the method the implementation allows.

    The model's parameters, their ``.grad`` and its buffers are left as they were, so probing
    during training does not change the run.
    """
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    try:
        if isinstance(model.rnn, HandRNN):
            return probe_hand(model, task, batch, seq_len)
        return probe_builtin(model, task, batch, seq_len)
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
