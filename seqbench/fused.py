"""Fused whole-sequence recurrent layers: one ``torch.autograd.Function`` per cell.

The plain-autograd layers in :mod:`seqbench.cells` record a graph of about ten nodes per time step,
and their backward allocates a fresh tensor for every node. The functions here compute the same
equations (PyTorch's: gate order i, f, g, o for the LSTM; r, z, n for the GRU with b_hn inside
r * (W_hn h + b_hn)) over a whole sequence of one layer, and do by hand what autograd would do:

forward
    the input projection of all steps (biases folded in) is one matrix product into a (T, B, G)
    buffer; each step then does one in-place ``addmm_`` for the recurrent product and in-place
    pointwise ops on preallocated buffers. What the backward needs is written, while it is still
    in cache, into preallocated (T, B, .) buffers (for the LSTM the local derivative factors of
    the gates, for the GRU the gates and W_hn h + b_hn); nothing else is kept.
backward
    the loop over steps does only the sequential work: dh_{t-1} = dgates_t W_hh (plus the direct
    paths) and the gate gradients, a few pointwise ops per step into preallocated buffers. The
    weight gradients dW_hh, dW_ih and the bias gradients are computed after the loop, for all
    steps at once, in one matrix product with the stacked inputs [h_{t-1}, x_t, 1]; the gradient of
    the input in one more.

Compiled steps: for float32 LSTMs on the CPU the pointwise part of each step (forward and
backward) runs in one call of seqbench.native's compiled kernel where it is available, the same
arithmetic as the torch calls here (which serve everywhere else); the matrix products stay torch
calls.

Gradient norms: optional (T, B) tensors ``norms_h`` / ``norms_c``, filled by the backward pass
with the per-sequence norms ||dL/dh_t|| / ||dL/dc_t|| of the total gradient arriving at h_t / c_t,
for every t (seqbench.probe). The backward computes those gradients anyway; it keeps them in a
pooled (T, B, H) buffer instead of a single reused one and takes all the norms in one call after
the loop, in the norms' dtype (float64 in seqbench.probe). Forward pass and results are unchanged.

Workspace: on the CPU, large fresh buffers cost more than the arithmetic done in them (the kernel
maps and zero-fills every page on first touch, about 0.6 ms per MB here; docs/references.md
section 7; seqbench.malloc), so internal (T, B, .) buffers come from a small pool of reusable
blocks (``WORKSPACE``; ``WORKSPACE.clear()`` frees it). Buffers saved for the backward are
returned to the pool by the backward; a second backward through the same graph
(``retain_graph=True``) recomputes them from the saved inputs. Tensors handed to the caller
(outputs, gradients) are always fresh.

Any device and floating dtype (float32, float64): only device-agnostic torch ops are used (on CUDA
the caching allocator replaces the pool). Double backward is not supported. Shapes: x (T, B, I);
h0, c0 (B, H); w_ih (G*H, I); w_hh (G*H, H); biases (G*H,) or None; G = 1 (rnn), 4 (lstm), 3 (gru).
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = ["ACTIVATIONS", "WORKSPACE", "gru", "lstm", "rnn"]

ACTIVATIONS = ("tanh", "relu", "leaky_relu", "elu", "linear")
#: slope of leaky_relu, as in seqbench.cells.ACTIVATIONS (F.leaky_relu's default)
LEAKY_SLOPE = 0.01

_aten = torch.ops.aten
_sigmoid_backward = _aten.sigmoid_backward.grad_input  # grad * y * (1 - y)
_tanh_backward = _aten.tanh_backward.grad_input  # grad * (1 - y^2)


def _tanh(x: Tensor, out: Tensor, minus_one: Tensor) -> Tensor:
    """out = tanh(x); on the CPU as 2 sigmoid(2x) - 1 (the same function, to within an absolute
    1 ulp of 1).

    On the CPU ``torch.tanh`` of a (64, 128) block costs 3-5x a ``sigmoid`` (a slow vectorized
    tanh), and is run on two threads, which on a busy machine waits for a free core at every step;
    the three cheap serial ops here are faster on both counts. On a GPU one kernel beats three."""
    if x.device.type != "cpu":
        return torch.tanh(x, out=out)
    torch.add(x, x, out=out)  # 2x (exact; faster than a multiply by a scalar here)
    out.sigmoid_()
    return torch.add(minus_one, out, alpha=2, out=out)


def _act_forward(name: str, like: Tensor):
    """In-place activation ``f(y)``, or None for the identity."""
    minus_one = like.new_full((), -1.0)
    return {
        "tanh": lambda y: _tanh(y, y, minus_one),
        "relu": torch.relu_,
        "leaky_relu": lambda y: torch._C._nn.leaky_relu_(y, LEAKY_SLOPE),
        "elu": torch._C._nn.elu_,  # alpha 1
        "linear": None,
    }[name]


def _act_backward(name: str):
    """``f(grad, y, out)``: out = grad * act'(pre), from the activation's *output* y; None for
    the identity."""
    return {
        "tanh": lambda g, y, out: _tanh_backward(g, y, grad_input=out),
        "relu": lambda g, y, out: _aten.threshold_backward.grad_input(g, y, 0, grad_input=out),
        "leaky_relu": lambda g, y, out: _aten.leaky_relu_backward.grad_input(
            g, y, LEAKY_SLOPE, True, grad_input=out),
        "elu": lambda g, y, out: _aten.elu_backward.grad_input(
            g, 1.0, 1.0, 1.0, True, y, grad_input=out),
        "linear": None,
    }[name]


class Workspace:
    """A pool of reusable CPU blocks for internal buffers (see the module docstring).

    ``take`` hands out the smallest free block that fits (or a new one), viewed as ``shape``;
    ``give`` returns blocks. At most ``max_free`` free blocks per dtype are kept (the smallest
    are dropped first). On other devices ``take`` is ``torch.empty``.
    """

    def __init__(self, max_free: int = 8):
        self.max_free = max_free
        self._free: dict[torch.dtype, list[Tensor]] = {}
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if like.device.type != "cpu":
            return like.new_empty(shape)
        n = math.prod(shape)
        block = None
        with self._lock:
            free = self._free.get(like.dtype, [])
            fits = [k for k, b in enumerate(free) if b.numel() >= n]
            if fits:
                block = free.pop(min(fits, key=lambda k: free[k].numel()))
        if block is None:
            block = like.new_empty(n)
        return block[:n].view(shape)

    def give(self, *buffers: Tensor | None) -> None:
        with self._lock:
            for buf in buffers:
                if buf is None or buf.device.type != "cpu":
                    continue
                block = buf._base if buf._base is not None else buf
                free = self._free.setdefault(block.dtype, [])
                if not any(b is block for b in free):
                    free.append(block)
                free.sort(key=Tensor.numel, reverse=True)
                del free[self.max_free :]

    def clear(self) -> None:
        with self._lock:
            self._free.clear()

    def nbytes(self) -> int:
        with self._lock:
            return sum(b.numel() * b.element_size() for bs in self._free.values() for b in bs)


WORKSPACE = Workspace()


def _bias_sum(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def _project(x: Tensor, w_ih: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
    """out (T, B, G) = x W_ih^T (+ bias) for all steps, one matrix product."""
    T, B, n_in = x.shape
    flat, out2 = x.reshape(T * B, n_in), out.view(T * B, -1)
    if bias is not None:
        torch.addmm(bias, flat, w_ih.t(), out=out2)
    else:
        torch.mm(flat, w_ih.t(), out=out2)
    return out


def _record_norms(grads: Tensor, norms: Tensor) -> None:
    """norms (T, B) <- the per-sequence norms of grads (T, B, H), taken in float64 (squares of
    float32 gradients near 1e-20 would underflow in float32)."""
    torch.linalg.vector_norm(grads, dim=2, dtype=norms.dtype, out=norms)


def _stacked_inputs(x: Tensor, h0: Tensor, bias: bool, y: Tensor | None = None) -> Tensor:
    """A pooled (T, B, H + I (+ 1)) buffer: row t holds [h_{t-1}, x_t (, 1)], so that one product
    with [W_hh, W_ih (, b)]^T gives every step's pre-activations, input projection and bias
    included, and one product after the loop gives dW_hh, dW_ih and the bias gradient together
    (``_input_products``). Rows 1.. of the h block are copied from the outputs ``y`` if given,
    else left for the caller's forward loop to fill in."""
    T, B, I = x.shape
    H = h0.shape[1]
    hx = WORKSPACE.take((T, B, H + I + bias), x)
    hx[0, :, :H] = h0
    if y is not None and T > 1:
        hx[1:, :, :H] = y[:-1]
    hx[:, :, H : H + I] = x
    if bias:
        hx[:, :, H + I].fill_(1)
    return hx


