"""The Elman RNN (Elman 1990; PyTorch's torch.nn.RNN): h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh).

Three forms of the same function: ``step`` (the equation), ``layer`` (plain autograd, the input
projection of all steps in one product before the loop) and ``fast_layer`` (``ElmanFunction``, a
whole-sequence autograd Function with a hand-written backward; seqbench.cells.fused).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqbench.cells import triton as triton_path
from seqbench.cells.base import ACTIVATIONS, Cell, input_projection, record_grad_norm
from seqbench.cells.fused import (
    ACTIVATIONS as FUSED_ACTIVATIONS,
)
from seqbench.cells.fused import (
    WORKSPACE,
    act_backward,
    act_forward,
    bias_sum,
    check_norms,
    input_products,
    project,
    record_norms,
    split_products,
    stacked_inputs,
)


class Elman(Cell):
    """h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act one of ``nonlinearities``."""

    name = "rnn"
    nonlinearities = tuple(ACTIVATIONS)  # tanh first: the default
    recurrent_blocks = 1
    norms = ("layer", "layer_split", "batch", "batch_recurrent")
    builtin = "RNN"

    def parameter_shapes(self):
        H, I = self.hidden_size, self.input_size
        return {"weight_ih": (H, I), "weight_hh": (H, H), "bias_ih": (H,), "bias_hh": (H,)}

    def step(self, params, x_t, state):
        (h,) = state
        p = params
        h = ACTIVATIONS[self.nonlinearity](
            x_t @ p["weight_ih"].t() + p["bias_ih"] + h @ p["weight_hh"].t() + p["bias_hh"])
        return h, (h,)

    def layer(self, params, x, state, norms=None):
        (h,) = state
        p, norms_h = params, (norms or {}).get("h")
        activation = ACTIVATIONS[self.nonlinearity]
        w_hh_t = p["weight_hh"].t()
        outputs = []
        for t, xp_t in enumerate(input_projection(x, p["weight_ih"],
                                                  p["bias_ih"] + p["bias_hh"])):
            h = activation(torch.addmm(xp_t, h, w_hh_t))
            record_grad_norm(h, norms_h, t)
            outputs.append(h)
        return torch.stack(outputs), (h,)

    def fast_layer(self, params, x, state, norms=None):
        p = params
        # on CUDA, float32: the Triton kernels where available (seqbench.cells.triton)
        layer = triton_path.rnn_layer if triton_path.wanted(x) else fused_layer
        out, h = layer(x, state[0], p["weight_ih"], p["weight_hh"], p["bias_ih"],
                       p["bias_hh"], self.nonlinearity, norms_h=(norms or {}).get("h"))
        return out, (h,)

    @classmethod
    def kernel(cls, device):
        return triton_path.label(device) or super().kernel(device)


# ------------------------------------------------------------------------------------------------
# Elman RNN:  h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
# ------------------------------------------------------------------------------------------------


def _rnn_forward(activation, x, h0, w_ih, w_hh, bias, out: Tensor) -> None:
    """out <- h_t for every step."""
    act = act_forward(activation, x)
    project(x, w_ih, bias, out)
    w_hh_t = w_hh.t()
    outs = out.unbind(0)
    h = h0
    for t in range(x.shape[0]):
        h = outs[t].addmm_(h, w_hh_t)
        if act is not None:
            act(h)


class ElmanFunction(torch.autograd.Function):
    """One Elman RNN layer over a whole sequence; see the module docstring."""

    @staticmethod
    def forward(ctx, activation: str, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h):
        T, B, _ = x.shape
        out = x.new_empty(T, B, w_hh.shape[1])
        _rnn_forward(activation, x, h0, w_ih, w_hh, bias_sum(b_ih, b_hh), out)
        ctx.activation, ctx.norms_h = activation, norms_h
        ctx.save_for_backward(x, h0, w_ih, w_hh, b_ih, b_hh, out)
        return out, out[T - 1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out, g_hn):
        x, h0, w_ih, w_hh, b_ih, b_hh, out = ctx.saved_tensors
        T, B, H = out.shape
        need = ctx.needs_input_grad  # (activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)
        act_bwd = act_backward(ctx.activation)
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
            record_norms(dh_all, ctx.norms_h)
        dx = (dpre.reshape(T * B, H) @ w_ih).view(T, B, -1) if need[1] else None
        dh0 = dpre[0] @ w_hh if need[2] else None
        dw_ih = dw_hh = db_ih = db_hh = None
        if any(need[3:7]):
            hx = stacked_inputs(x, h0, b_ih is not None or b_hh is not None, y=out)
            dw_ih, dw_hh, db_ih, db_hh = split_products(input_products(dpre, hx), H,
                                                         x.shape[2], need[3:7])
            WORKSPACE.give(hx)
        WORKSPACE.give(dpre, dh_all if dh_all is not dpre else None)
        return None, dx, dh0, dw_ih, dw_hh, db_ih, db_hh, None


def fused_layer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None = None,
        b_hh: Tensor | None = None, activation: str = "tanh",
        norms_h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Elman RNN layer over a sequence: returns (outputs (T, B, H), h_T (B, H))."""
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(FUSED_ACTIVATIONS)}")
    check_norms(norms_h, x, "norms_h")
    return ElmanFunction.apply(activation, x, h0, w_ih, w_hh, b_ih, b_hh, norms_h)

