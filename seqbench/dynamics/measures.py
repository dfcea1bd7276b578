"""The three measures of one layer's dynamics along a batch of input sequences.

All three differentiate the layer's one-step map (seqbench.dynamics.state.LayerMap) with its
parameters held fixed, by forward-mode products J v (``torch.func.jvp``, vmapped over the
directions) and, for the power iteration, reverse-mode products J^T u (``torch.func.vjp``).
Sources and the facts used: docs/references.md section 5.4.

1. **Lyapunov spectrum** (``lyapunov``), the discrete QR method (Benettin et al. 1980; the form
   Vogt et al. 2022 use for RNNs): an orthonormal frame Q_{-1} (D x k, random, from the
   "dynamics" seed stream) is pushed through every step, Z_t = J_t Q_{t-1}, and re-orthonormalized,
   Z_t = Q_t R_t; then lambda_i = (1 / n) sum_t log |R_t[i, i]| over the n steps after ``warmup``
   (natural log, per step). The k largest exponents come out in decreasing order once the frame
   has aligned; they are returned sorted per sequence. The running estimate of lambda_1 (column
   1's running mean) shows the convergence over t.
2. **Jacobian singular values** (``jacobian_products``, ``step_norms``): the singular values of
   d s_{t*} / d s_{t*-k} = J_{t*} ... J_{t*-k+1} for each lag k, ending at the task's query
   step t* (where the gradient probe reads the loss, seqbench.probe), and the spectral norm
   ||J_t||_2 at evenly spaced steps along the sequence. Exact (the full product propagated as D
   tangents, float64, torch.linalg.svdvals) when the state width D <= ``EXACT_MAX_WIDTH``;
   beyond it the ``top`` largest by subspace (power) iteration with J v and J^T u products,
   ``POWER_ITERATIONS`` rounds.
3. **Parameter sensitivity** (``sensitivity``), the "curse of memory" quantity of Zucchet &
   Orvieto (2024): ||d h_t / d theta||_F per sequence for every t, theta the layer's recurrent
   parameters (``recurrent_parameters``), by forward-mode sensitivity propagation
   u_t = J_t u_{t-1} + (d f / d theta) v. Exact (one direction per parameter entry) when theta has
   at most ``SENSITIVITY_EXACT_MAX`` entries, else the unbiased Hutchinson estimate
   ||A||_F^2 = E ||A v||^2 over ``probes`` Gaussian directions v.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from seqbench.dynamics.state import LayerMap, check_width

#: widest state whose Jacobians are formed and decomposed exactly (LSTM H = 128: D = 256)
EXACT_MAX_WIDTH = 256
#: rounds of subspace iteration for the top singular values beyond EXACT_MAX_WIDTH
POWER_ITERATIONS = 30
#: at most this many recurrent-parameter entries get one exact direction each
SENSITIVITY_EXACT_MAX = 64
#: the recurrent parameters of seqbench's cells (the "theta_rec" of the sensitivity): the weights
#: acting on the previous state. mingru and minlstm have none (their coefficients depend on x_t
#: only). A cell not listed (a plugin): every parameter of the layer.
RECURRENT_PARAMETERS = {
    "rnn": ("weight_hh",), "lstm": ("weight_hh",), "gru": ("weight_hh",),
    "indrnn": ("recurrent_weight",), "exprnn": ("weight_hh",),  # exp(A), the matrix used
    "cornn": ("weight_hy", "weight_hz"), "lru": ("nu_log", "theta_log"),  # lambda's parameters
    "mingru": (), "minlstm": (),
}


def recurrent_parameters(m: LayerMap) -> tuple[str, ...]:
    names = RECURRENT_PARAMETERS.get(m.cell.name)
    return tuple(m.params) if names is None else tuple(n for n in names if n in m.params)


def orthonormal_frame(batch: int, dim: int, k: int, generator: torch.Generator,
                      dtype: torch.dtype, device) -> Tensor:
    """(B, D, k) with orthonormal columns: the Q factor of a Gaussian matrix (Haar-distributed)."""
    z = torch.randn(batch, dim, k, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return q.to(device=device, dtype=dtype)


@dataclass
class Spectrum:
    """Lyapunov exponents of one layer (per step, natural log)."""

    layer: int
    exponents: np.ndarray  # (B, k) per sequence, decreasing
    running: np.ndarray  # (S,) batch mean of the running estimate of lambda_1 after each step
    steps: int  # steps averaged over (S - warmup)


def lyapunov(m: LayerMap, x: Tensor, k: int, generator: torch.Generator, warmup: int = 0
             ) -> tuple[Spectrum, Tensor]:
    """The k largest Lyapunov exponents of layer ``m`` driven by ``x`` (S, B, I), and the
    layer's outputs (S, B, H) for the layer above. See the module docstring."""
    S, B = x.shape[:2]
    k = check_width("the number of exponents", k, m.dim)
    warmup = min(max(int(warmup), 0), S - 1)
    q = orthonormal_frame(B, m.dim, k, generator, x.dtype, x.device)
    s = m.init
    logs = torch.zeros(B, k, dtype=torch.float64, device=x.device)
    first = torch.zeros(S, B, dtype=torch.float64, device=x.device)  # log |R_11| per step
    outs = []
    for t, x_t in enumerate(x.unbind(0)):
        z = m.pushforward(s, x_t)(q.permute(2, 0, 1))  # (k, B, D)
        with torch.no_grad():
            s, y = m.step(s, x_t)
        outs.append(y)
        q, r = torch.linalg.qr(z.permute(1, 2, 0))
        diag = torch.diagonal(r, dim1=-2, dim2=-1).abs().double()
        # log 0 (a direction the step annihilates, e.g. a relu unit that is off) is -inf: kept
        log_diag = torch.log(diag)
        first[t] = log_diag[:, 0]
        if t >= warmup:
            logs += log_diag
    n = S - warmup
    exponents = torch.sort(logs / n, dim=1, descending=True).values
    counts = torch.arange(1, S + 1, dtype=torch.float64, device=x.device) - warmup
    cum = torch.cumsum(torch.where(torch.arange(S, device=x.device).unsqueeze(1) >= warmup,
                                   first, torch.zeros_like(first)), 0)
    running = (cum / counts.clamp_min(1).unsqueeze(1)).mean(1)
    running[: warmup] = float("nan")
    return Spectrum(m.layer, exponents.cpu().numpy(), running.cpu().numpy(), n), torch.stack(outs)