def _input_products(dpre: Tensor, hx: Tensor) -> Tensor:
    """sum over steps and batch of dpre_t^T [h_{t-1}, x_t (, 1)]: (G, H + I (+ 1)), one product.

    One wide product instead of separate ones for dW_hh, dW_ih and the bias: with few inputs (the
    tasks have I = 2..10) a (G, T B) x (T B, I) product is memory-bound and several times slower
    per flop than this one (measured: GRU, T=1000, 66 ms against 146 ms for the separate ones)."""
    T, B, G = dpre.shape
    return dpre.reshape(T * B, G).t() @ hx.view(T * B, -1)


def _split_products(dw: Tensor, H: int, n_in: int, need: tuple[bool, bool, bool, bool]):
    """(dW_ih, dW_hh, db_ih, db_hh) from ``_input_products``'s columns; None where not needed.
    Both biases have the same gradient (they are added to the same pre-activation)."""
    need_w_ih, need_w_hh, need_b_ih, need_b_hh = need
    dw_ih = dw[:, H : H + n_in].contiguous() if need_w_ih else None
    dw_hh = dw[:, :H].contiguous() if need_w_hh else None
    db_ih = dw[:, H + n_in].contiguous() if need_b_ih else None
    db_hh = dw[:, H + n_in].contiguous() if need_b_hh else None
    return dw_ih, dw_hh, db_ih, db_hh


