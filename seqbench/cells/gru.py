"""The GRU (Cho et al. 2014) in PyTorch's form (torch.nn.GRU), gates in the order r, z, n:

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h

(b_hn sits inside r * (...), as in cuDNN.) Three forms of the same function: ``step`` (the
equations), ``layer`` (plain autograd, the input projection of all steps in one product before the
loop) and ``fast_layer`` (``GRUFunction``, a whole-sequence autograd Function with a hand-written
backward).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqbench.cells import triton as triton_path
from seqbench.cells.base import Cell, input_projection, record_grad_norm
from seqbench.cells.fused import (
    WORKSPACE,
    check_norms,
    fast_tanh,
    input_products,
    project,
    record_norms,
    saves,
    sigmoid_backward,
    split_products,
    stacked_inputs,
    tanh_backward,
)


def gru_update(xp: Tensor, hp: Tensor, h: Tensor) -> Tensor:
    """h' from the input part xp = W_i x + b_i and the recurrent part hp = W_h h + b_h (B, 3H)."""
    x_r, x_z, x_n = xp.chunk(3, 1)
    h_r, h_z, h_n = hp.chunk(3, 1)
    resetgate = torch.sigmoid(x_r + h_r)
    updategate = torch.sigmoid(x_z + h_z)
    newgate = torch.tanh(x_n + resetgate * h_n)
    return newgate + updategate * (h - newgate)  # = (1 - z) * n + z * h


class GRU(Cell):
    """PyTorch's GRU (see the module docstring)."""

    name = "gru"
    recurrent_blocks = 3
    gate_bias = {"update": 1}  # z keeps the old state: chrono writes here
    norms = ("layer", "batch", "batch_recurrent")
    builtin = "GRU"

    def parameter_shapes(self):
        G, H, I = 3 * self.hidden_size, self.hidden_size, self.input_size
        return {"weight_ih": (G, I), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}

    def step(self, params, x_t, state):
        p = params
        h = gru_update(x_t @ p["weight_ih"].t() + p["bias_ih"],
                       state[0] @ p["weight_hh"].t() + p["bias_hh"], state[0])
        return h, (h,)

    def layer(self, params, x, state, norms=None):
        (h,) = state
        p, norms_h = params, (norms or {}).get("h")
        w_hh_t = p["weight_hh"].t()
        outputs = []
        for t, xp_t in enumerate(input_projection(x, p["weight_ih"], p["bias_ih"])):
            h = gru_update(xp_t, torch.addmm(p["bias_hh"], h, w_hh_t), h)
            record_grad_norm(h, norms_h, t)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def fast_layer(self, params, x, state, norms=None):
        p = params
        # on CUDA, float32: the Triton kernels where available (seqbench.cells.triton)
        layer = triton_path.gru_layer if triton_path.wanted(x) else fused_layer
        out, h = layer(x, state[0], p["weight_ih"], p["weight_hh"], p["bias_ih"],
                       p["bias_hh"], norms_h=(norms or {}).get("h"))
        return out, (h,)

    @classmethod
    def kernel(cls, device):
        return triton_path.label(device) or super().kernel(device)


# ------------------------------------------------------------------------------------------------
# GRU (PyTorch's equations, gates r, z, n)
#   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))    h_t = (h_{t-1} - n) * z + n
# ------------------------------------------------------------------------------------------------


def _gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, out: Tensor, save: bool):
    """Fills out with h_t; returns the buffers the backward needs (or None): the gates r, z, n
    (T, B, 3H), W_hh h_{t-1} + b_hh (T, B, 3H) and h_{t-1} - n (T, B, H)."""
    T, B, _ = x.shape
    H = w_hh.shape[1]
    gates = project(x, w_ih, b_ih, WORKSPACE.take((T, B, 3 * H), x))  # x-part; then r, z, n
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
        fast_tanh(n.addcmul_(g_r[t], hp_n[s]), n, minus_one)
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
            tanh_backward(d_n[t], g_n[t], grad_input=d_n[t])
            torch.mul(d_n[t], g_r[t], out=d_hn[t])
            torch.mul(d_n[t], hp_n[t], out=d_r[t])
            torch.mul(dh, hmns[t], out=d_z[t])
            sigmoid_backward(d_rz[t], g_rz[t], grad_input=d_rz[t])
        if ctx.norms_h is not None:
            record_norms(dh_all, ctx.norms_h)
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
            hx = stacked_inputs(x, h0, b_ih is not None or b_hh is not None, y=out)
            dw = input_products(d4, hx)
            WORKSPACE.give(hx)
            ih = torch.cat([dw[: 2 * H], dw[3 * H :]])  # rows r, z, n of the input side
            dw_ih, _, db_ih, _ = split_products(ih, H, n_in, (need[3], False, need[5], False))
            _, dw_hh, _, db_hh = split_products(dw[: 3 * H], H, n_in,
                                                 (False, need[4], False, need[6]))
        WORKSPACE.give(gates, hp, hmn, D, dh_all)
        return None, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


def fused_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
        b_hh: Tensor | None = None, norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """GRU layer over a sequence: returns (outputs (T, B, H), h_T)."""
    check_norms(norms_h, x, "norms_h")
    args = (x, h0, w_ih, w_hh, b_ih, b_hh)
    return GRUFunction.apply(saves(*args), *args, norms_h)