# -- Jacobians ------------------------------------------------------------------------------------


@dataclass
class Product:
    """Singular values of d s_{end} / d s_{end - lag} for one lag (largest first)."""

    layer: int
    lag: int
    end: int  # the step t* the product ends at
    singular_values: np.ndarray  # (B, r)
    exact: bool


def _tangent_basis(batch: int, dim: int, dtype, device) -> Tensor:
    """(D, B, D): the D unit directions, the same for every sequence."""
    return torch.eye(dim, dtype=dtype, device=device).unsqueeze(1).expand(dim, batch, dim)


def _run_steps(m: LayerMap, s: Tensor, xs: list[Tensor]) -> Tensor:
    for x_t in xs:
        s = m.step(s, x_t)[0]
    return s


def _top_singular_values(m: LayerMap, s0: Tensor, xs: list[Tensor], top: int,
                         generator: torch.Generator) -> np.ndarray:
    """The ``top`` largest singular values of the product of the steps ``xs`` from s0, by
    subspace iteration on P^T P with P v (jvp) and P^T u (vjp) products; float64."""
    B, D = s0.shape
    fn = lambda s: _run_steps(m, s, xs)  # noqa: E731
    _, pullback = torch.func.vjp(fn, s0)
    push = torch.func.vmap(lambda v: torch.func.jvp(fn, (s0,), (v,))[1])
    pull = torch.func.vmap(lambda u: pullback(u)[0])
    v = orthonormal_frame(B, D, top, generator, s0.dtype, s0.device)  # (B, D, r)
    for _ in range(POWER_ITERATIONS):
        w = pull(push(v.permute(2, 0, 1)))  # (r, B, D): P^T P v
        v = torch.linalg.qr(w.permute(1, 2, 0).double())[0].to(s0.dtype)
    pv = push(v.permute(2, 0, 1)).permute(1, 2, 0).double()  # (B, D, r)
    return torch.linalg.svdvals(pv).cpu().numpy()