# ------------------------------------------------------------------------------------------------
# Elman RNN:  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
# ------------------------------------------------------------------------------------------------


def _rnn_forward(activation, x, h0, w_ih, w_hh, bias, out: Tensor) -> None:
    """out <- h_t for every step."""
    act = _act_forward(activation, x)
    _project(x, w_ih, bias, out)
    w_hh_t = w_hh.t()
    outs = out.unbind(0)
    h = h0
    for t in range(x.shape[0]):
        h = outs[t].addmm_(h, w_hh_t)
        if act is not None:
            act(h)


class RNNFunction(torch.autograd.Function):
    """One Elman RNN layer over a whole sequence; see the module docstring."""

    @staticmethod
    def forward(ctx, activation: str, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h):
        T, B, _ = x.shape
        out = x.new_empty(T, B, w_hh.shape[1])
        _rnn_forward(activation, x, h0, w_ih, w_hh, _bias_sum(b_ih, b_hh), out)
        ctx.activation, ctx.norms_h = activation, norms_h
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        T, B, H = out.shape
        need = ctx.needs_input_grad  # (activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
        act_bwd = _act_backward(ctx.activation)
        dpre = WORKSPACE.take((T, B, H), out)
        # dh_t, the total gradient arriving at h_t: kept for every t only when its norms are asked
        # for, else one step's scratch
        if act_bwd is None:  # the identity: dpre_t = dh_t
            dh_all = dpre
        elif ctx.norms_h is not None:
            dh_all = WORKSPACE.take((T, B, H), out)
        else:
            dh_all = None
        dhs = dh_all.unbind(0) if dh_all is not None else [torch.empty_like(h0)] * T
        dpres, outs, gY = dpre.unbind(0), out.unbind(0), g_out.unbind(0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t]
            if t == T - 1:
                torch.add(gY[t], g_hn, out=dh)
            else:
                torch.addmm(gY[t], dpres[t + 1], w_hh, out=dh)
            if act_bwd is not None:
                act_bwd(dh, outs[t], dpres[t])
        if ctx.norms_h is not None:
            _record_norms(dh_all, ctx.norms_h)
        dx = (dpre.reshape(T * B, H) @ w_ih).view(T, B, -1) if need[1] else None
        dh0 = dpre[0] @ w_hh if need[2] else None
        dw_ih = dw_hh = db_ih = db_hh = None
        if any(need[3:7]):
            hx = _stacked_inputs(x, h0, b_ih is not None or b_hh is not None, y=out)
            dw_ih, dw_hh, db_ih, db_hh = _split_products(_input_products(dpre, hx), H,
                                                         x.shape[2], need[3:7])
            WORKSPACE.give(hx)
        WORKSPACE.give(dpre, dh_all if dh_all is not dpre else None)
        return None, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


# ------------------------------------------------------------------------------------------------
# LSTM (PyTorch's equations, gates i, f, g, o)
#   c_t = f * c_{t-1} + i * g        h_t = o * tanh(c_t)
# ------------------------------------------------------------------------------------------------


