"""Parallel scans for the linear recurrence h_t = a_t * h_{t-1} + b_t (elementwise, h_0 given).

Two forms, both over time-major (T, ...) tensors:

- ``linear_scan(a, b, h0)``: any real or complex a_t, b_t. The step (a, b) composes associatively,
  (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2), so the recurrence is a prefix scan (Blelloch 1990).
  It is computed chunk-wise ("reduce, then scan"): the sequence is cut into chunks of ``CHUNK``
  steps; one pass over each chunk position, for all chunks at once, reduces every chunk to its
  total map h -> A h + e; the states entering the chunks are the scan of those maps (the same
  function, on a sequence ``CHUNK`` times shorter); a second pass runs each chunk from its entering
  state. Depth 2 CHUNK log_CHUNK(T) = O(log T) sequential tensor operations, about 5 T elements
  read or written. On this project's CPU (one free core; T = 1000, B = 64, N = 128, complex64,
  forward + backward, median of 5) it took 134 ms against 650 ms for an odd-even (Blelloch)
  recursion and 3.2 s for Hillis-Steele doubling under autograd, which move several times more
  memory; the plain sequential autograd loop took 126 ms: with one core, depth buys nothing.
  The backward pass is the same scan run backwards in time: with delta_t = dL/dh_t in full,
  delta_t = g_t + conj(a_{t+1}) delta_{t+1}, dL/db_t = delta_t, dL/da_t = delta_t conj(h_{t-1}),
  dL/dh_0 = conj(a_1) delta_1 (PyTorch's conjugate Wirtinger convention for complex tensors).
  It is written with the scan itself, so it is differentiable again (double backward).
- ``log_space_scan(log_a, log_b, h0)``: a_t > 0 and b_t > 0 given by their logarithms, the form of
  Heinsen (2023, "Efficient Parallelization of a Ubiquitous Sequential Computation",
  arXiv:2311.06281): with a*_t = sum_{s<=t} log a_s, h_t = exp(a*_t + logcumsumexp_t(log b_t -
  a*_t)), which minGRU/minLSTM use (Feng et al. 2024, appendix B). Heinsen puts log h_0 first among
  the values; h_0 = 0 (or any h_0 <= 0) has no logarithm, so here h_0 enters linearly and exactly
  instead, as the separate term exp(a*_t) h_0. Precision: a*_t grows like t, and h_t is the
  exponential of a difference of two such sums, so its relative error is about |a*_t| times the
  float's epsilon (the paper's method; 1e-4 in float32 when sum log a reaches -1000). The backward
  pass is that of the same recurrence in linear space (``_LogSpaceScan``).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: steps per chunk of ``linear_scan``: 32 and 64 were the fastest of 8 to 64, within 5% of each other,
#: on this project's CPU (T = 1000 and 5000, B = 64, N = 128, complex64, forward + backward); the
#: depth grows as 2 CHUNK log_CHUNK T, so the smaller
CHUNK = 32


def _scan(a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """h_t = a_t h_{t-1} + b_t for t = 0..T-1 from h_{-1} = h0 (``reverse``: h_t = a_t h_{t+1} + b_t
    from h_T = h0, t = T-1..0), without autograd. a may be an expanded (stride 0) view."""
    T = b.shape[0]
    out = torch.empty_like(b)
    n_chunks = T // CHUNK
    if n_chunks < 2:  # too short to split: the plain loop
        h = h0
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h = torch.addcmul(b[t], a[t], h, out=out[t])
        return out
    # the chunks cover the first CHUNK * n_chunks steps the recurrence takes (reverse: the last
    # ones of the sequence); the few steps left over run one by one afterwards
    rest = T - n_chunks * CHUNK
    main = slice(rest, T) if reverse else slice(0, T - rest)
    shape = (n_chunks, CHUNK) + b.shape[1:]
    a_c, b_c, out_c = a[main].view(shape), b[main].view(shape), out[main].view(shape)
    steps = range(CHUNK - 1, -1, -1) if reverse else range(CHUNK)
    # pass 1: each chunk's total map h -> A h + e, all chunks at once, one chunk position a step
    first, *others = steps
    A, e = a_c[:, first].clone(), b_c[:, first].clone()
    for k in others:
        torch.addcmul(b_c[:, k], a_c[:, k], e, out=e)
        A.mul_(a_c[:, k])
    # the state after each chunk: the same recurrence over the chunk maps (recursion: O(log T))
    after = _scan(A, e, h0, reverse)
    entering = (torch.cat([after[1:], h0.unsqueeze(0)]) if reverse
                else torch.cat([h0.unsqueeze(0), after[:-1]]))
    # pass 2: every chunk from its entering state
    h = entering
    for k in steps:
        h = torch.addcmul(b_c[:, k], a_c[:, k], h, out=out_c[:, k])
    h = after[0] if reverse else after[-1]
    for t in (range(rest - 1, -1, -1) if reverse else range(T - rest, T)):
        h = torch.addcmul(b[t], a[t], h, out=out[t])
    return out


def _scan_grads(a: Tensor, h0: Tensor, h: Tensor, grad: Tensor, reverse: bool):
    """(dL/da, dL/db, dL/dh0) of h = _scan(a, b, h0, reverse) from dL/dh = ``grad``."""
    first = -1 if reverse else 0  # the step that reads h0
    # delta runs against the recurrence: delta_t = g_t + conj(a_next_t) delta_next, a_next_t the
    # coefficient of the step after t. The last delta starts from 0, so the coefficient paired with
    # it is never used: a constant a (stride 0 in time) serves unshifted, without a copy.
    if a.stride(0) == 0:
        a_next = a[:1].conj().resolve_conj().expand_as(a)
    else:
        shifted, pad = (a[:-1] if reverse else a[1:]).conj(), torch.zeros_like(a[:1])
        a_next = torch.cat([pad, shifted] if reverse else [shifted, pad])
    delta = _LinearScan.apply(a_next, grad.contiguous(), torch.zeros_like(h0), not reverse)
    # dL/da_t = delta_t conj(h_prev_t), h_prev_t the state step t reads
    if torch.is_grad_enabled():  # create_graph: differentiable operations only
        h_prev = torch.cat([h[1:], h0.unsqueeze(0)] if reverse else [h0.unsqueeze(0), h[:-1]])
        grad_a = delta * h_prev.conj()
    else:  # written in place, without a shifted copy of h
        grad_a = torch.empty_like(delta)
        inner, outer = (slice(0, -1), slice(1, None)) if reverse else (slice(1, None), slice(0, -1))
        torch.mul(delta[inner], h[outer].conj(), out=grad_a[inner])
        torch.mul(delta[first], h0.conj(), out=grad_a[first])
    return grad_a, delta, a[first].conj() * delta[first]


class _LinearScan(torch.autograd.Function):
    """``_scan`` with its backward, the same scan backwards in time (module docstring)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor, reverse: bool) -> Tensor:
        h = _scan(a, b, h0, reverse)
        ctx.reverse = reverse
        ctx.save_for_backward(a, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, h0, h = ctx.saved_tensors
        return *_scan_grads(a, h0, h, grad, ctx.reverse), None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, reverse: bool = False) -> Tensor:
    """All h_t = a_t * h_{t-1} + b_t, (T, ...) like ``b``, from ``h0`` (the state before the first
    step, shaped like b[0]); ``a`` broadcasts to ``b`` (a constant coefficient as (N,), say). Real
    or complex, in the dtype the three promote to. ``reverse``: backwards in time, h_t = a_t h_{t+1}
    + b_t from h_T = h0. Differentiable (twice)."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), h0.dtype)
    b = b.to(dtype).contiguous()
    a = a.to(dtype).expand_as(b)
    return _LinearScan.apply(a, b, h0.to(dtype).expand_as(b[0]), reverse)


class _LogSpaceScan(torch.autograd.Function):
    """Heinsen's forward; the backward is that of the same recurrence in linear space (the same
    function, so the same gradient): one reverse ``_scan`` with a_t = exp(log a_t), instead of
    differentiating logcumsumexp (three more logcumsumexp passes: a minGRU training step at
    T = 1000, B = 64, H = 128 took 2.3 s that way on this project's CPU, 1.2 s this way)."""

    @staticmethod
    def forward(ctx, log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
        a_star = torch.cumsum(log_a, 0)  # log of the product of a_s over s <= t
        h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, 0))
        h.addcmul_(torch.exp(a_star), h0)  # h0's term, outside the logarithms: any sign, 0 too
        ctx.save_for_backward(log_a, log_b, h0, h)
        return h

    @staticmethod
    def backward(ctx, grad: Tensor):
        log_a, log_b, h0, h = ctx.saved_tensors
        a = torch.exp(log_a)
        grad_a, grad_b, grad_h0 = _scan_grads(a, h0, h, grad, False)
        return grad_a * a, grad_b * torch.exp(log_b), grad_h0  # d/dlog x = x d/dx


def log_space_scan(log_a: Tensor, log_b: Tensor, h0: Tensor | None = None) -> Tensor:
    """All h_t = a_t * h_{t-1} + b_t for positive a_t = exp(log_a_t), b_t = exp(log_b_t), both
    (T, ...), by Heinsen's log-space form along dim 0; ``h0`` (any sign, zero included; None: 0)
    enters as exp(sum log a) * h0. Differentiable (twice)."""
    log_a, log_b = torch.broadcast_tensors(log_a, log_b)
    h0 = log_b.new_zeros(()) if h0 is None else h0
    return _LogSpaceScan.apply(log_a, log_b, h0.expand_as(log_b[0]))