def jacobian_products(m: LayerMap, states: Tensor, x: Tensor, lags, end: int, top: int,
                      generator: torch.Generator) -> list[Product]:
    """Singular values of d s_end / d s_{end-k} for each lag k (1 <= k <= end), along the
    trajectory ``states`` (S, B, D) driven by ``x``. Exact for D <= EXACT_MAX_WIDTH (all D
    values), else the ``top`` largest."""
    B, D = states.shape[1:]
    exact = D <= EXACT_MAX_WIDTH
    products = []
    for lag in sorted({int(k) for k in lags}):
        if not 1 <= lag <= end:
            raise ValueError(f"lag {lag} is outside 1 .. {end} (the query step)")
        s0 = states[end - lag]
        xs = list(x[end - lag + 1 : end + 1].unbind(0))
        if exact:
            # the whole product as D tangents pushed through the lag steps, in float64 so that
            # singular values far below float32's range (a tanh RNN at lag 100) stay exact
            m64 = _as_float64(m)
            s = s0.double()
            basis = _tangent_basis(B, D, torch.float64, s.device)
            for x_t in xs:
                x64 = x_t.double()
                basis = m64.pushforward(s, x64)(basis)
                with torch.no_grad():
                    s = m64.step(s, x64)[0]
            sv = torch.linalg.svdvals(basis.permute(1, 2, 0)).cpu().numpy()
        else:
            sv = _top_singular_values(m, s0, xs, check_width("top", top, D), generator)
        products.append(Product(m.layer, lag, end, sv, exact))
    return products


def _as_float64(m: LayerMap) -> LayerMap:
    return LayerMap(m.layer, m.cell, {k: v.double() for k, v in m.params.items()}, m.widths,
                    m.complex_states, m.init.double())


def norm_steps(total: int, n: int) -> np.ndarray:
    """About ``n`` evenly spaced steps of 0 .. total-1, always the last."""
    if total <= n:
        return np.arange(total)
    return np.unique(np.round(np.linspace(0, total - 1, n)).astype(int))


def step_norms(m: LayerMap, states: Tensor, x: Tensor, steps: np.ndarray,
               generator: torch.Generator) -> np.ndarray:
    """||J_t||_2 (B,) at each of ``steps``: (len(steps), B). Exact for D <= EXACT_MAX_WIDTH."""
    B, D = states.shape[1:]
    out = []
    for t in steps:
        s_prev = m.init if t == 0 else states[t - 1]
        if D <= EXACT_MAX_WIDTH:
            jac = m.pushforward(s_prev, x[t])(_tangent_basis(B, D, x.dtype, x.device))
            out.append(torch.linalg.matrix_norm(jac.permute(1, 2, 0).double(), ord=2))
        else:
            out.append(torch.as_tensor(_top_singular_values(m, s_prev, [x[t]], 1, generator)[:, 0]))
    return torch.stack(out).cpu().numpy()


# -- sensitivity ------------------------------------------------------------------------------------


@dataclass
class Sensitivity:
    """||d h_t / d theta||_F per sequence and step, theta = ``params``."""

    layer: int
    params: tuple[str, ...]
    norms: np.ndarray  # (S, B)
    exact: bool
    probes: int  # directions used


def sensitivity(m: LayerMap, x: Tensor, probes: int, generator: torch.Generator,
                params: tuple[str, ...] | None = None) -> Sensitivity | None:
    """||d h_t / d theta||_F for every step t (see the module docstring); None when the layer has
    no recurrent parameter (mingru, minlstm)."""
    names = recurrent_parameters(m) if params is None else tuple(params)
    if not names:
        return None
    S, B = x.shape[:2]
    sizes = [m.params[n].numel() for n in names]
    total = sum(sizes)
    exact = total <= SENSITIVITY_EXACT_MAX
    if exact:
        flat = torch.eye(total, dtype=x.dtype, device=x.device)  # one direction per entry
    else:
        flat = torch.randn(int(probes), total, generator=generator, dtype=torch.float64
                           ).to(device=x.device, dtype=x.dtype)
    n_dir = flat.shape[0]
    dirs = {}
    for name, chunk in zip(names, flat.split(sizes, dim=1)):
        dirs[name] = chunk.reshape(n_dir, *m.params[name].shape)
    theta = {n: m.params[n] for n in names}

    def step_with(s, x_t, th):
        return m.step(s, x_t, {**m.params, **th})[0]

    def one(u, v, s, x_t):
        return torch.func.jvp(lambda s_, th: step_with(s_, x_t, th), (s, theta), (u, v))[1]

    push = torch.func.vmap(one, in_dims=(0, 0, None, None))
    u = torch.zeros(n_dir, *m.init.shape, dtype=x.dtype, device=x.device)
    s = m.init
    hw = m.h_width()
    norms = torch.empty(S, B, dtype=torch.float64, device=x.device)
    for t, x_t in enumerate(x.unbind(0)):
        u = push(u, dirs, s, x_t)
        with torch.no_grad():
            s = m.step(s, x_t)[0]
        sq = u[..., :hw].double().pow(2).sum(-1)  # (n_dir, B)
        norms[t] = torch.sqrt(sq.sum(0) if exact else sq.mean(0))
    return Sensitivity(m.layer, names, norms.cpu().numpy(), exact, n_dir)