def _stacked_weights(w_ih: Tensor, w_hh: Tensor, bias: Tensor | None) -> Tensor:
    parts = [w_hh, w_ih] if bias is None else [w_hh, w_ih, bias.unsqueeze(1)]
    return torch.cat(parts, dim=1)


def _lstm_forward(x, h0, c0, w_ih, w_hh, bias, out: Tensor,
                  K: Tensor | None) -> tuple[Tensor, Tensor]:
    """Fills out (T, B, H) with h_t and, if given, K (T, 6, B, H) with the factors the backward
    multiplies by: [f, g i(1-i), c_{t-1} f(1-f), i (1-g^2), tanh(c) o(1-o), o (1-tanh^2(c))].
    Returns c_T and the stacked inputs [h_{t-1}, x_t, 1] (T, B, H+I+1), a pooled buffer.

    Per step the gates are computed gate-major, (4, B, H), by one batched product of the stacked
    inputs with the four gates' stacked weights, so that every pointwise op works on contiguous
    (B, H) blocks (strided slices of a (B, 4H) row cost 3x as much here)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    hx = _stacked_inputs(x, h0, bias is not None)
    w = _stacked_weights(w_ih, w_hh, bias).view(4, H, -1)
    w[2] *= 2  # g = tanh(a) = 2 sigmoid(2a) - 1: the cell gate's pre-activation, doubled (exact)
    w4 = w.transpose(1, 2)  # (4, H+I+1, H): gate k's weights, transposed
    kernels = _native_lstm(x)  # the same loop compiled (seqbench.native), or the torch calls
    loop = kernels.forward_loop if kernels is not None else _lstm_forward_loop
    return loop(hx, w4, c0.contiguous(), out, K), hx


def _lstm_forward_loop(hx: Tensor, w4: Tensor, c0: Tensor, out: Tensor, K: Tensor | None) -> Tensor:
    """The forward loop over the steps (seqbench.native's forward_loop does the same): fills the
    h block of hx's rows 1.., out and K; returns c_T. Slot 4 of the per-step buffer holds
    c_{t-1}, next to g, so that one op computes [g, c_{t-1}] i(1-i), f(1-f)."""
    T, B, n_in = hx.shape
    H = out.shape[2]
    x = out  # device and dtype for the buffers
    hx_in = [r.expand(4, B, n_in) for r in hx.unbind(0)]
    hx_h = hx[:, :, :H].unbind(0)
    outs = out.unbind(0)
    bufs = [x.new_empty(5, B, H) for _ in range(2)]  # [i, f, g, o, c_{t-1}], ping-pong
    views = [(s[:4], s[:2], *s.unbind(0), s[2::2]) for s in bufs]
    bufs[0][4] = c0
    c_last, tc = x.new_empty(B, H), x.new_empty(B, H)  # c_T; tanh(c_t)
    minus_one = x.new_full((), -1.0)
    if K is not None:  # per-step views of the factors' blocks
        k_f, k_if, k_g, k_o, k_c = (K[:, j].unbind(0) for j in (0, slice(1, 3), 3, 4, 5))
    for t in range(T):
        gates, i_f, i, f, g, o, c, g_c = views[t % 2]
        torch.bmm(hx_in[t], w4, out=gates)
        gates.sigmoid_()  # (4, B, H): one op, still below the size torch runs on two threads
        torch.add(minus_one, g, alpha=2, out=g)  # tanh(a) = 2 sigmoid(2a) - 1
        c_t = bufs[(t + 1) % 2][4] if t < T - 1 else c_last  # the next step's c_{t-1} slot
        torch.mul(f, c, out=c_t)
        c_t.addcmul_(i, g)
        _tanh(c_t, tc, minus_one)
        h_t = outs[t]
        torch.mul(o, tc, out=h_t)
        if t < T - 1:
            hx_h[t + 1].copy_(h_t)
        if K is not None:
            k_f[t].copy_(f)
            _sigmoid_backward(g_c, i_f, grad_input=k_if[t])
            _tanh_backward(i, g, grad_input=k_g[t])
            _sigmoid_backward(tc, o, grad_input=k_o[t])
            _tanh_backward(o, tc, grad_input=k_c[t])
    return c_last


def _lstm_backward_loop(g_out: Tensor, g_hn: Tensor, g_cn: Tensor, w_hh: Tensor, K: Tensor,
                        D: Tensor, dh_all: Tensor, dc_all: Tensor) -> None:
    """The backward loop over the steps (seqbench.native's backward_loop does the same): fills
    D (T, B, 5H) with [dc f, di, df, dg, do] of every step, and dh_all, dc_all with dh_t, dc_t
    when they have T rows (else they are one step's scratch)."""
    T, B, H = g_out.shape
    # per-step views, made once (a Python-level index per step costs more than it looks)
    Dv = D.view(T, B, 5, H).transpose(1, 2)  # (T, 5, B, H) view of D
    K_4, K_o, K_c = K[:, 0:4].unbind(0), K[:, 4].unbind(0), K[:, 5].unbind(0)
    D_4, D_o, D_cf = Dv[:, 0:4].unbind(0), Dv[:, 4].unbind(0), Dv[:, 0].unbind(0)
    dG, gY = D[..., H:].unbind(0), g_out.unbind(0)
    dhs = dh_all.unbind(0) if len(dh_all) == T else [dh_all[0]] * T
    dcs = dc_all.unbind(0) if len(dc_all) == T else [dc_all[0]] * T
    for t in range(T - 1, -1, -1):
        dh, dc = dhs[t], dcs[t]
        if t == T - 1:
            torch.add(gY[t], g_hn, out=dh)
            torch.addcmul(g_cn, dh, K_c[t], out=dc)
        else:
            torch.addmm(gY[t], dG[t + 1], w_hh, out=dh)
            torch.addcmul(D_cf[t + 1], dh, K_c[t], out=dc)
        torch.mul(K_4[t], dc, out=D_4[t])  # [dc f, di, df, dg] = dc * [f, Ki, Kf, Kg]
        torch.mul(dh, K_o[t], out=D_o[t])


def _native_lstm(x: Tensor):
    """seqbench.native's compiled LSTM steps for float32 on the CPU, or None (torch calls)."""
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return None
    from seqbench import native

    return native.lstm_kernels()


class LSTMFunction(torch.autograd.Function):
    """One LSTM layer over a whole sequence; see the module docstring.

    Saved: the factors K (T, 6, B, H) of ``_lstm_forward`` and the stacked inputs. A backward step
    is then: dh_t = dL/dh_t + dgates_{t+1} W_hh;  dc_t = dc_{t+1} f_{t+1} + dh_t A_t;
    [dc_t f_t, di, df, dg] = dc_t * K_t[0:4];  do = dh_t K_t[4]; and after the loop one product
    dgates^T [h_{t-1}, x_t, 1] gives dW_hh, dW_ih and the bias gradient.
    """

    @staticmethod
    def forward(ctx, save: bool, x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        out = x.new_empty(T, B, H)
        K = WORKSPACE.take((T, 6, B, H), x) if save else None
        c_n, hx = _lstm_forward(x, h0, c0, w_ih, w_hh, _bias_sum(b_ih, b_hh), out, K)
        if save:
            ctx.buffers = K, hx
        else:
            WORKSPACE.give(hx)
        ctx.norms = norms_h, norms_c
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
        return out, out[T - 1].clone(), c_n

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn, g_cn):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        T, B, n_in = x.shape
        H = w_hh.shape[1]
        buffers, ctx.buffers = getattr(ctx, "buffers", None), None
        if buffers is None:  # a second backward through this graph: recompute
            K = WORKSPACE.take((T, 6, B, H), x)
            _, hx = _lstm_forward(x, h0, c0, w_ih, w_hh, _bias_sum(b_ih, b_hh),
                                  x.new_empty(T, B, H), K)
        else:
            K, hx = buffers
        need = ctx.needs_input_grad  # (save, x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c)
        D = WORKSPACE.take((T, B, 5 * H), x)  # per step: [dc_t f_t, di, df, dg, do]
        dgates = D[..., H:]
        # dh_t, dc_t (the total gradients arriving at h_t, c_t): kept for every t only when
        # their norms are asked for, else one step's scratch
        norms_h, norms_c = ctx.norms
        dh_all = WORKSPACE.take((T, B, H), x) if norms_h is not None else None
        dc_all = WORKSPACE.take((T, B, H), x) if norms_c is not None else None
        kernels = _native_lstm(x)  # the same loop compiled (seqbench.native), or the torch calls
        loop = kernels.backward_loop if kernels is not None else _lstm_backward_loop
        loop(g_out, g_hn, g_cn, w_hh, K, D,
             dh_all if dh_all is not None else h0.new_empty(1, B, H),
             dc_all if dc_all is not None else h0.new_empty(1, B, H))
        for grads, norms in ((dh_all, norms_h), (dc_all, norms_c)):
            if norms is not None:
                _record_norms(grads, norms)
        dx = dw_ih = dw_hh = db_ih = db_hh = None
        if any(need[4:8]):
            dw_ih, dw_hh, db_ih, db_hh = _split_products(_input_products(dgates, hx), H, n_in,
                                                         need[4:8])
        if need[1]:
            dx = (dgates.reshape(T * B, 4 * H) @ w_ih).view(T, B, n_in)
        dh0 = dgates[0] @ w_hh if need[2] else None
        dc0 = D[0, :, :H].clone() if need[3] else None
        WORKSPACE.give(K, hx, D, dh_all, dc_all)
        return None, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, None, None


# ------------------------------------------------------------------------------------------------
# GRU (PyTorch's equations, gates r, z, n)
#   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))    h_t = (h_{t-1} - n) * z + n
# ------------------------------------------------------------------------------------------------


def _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, out: Tensor, save: bool):
    """Fills out with h_t; returns the buffers the backward needs (or None): the gates r, z, n
    (T, B, 3H), W_hh h_{t-1} + b_hh (T, B, 3H) and h_{t-1} - n (T, B, H)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    gates = _project(x, w_ih, b_ih, WORKSPACE.take((T, B, 3 * H), x))  # x-part; then r, z, n
    hp = WORKSPACE.take((T, B, 3 * H), x) if save else x.new_empty(1, B, 3 * H)
    hmn = WORKSPACE.take((T, B, H), x) if save else x.new_empty(1, B, H)
    w_hh_t = w_hh.t()
    minus_one = x.new_full((), -1.0)
    # per-step views, made once: [r, z] block, r, z, n of the gates; W_hh h + b_hh and its n block
    g_rz, g_r, g_z, g_n = (gates[..., k].unbind(0) for k in
                           (slice(0, 2 * H), slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)))
    hps, hp_rz, hp_n = hp.unbind(0), hp[..., : 2 * H].unbind(0), hp[..., 2 * H :].unbind(0)
    hmns, outs = hmn.unbind(0), out.unbind(0)
    h = h0
    for t in range(T):
        s = t if save else 0
        if b_hh is not None:
            torch.addmm(b_hh, h, w_hh_t, out=hps[s])
        else:
            torch.mm(h, w_hh_t, out=hps[s])
        g_rz[t].add_(hp_rz[s]).sigmoid_()
        n = g_n[t]
        _tanh(n.addcmul_(g_r[t], hp_n[s]), n, minus_one)
        torch.sub(h, n, out=hmns[s])
        h_t = outs[t]
        torch.addcmul(n, g_z[t], hmns[s], out=h_t)
        h = h_t
    if save:
        return gates, hp, hmn
    WORKSPACE.give(gates)
    return None


class GRUFunction(torch.autograd.Function):
    """One GRU layer over a whole sequence; see the module docstring."""

    @staticmethod
    def forward(ctx, save: bool, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        out = x.new_empty(T, B, H)
        ctx.buffers = _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, out, save)
        ctx.norms_h = norms_h
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        T, B, H = out.shape
        buffers, ctx.buffers = ctx.buffers, None
        if buffers is None:  # a second backward through this graph: recompute
            buffers = _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, torch.empty_like(out), True)
        gates, hp, hmn = buffers
        need = ctx.needs_input_grad  # (save, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
        # per step: [dr, dz, dhp_n, dxp_n, dh z] (pre-activation gradients; dhp_n = dxp_n * r)
        D = WORKSPACE.take((T, B, 5 * H), out)
        # dh_t, the total gradient arriving at h_t: kept for every t only when its norms are asked
        dh_all = WORKSPACE.take((T, B, H), out) if ctx.norms_h is not None else None
        dhs = dh_all.unbind(0) if dh_all is not None else [torch.empty_like(h0)] * T
        # per-step views, made once
        d_rz, d_r, d_z, d_hn, d_n, d_hz, d_hp = (D[..., k].unbind(0) for k in (
            slice(0, 2 * H), slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H),
            slice(3 * H, 4 * H), slice(4 * H, 5 * H), slice(0, 3 * H)))
        g_rz, g_r, g_z, g_n = (gates[..., k].unbind(0) for k in
                               (slice(0, 2 * H), slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)))
        hp_n, hmns, gY = hp[..., 2 * H :].unbind(0), hmn.unbind(0), g_out.unbind(0)
        for t in range(T - 1, -1, -1):
            dh = dhs[t]
            if t == T - 1:
                torch.add(gY[t], g_hn, out=dh)
            else:
                torch.add(gY[t], d_hz[t + 1], out=dh)
                dh.addmm_(d_hp[t + 1], w_hh)
            torch.mul(dh, g_z[t], out=d_hz[t])
            torch.sub(dh, d_hz[t], out=d_n[t])  # dh (1 - z)
            _tanh_backward(d_n[t], g_n[t], grad_input=d_n[t])
            torch.mul(d_n[t], g_r[t], out=d_hn[t])
            torch.mul(d_n[t], hp_n[t], out=d_r[t])
            torch.mul(dh, hmns[t], out=d_z[t])
            _sigmoid_backward(d_rz[t], g_rz[t], grad_input=d_rz[t])
        if ctx.norms_h is not None:
            _record_norms(dh_all, ctx.norms_h)
        # D[..., :4H] = [dr, dz, dhp_n, dxp_n]: rows r, z, n of the recurrent pre-activations'
        # gradient are the first three blocks, those of the input pre-activations blocks 0, 1, 3
        d4 = D[..., : 4 * H]
        n_in = x.shape[2]
        dx = dw_ih = dw_hh = db_ih = db_hh = None
        if need[1]:  # [dr, dz, dhp_n, dxp_n] [W_ir; W_iz; 0; W_in]
            w_ih4 = torch.cat([w_ih[: 2 * H], w_ih.new_zeros(H, n_in), w_ih[2 * H :]])
            dx = (d4.reshape(T * B, 4 * H) @ w_ih4).view(T, B, n_in)
        dh0 = torch.addmm(D[0, :, 4 * H :], D[0, :, : 3 * H], w_hh) if need[2] else None
        if any(need[3:7]):
            hx = _stacked_inputs(x, h0, b_ih is not None or b_hh is not None, y=out)
            dw = _input_products(d4, hx)
            WORKSPACE.give(hx)
            ih = torch.cat([dw[: 2 * H], dw[3 * H :]])  # rows r, z, n of the input side
            dw_ih, _, db_ih, _ = _split_products(ih, H, n_in, (need[3], False, need[5], False))
            _, dw_hh, _, db_hh = _split_products(dw[: 3 * H], H, n_in,
                                                 (False, need[4], False, need[6]))
        WORKSPACE.give(gates, hp, hmn, D, dh_all)
        return None, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


# ------------------------------------------------------------------------------------------------
# Entry points (the signatures of seqbench.cells' layer functions, activation by name)
# ------------------------------------------------------------------------------------------------


def _saves(*tensors: Tensor | None) -> bool:
    """Whether a backward can follow: grad mode on and some input requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _check_norms(norms: Tensor | None, x: Tensor, name: str) -> None:
    if norms is not None and (norms.shape != x.shape[:2] or not norms.is_floating_point()):
        raise ValueError(f"{name} must be a floating (T, B) = {tuple(x.shape[:2])} tensor, "
                         f"got {norms.dtype} {tuple(norms.shape)}")


def rnn(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
        b_hh: Tensor | None = None, activation: str = "tanh",
        norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN layer over a sequence: returns (outputs (T, B, H), h_T (B, H))."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    _check_norms(norms_h, x, "norms_h")
    return RNNFunction.apply(activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)


def lstm(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
         b_ih: Tensor | None = None, b_hh: Tensor | None = None, norms_h: Tensor | None = None,
         norms_c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer over a sequence: returns (outputs (T, B, H), h_T, c_T)."""
    _check_norms(norms_h, x, "norms_h")
    _check_norms(norms_c, x, "norms_c")
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return LSTMFunction.apply(_saves(*args), *args, norms_h, norms_c)


def gru(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
        b_hh: Tensor | None = None, norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer over a sequence: returns (outputs (T, B, H), h_T)."""
    _check_norms(norms_h, x, "norms_h")
    args = (x, h0, w_ih, w_hh, b_ih, b_hh)
    return GRUFunction.apply(_saves(*args), *args, norms_h)
