"""Fused whole-sequence recurrent layers: what the ``torch.autograd.Function`` of each cell shares.

The Functions themselves live beside their cells' equations (``ElmanFunction`` in
seqbench.cells.elman, ``LSTMFunction`` in seqbench.cells.lstm, ``GRUFunction`` in
seqbench.cells.gru); this module holds the workspace pool and the products and activations they
have in common.

The plain-autograd layers of those cells record a graph of about ten nodes per time step,
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

ACTIVATIONS = ("tanh", "relu", "leaky_relu", "elu", "linear")
#: slope of leaky_relu, as in seqbench.cells.base.ACTIVATIONS (F.leaky_relu's default)
LEAKY_SLOPE = 0.01

_aten = torch.ops.aten
sigmoid_backward = _aten.sigmoid_backward.grad_input  # grad * y * (1 - y)
tanh_backward = _aten.tanh_backward.grad_input  # grad * (1 - y^2)


def fast_tanh(x: Tensor, out: Tensor, minus_one: Tensor) -> Tensor:
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


def act_forward(name: str, like: Tensor):
    """In-place activation ``f(y)``, or None for the identity."""
    minus_one = like.new_full((), -1.0)
    return {
        "tanh": lambda y: fast_tanh(y, y, minus_one),
        "relu": torch.relu_,
        "leaky_relu": lambda y: torch._C._nn.leaky_relu_(y, LEAKY_SLOPE),
        "elu": torch._C._nn.elu_,  # alpha 1
        "linear": None,
    }[name]


def act_backward(name: str):
    """``f(grad, y, out)``: out = grad * act'(pre), from the activation's *output* y; None for
    the identity."""
    return {
        "tanh": lambda g, y, out: tanh_backward(g, y, grad_input=out),
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


def bias_sum(b_ih: Tensor | None, b_hh: Tensor | None) -> Tensor | None:
    if b_ih is None:
        return b_hh
    return b_ih if b_hh is None else b_ih + b_hh


def project(x: Tensor, w_ih: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
    """out (T, B, G) = x W_ih^T (+ bias) for all steps, one matrix product."""
    T, B, n_in = x.shape
    flat, out2 = x.reshape(T * B, n_in), out.view(T * B, -1)
    if bias is not None:
        torch.addmm(bias, flat, w_ih.t(), out=out2)
    else:
        torch.mm(flat, w_ih.t(), out=out2)
    return out


def record_norms(grads: Tensor, norms: Tensor) -> None:
    """norms (T, B) <- the per-sequence norms of grads (T, B, H), taken in float64 (squares of
    float32 gradients near 1e-20 would underflow in float32)."""
    torch.linalg.vector_norm(grads, dim=2, dtype=norms.dtype, out=norms)


def stacked_inputs(x: Tensor, h0: Tensor, bias: bool, y: Tensor | None = None) -> Tensor:
    """A pooled (T, B, H + I (+ 1)) buffer: row t holds [h_{t-1}, x_t (, 1)], so that one product
    with [W_hh, W_ih (, b)]^T gives every step's pre-activations, input projection and bias
    included, and one product after the loop gives dW_hh, dW_ih and the bias gradient together
    (``input_products``). Rows 1.. of the h block are copied from the outputs ``y`` if given,
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


def input_products(dpre: Tensor, hx: Tensor) -> Tensor:
    """sum over steps and batch of dpre_t^T [h_{t-1}, x_t (, 1)]: (G, H + I (+ 1)), one product.

    One wide product instead of separate ones for dW_hh, dW_ih and the bias: with few inputs (the
    tasks have I = 2..10) a (G, T B) x (T B, I) product is memory-bound and several times slower
    per flop than this one (measured: GRU, T=1000, 66 ms against 146 ms for the separate ones)."""
    T, B, G = dpre.shape
    return dpre.reshape(T * B, G).t() @ hx.view(T * B, -1)


def split_products(dw: Tensor, H: int, n_in: int, need: tuple[bool, bool, bool, bool]):
    """(dW_ih, dW_hh, db_ih, db_hh) from ``input_products``'s columns; None where not needed.
    Both biases have the same gradient (they are added to the same pre-activation)."""
    need_w_ih, need_w_hh, need_b_ih, need_b_hh = need
    dw_ih = dw[:, H : H + n_in].contiguous() if need_w_ih else None
    dw_hh = dw[:, :H].contiguous() if need_w_hh else None
    db_ih = dw[:, H + n_in].contiguous() if need_b_ih else None
    db_hh = dw[:, H + n_in].contiguous() if need_b_hh else None
    return dw_ih, dw_hh, db_ih, db_hh



def saves(*tensors: Tensor | None) -> bool:
    """Whether a backward can follow: grad mode on and some input requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def check_norms(norms: Tensor | None, x: Tensor, name: str) -> None:
    if norms is not None and (norms.shape != x.shape[:2] or not norms.is_floating_point()):
        raise ValueError(f"{name} must be a floating (T, B) = {tuple(x.shape[:2])} tensor, "
                         f"got {norms.dtype} {tuple(norms.shape)}")

