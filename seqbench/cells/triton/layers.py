"""Whole-sequence autograd Functions over the per-step Triton kernels (seqbench.cells.triton).

Same signatures and results as the fused layers of seqbench.cells.elman, .lstm and .gru
(``fused_layer``): x (T, B, I); h0, c0 (B, H); w_ih (G H, I); w_hh (G H, H); biases (G H,) or
None; optional (T, B) ``norms_h`` / ``norms_c`` filled by the backward with ||dL/dh_t||,
||dL/dc_t|| per sequence. float32 only (the kernels accumulate in float32). Buffers for the
backward are kept on the graph (no workspace pool: on CUDA the caching allocator does that), so
a second backward (``retain_graph=True``) reuses them. Double backward is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqbench.cells import triton as tk
from seqbench.cells.fused import (
    ACTIVATIONS,
    WORKSPACE,
    bias_sum,
    check_norms,
    input_products,
    project,
    record_norms,
    split_products,
    stacked_inputs,
)

#: activation name -> the Elman kernels' code (seqbench.cells.triton.kernels)
ACT_CODES = {"tanh": 0, "relu": 1, "leaky_relu": 2, "elu": 3, "linear": 4}
assert set(ACT_CODES) == set(ACTIVATIONS)


class _Launch:
    """The kernels for a device, the grid and the compile-time options of one layer."""

    def __init__(self, x: Tensor, B: int, H: int):
        if x.dtype != torch.float32:
            raise TypeError(f"the Triton kernels are float32 only, got {x.dtype}")
        self.k = tk.kernels_for(x.device)
        self.interpret = x.device.type == "cpu"
        bb, bh, bk, self.num_warps = tk.blocks()
        self.grid = (triton_cdiv(B, bb), triton_cdiv(H, bh))
        tf32 = x.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        self.opts = dict(BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, PRECISION="tf32" if tf32 else "ieee")

    def __call__(self, kernel, *args, **constexprs):
        fn = getattr(self.k, kernel)[self.grid]
        # enable_fp_fusion: multiply-adds fused, said explicitly (Triton 3.9 warns when the
        # default decides, and the default changes in 3.10)
        if not self.interpret:
            fn(*args, **constexprs, **self.opts, num_warps=self.num_warps, enable_fp_fusion=True)
            return
        with tk.interpreting(True):  # as the interpreter expects while it runs
            fn(*args, **constexprs, **self.opts, num_warps=self.num_warps, enable_fp_fusion=True)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _weight_grads(need, D: Tensor, x: Tensor, h0: Tensor, out: Tensor, has_bias: bool, H: int):
    """(dW_ih, dW_hh, db_ih, db_hh) from the pre-activation gradients D (T, B, G H) of every
    step: one product with the stacked inputs [h_{t-1}, x_t, 1] (seqbench.cells.fused)."""
    if not any(need):
        return None, None, None, None
    hx = stacked_inputs(x, h0, has_bias, y=out)
    grads = split_products(input_products(D, hx), H, x.shape[2], need)
    WORKSPACE.give(hx)
    return grads


# ------------------------------------------------------------------------------------------------
# Elman RNN
# ------------------------------------------------------------------------------------------------


class TritonRNNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, activation: str, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        out = project(x.contiguous(), w_ih, bias_sum(b_ih, b_hh), x.new_empty(T, B, H))
        h = h0.contiguous()
        code = ACT_CODES[activation]
        for t in range(T):  # out[t] holds the input projection, replaced in place by h_t
            launch("rnn_forward_step", out[t], h, w, out[t], B, H, ACT=code)
            h = out[t]
        ctx.activation, ctx.norms_h = activation, norms_h
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        T, B, H = out.shape
        need = ctx.needs_input_grad  # (activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        g_out = g_out.contiguous()
        dpre, dh_all = out.new_empty(T, B, H), out.new_empty(T, B, H)
        code = ACT_CODES[ctx.activation]
        for t in range(T - 1, -1, -1):
            last = t == T - 1
            gy = g_out[t] + g_hn if last else g_out[t]
            launch("rnn_backward_step", gy, dpre[t if last else t + 1], w, out[t], dh_all[t],
                   dpre[t], B, H, ACT=code, HAS_NEXT=not last)
        if ctx.norms_h is not None:
            record_norms(dh_all, ctx.norms_h)
        dx = (dpre.view(T * B, H) @ w_ih).view(T, B, -1) if need[1] else None
        dh0 = dpre[0] @ w_hh if need[2] else None
        grads = _weight_grads(need[3:7], dpre, x, h0, out,
                              b_ih is not None or b_hh is not None, H)
        return None, dx, dh0, *grads, None


def rnn_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, activation: str = "tanh",
              norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN layer over a sequence: (outputs (T, B, H), h_T (B, H))."""
    if activation not in ACT_CODES:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACT_CODES)}")
    check_norms(norms_h, x, "norms_h")
    return TritonRNNFunction.apply(activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)


# ------------------------------------------------------------------------------------------------
# LSTM
# ------------------------------------------------------------------------------------------------


class TritonLSTMFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        # the input projection of every step; each step's kernel replaces it by the gates i, f, g, o
        gates = project(x.contiguous(), w_ih, bias_sum(b_ih, b_hh), x.new_empty(T, B, 4 * H))
        out, cs = x.new_empty(T, B, H), x.new_empty(T, B, H)
        h, c = h0.contiguous(), c0.contiguous()
        for t in range(T):
            launch("lstm_forward_step", gates[t], h, c, w, gates[t], cs[t], out[t], B, H)
            h, c = out[t], cs[t]
        ctx.norms = norms_h, norms_c
        ctx.buffers = gates, cs
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone(), cs[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn, g_cn):
        x, h0, c0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        gates, cs = ctx.buffers
        T, B, H = out.shape
        need = ctx.needs_input_grad  # (x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c)
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        g_out, g_cn, c0 = g_out.contiguous(), g_cn.contiguous(), c0.contiguous()
        D = out.new_empty(T, B, 4 * H)  # per step: [di, df, dg, do]
        dh_all, dc_all = out.new_empty(T, B, H), out.new_empty(T, B, H)
        for t in range(T - 1, -1, -1):
            last = t == T - 1
            nxt = t if last else t + 1
            gy = g_out[t] + g_hn if last else g_out[t]
            launch("lstm_backward_step", gy, D[nxt], w, gates[t], gates[nxt], cs[t],
                   cs[t - 1] if t > 0 else c0, g_cn if last else dc_all[nxt], D[t], dh_all[t],
                   dc_all[t], B, H, HAS_NEXT=not last)
        norms_h, norms_c = ctx.norms
        for grads, norms in ((dh_all, norms_h), (dc_all, norms_c)):
            if norms is not None:
                record_norms(grads, norms)
        dx = (D.view(T * B, 4 * H) @ w_ih).view(T, B, -1) if need[0] else None
        dh0 = D[0] @ w_hh if need[1] else None
        dc0 = dc_all[0] * gates[0, :, H : 2 * H] if need[2] else None
        grads = _weight_grads(need[3:7], D, x, h0, out, b_ih is not None or b_hh is not None, H)
        return dx, dh0, dc0, *grads, None, None


def lstm_layer(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Tensor | None = None, b_hh: Tensor | None = None,
               norms_h: Tensor | None = None,
               norms_c: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """LSTM layer over a sequence: (outputs (T, B, H), h_T, c_T)."""
    check_norms(norms_h, x, "norms_h")
    check_norms(norms_c, x, "norms_c")
    return TritonLSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, norms_h, norms_c)


# ------------------------------------------------------------------------------------------------
# GRU
# ------------------------------------------------------------------------------------------------


class TritonGRUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        # the input side W_ih x + b_ih of every step; each step's kernel replaces it by r, z, n
        gates = project(x.contiguous(), w_ih, b_ih, x.new_empty(T, B, 3 * H))
        hn, out = x.new_empty(T, B, H), x.new_empty(T, B, H)
        bias = b_hh.contiguous() if b_hh is not None else w
        h = h0.contiguous()
        for t in range(T):
            launch("gru_forward_step", gates[t], h, w, bias, gates[t], hn[t], out[t], B, H,
                   HAS_BIAS=b_hh is not None)
            h = out[t]
        ctx.norms_h = norms_h
        ctx.buffers = gates, hn
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        gates, hn = ctx.buffers
        T, B, H = out.shape
        n_in = x.shape[2]
        need = ctx.needs_input_grad  # (x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
        launch = _Launch(x, B, H)
        w = w_hh.contiguous()
        g_out, h0c = g_out.contiguous(), h0.contiguous()
        D = out.new_empty(T, B, 4 * H)  # per step: [dr, dz, dhn, dn]
        dh_all = out.new_empty(T, B, H)
        for t in range(T - 1, -1, -1):
            last = t == T - 1
            nxt = t if last else t + 1
            gy = g_out[t] + g_hn if last else g_out[t]
            launch("gru_backward_step", gy, D[nxt], dh_all[nxt], w, gates[t], gates[nxt], hn[t],
                   out[t - 1] if t > 0 else h0c, D[t], dh_all[t], B, H, HAS_NEXT=not last)
        if ctx.norms_h is not None:
            record_norms(dh_all, ctx.norms_h)
        dx = dw_ih = dw_hh = db_ih = db_hh = None
        if need[0]:  # [dr, dz, dhn, dn] [W_ir; W_iz; 0; W_in]
            w_ih4 = torch.cat([w_ih[: 2 * H], w_ih.new_zeros(H, n_in), w_ih[2 * H :]])
            dx = (D.view(T * B, 4 * H) @ w_ih4).view(T, B, n_in)
        dh0 = torch.addmm(dh_all[0] * gates[0, :, H : 2 * H], D[0, :, : 3 * H], w_hh) \
            if need[1] else None
        if any(need[2:6]):
            hx = stacked_inputs(x, h0, b_ih is not None or b_hh is not None, y=out)
            dw = input_products(D, hx)  # rows: dr, dz, dhn, dn
            WORKSPACE.give(hx)
            ih = torch.cat([dw[: 2 * H], dw[3 * H :]])  # rows r, z, n of the input side
            dw_ih, _, db_ih, _ = split_products(ih, H, n_in, (need[2], False, need[4], False))
            _, dw_hh, _, db_hh = split_products(dw[: 3 * H], H, n_in,
                                                 (False, need[3], False, need[5]))
        return dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


def gru_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
              b_hh: Tensor | None = None, norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer over a sequence: (outputs (T, B, H), h_T (B, H))."""
    check_norms(norms_h, x, "norms_h")
    return TritonGRUFunction.apply(x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
