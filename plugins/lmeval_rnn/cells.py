"""The networks: d2l's tanh cell with explicit tensors, a fused GRU, torch's LSTM.

The tanh cell and the GRU run their recurrences through autograd Functions
with hand-written backward passes (the per-step work is one matrix product;
weight gradients are one product over all steps); the LSTM is torch's, which
on the CPU already runs as one fused oneDNN primitive.

Every network maps time-major input ids ``x`` of shape ``(T, B)`` and a state
(``None`` for zeros) to logits ``(T, B, V)`` and the state after the last step,
so a long text can be fed chunk by chunk with the state carried across.

This module imports torch at import time: the plugin imports it lazily.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CELLS = ("rnn", "gru", "lstm")


class TanhRecurrence(torch.autograd.Function):
    """``H_t = tanh(A_t + H_{t-1} W_hh)`` for all steps, where ``A = X W_xh + b_h`` is given.

    The input product for every step is one matrix product outside this
    function; only the recurrence loops over time. The backward pass loops
    only over ``dH_{t-1} = (dH_t * (1 - H_t^2)) W_hh^T`` and then forms the
    gradient of ``W_hh`` as one matrix product over all steps, instead of one
    small product per step as autograd through a step loop would.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(a)
        h = h0
        for t in range(a.shape[0]):
            torch.addmm(a[t], h, w_hh, out=out[t])
            torch.tanh(out[t], out=out[t])
            h = out[t]
        ctx.save_for_backward(h0, w_hh, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        h0, w_hh, out = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        slope = torch.mul(out, out).neg_().add_(1.0)  # tanh' = 1 - H^2
        grad_a = torch.empty_like(out)
        w_t = w_hh.t()
        steps, hidden = out.shape[0], out.shape[-1]
        torch.mul(grad_out[steps - 1], slope[steps - 1], out=grad_a[steps - 1])
        for t in range(steps - 2, -1, -1):
            g = torch.addmm(grad_out[t], grad_a[t + 1], w_t)
            torch.mul(g, slope[t], out=grad_a[t])
        grad_h0 = grad_a[0] @ w_t if ctx.needs_input_grad[1] else None
        grad_w = None
        if ctx.needs_input_grad[2]:
            # sum over t of H_{t-1}^T dA_t, as one product over all steps but the first
            grad_w = torch.mm(h0.t(), grad_a[0])
            if steps > 1:
                grad_w.addmm_(out[:-1].reshape(-1, hidden).t(), grad_a[1:].reshape(-1, hidden))
        return grad_a, grad_h0, grad_w


class GRURecurrence(torch.autograd.Function):
    """torch's GRU recurrence for all steps, given the input products ``G = X W_ih^T + b_ih``.

    With ``g = H_{t-1} W_hh^T + b_hh`` split into r, z, n parts (torch's order)::

        r = sigmoid(G_r + g_r)   z = sigmoid(G_z + g_z)   n = tanh(G_n + r * g_n)
        H_t = (1 - z) * n + z * H_{t-1}

    The same numbers as ``torch.nn.GRU``; the backward pass loops only over one
    ``(B x 3H)(3H x H)`` product per step and forms the ``W_hh`` gradient as one
    product over all steps (autograd through torch's step loop makes one
    ``(H x B)(B x 3H)`` product per step, slow at small batches).
    """

    @staticmethod
    def forward(ctx, gi, h0, w_hh, b_hh):
        steps, batch, h3 = gi.shape
        hid = h3 // 3
        gh = gi.new_empty(steps, batch, h3)  # the hidden products, kept for backward
        rz = gi.new_empty(steps, batch, 2 * hid)
        n = gi.new_empty(steps, batch, hid)
        out = gi.new_empty(steps, batch, hid)
        w_t = w_hh.t()
        h = h0
        for t in range(steps):
            torch.addmm(b_hh, h, w_t, out=gh[t])
            torch.add(gi[t, :, : 2 * hid], gh[t, :, : 2 * hid], out=rz[t]).sigmoid_()
            torch.addcmul(gi[t, :, 2 * hid :], rz[t, :, :hid], gh[t, :, 2 * hid :], out=n[t])
            n[t].tanh_()
            torch.lerp(n[t], h, rz[t, :, hid:], out=out[t])
            h = out[t]
        ctx.save_for_backward(h0, w_hh, out, rz, n, gh)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        h0, w_hh, out, rz, n, gh = ctx.saved_tensors
        steps, batch, hid = out.shape
        grad_out = grad_out.contiguous()
        prev = torch.cat([h0.unsqueeze(0), out[:-1]])
        r, z = rz[..., :hid], rz[..., hid:]
        # the step-independent factors of every gradient, for all steps at once
        to_z = (prev - n) * z * (1 - z)  # dH -> d(pre-activation of z)
        to_n = (1 - z) * (1 - n * n)  # dH -> d(pre-activation of n)
        to_r = gh[..., 2 * hid :] * r * (1 - r)  # d(pre n) -> d(pre r)
        dgh = torch.empty_like(gh)
        dgi_n = torch.empty_like(n)
        dh = grad_out[steps - 1]
        for t in range(steps - 1, -1, -1):
            torch.mul(dh, to_n[t], out=dgi_n[t])
            torch.mul(dgi_n[t], r[t], out=dgh[t, :, 2 * hid :])
            torch.mul(dgi_n[t], to_r[t], out=dgh[t, :, :hid])
            torch.mul(dh, to_z[t], out=dgh[t, :, hid : 2 * hid])
            below = grad_out[t - 1] if t > 0 else torch.zeros_like(dh)
            dh = torch.addmm(below, dgh[t], w_hh).addcmul_(dh, z[t])
        dgi = torch.cat([dgh[..., : 2 * hid], dgi_n], dim=-1)
        grad_w = torch.mm(dgh.reshape(-1, 3 * hid).t(), prev.reshape(-1, hid))
        return dgi, dh, grad_w, dgh.sum((0, 1))


class _Stack(nn.Module):
    """Layers of one fused recurrence; dropout between layers; the state is ``(layers, B, H)``."""

    def __init__(self, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.layers = layers
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None):
        if state is None:
            dtype = next(self.parameters()).dtype
            state = torch.zeros(
                (self.layers, x.shape[1], self.hidden), dtype=dtype, device=x.device
            )
        finals = []
        out = x
        for layer in range(self.layers):
            if layer > 0:
                out = self.drop(out)
            out = self.layer(layer, out, state[layer])
            finals.append(out[-1])
        return out, torch.stack(finals)


class FusedGRU(_Stack):
    """``torch.nn.GRU`` (same parameters, initialisation and numbers) on :class:`GRURecurrence`.

    Training on the CPU takes the fused recurrence (with one-hot input the input
    product is a row lookup); scoring, and training on a GPU, take torch's GRU.
    """

    def __init__(self, inputs: int, hidden: int, layers: int, dropout: float, one_hot: bool):
        super().__init__(hidden, layers, dropout)
        self.one_hot = one_hot
        bound = hidden**-0.5
        for layer in range(layers):
            shapes = {
                "weight_ih": (3 * hidden, inputs if layer == 0 else hidden),
                "weight_hh": (3 * hidden, hidden),
                "bias_ih": (3 * hidden,),
                "bias_hh": (3 * hidden,),
            }
            for name, shape in shapes.items():
                weight = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                self.register_parameter(f"{name}_l{layer}", weight)

    def _weights(self, index: int) -> list[torch.Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self, f"{name}_l{index}") for name in names]

    def forward(self, x: torch.Tensor, state: torch.Tensor | None):
        if x.device.type == "cpu" and (self.training or torch.is_grad_enabled()):
            return super().forward(x, state)
        # scoring, and training on a GPU (cuDNN): torch's own GRU on the same weights,
        # the same numbers without a Python loop over the steps
        dtype = self.weight_hh_l0.dtype
        inputs = F.one_hot(x, self.weight_ih_l0.shape[1]).to(dtype) if self.one_hot else x
        if state is None:
            state = inputs.new_zeros((self.layers, x.shape[1], self.hidden), dtype=dtype)
        weights = [w for index in range(self.layers) for w in self._weights(index)]
        dropout = self.drop.p if self.training else 0.0
        return torch.gru(
            inputs, state, weights, True, self.layers, dropout, self.training, False, False
        )

    def layer(self, index: int, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        w_ih, w_hh, b_ih, b_hh = self._weights(index)
        if index == 0 and self.one_hot:
            gi = F.embedding(x, w_ih.t()) + b_ih
        else:
            gi = F.linear(x, w_ih, b_ih)
        return GRURecurrence.apply(gi.to(w_hh.dtype), h0, w_hh, b_hh)


class ScratchRNN(_Stack):
    """d2l 8.5: ``H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)``, stacked ``layers`` deep.

    The parameters are explicit tensors named and initialised as d2l does
    (weights normal * 0.01, biases zero). With one-hot input (``one_hot=True``)
    ``X_t W_xh`` is the row of ``W_xh`` for the token: the same product,
    without building the one-hot matrix.
    """

    def __init__(self, inputs: int, hidden: int, layers: int, dropout: float, one_hot: bool):
        super().__init__(hidden, layers, dropout)
        self.one_hot = one_hot
        sizes = [inputs] + [hidden] * (layers - 1)
        self.W_xh = nn.ParameterList([nn.Parameter(torch.randn(n, hidden) * 0.01) for n in sizes])
        self.W_hh = nn.ParameterList(
            [nn.Parameter(torch.randn(hidden, hidden) * 0.01) for _ in sizes]
        )
        self.b_h = nn.ParameterList([nn.Parameter(torch.zeros(hidden)) for _ in sizes])

    def layer(self, index: int, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        w_xh, w_hh, b_h = self.W_xh[index], self.W_hh[index], self.b_h[index]
        if index == 0 and self.one_hot:
            a = F.embedding(x, w_xh) + b_h
        else:
            a = torch.addmm(b_h, x.reshape(-1, x.shape[-1]), w_xh).view(*x.shape[:2], -1)
        return TanhRecurrence.apply(a.to(w_hh.dtype), h0, w_hh)


class ScratchOutput(nn.Module):
    """d2l's output layer ``O_t = H_t W_hq + b_q`` with explicit tensors."""

    def __init__(self, hidden: int, vocab: int):
        super().__init__()
        self.W_hq = nn.Parameter(torch.randn(hidden, vocab) * 0.01)
        self.b_q = nn.Parameter(torch.zeros(vocab))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.matmul(h, self.W_hq) + self.b_q


class CharNet(nn.Module):
    """Input (one-hot or embedding) -> recurrent cell -> dropout -> output layer."""

    def __init__(
        self, vocab: int, cell: str, hidden: int, layers: int, embedding: int, dropout: float
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}")
        self.vocab = vocab
        self.cell = cell
        self.embed = nn.Embedding(vocab, embedding) if embedding > 0 else None
        inputs = embedding if embedding > 0 else vocab
        if cell == "rnn":
            self.core = ScratchRNN(inputs, hidden, layers, dropout, one_hot=embedding == 0)
            self.head = ScratchOutput(hidden, vocab)
        elif cell == "gru":
            self.core = FusedGRU(inputs, hidden, layers, dropout, one_hot=embedding == 0)
            self.head = nn.Linear(hidden, vocab)
        else:
            self.core = nn.LSTM(inputs, hidden, layers, dropout=dropout if layers > 1 else 0.0)
            self.head = nn.Linear(hidden, vocab)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state=None):
        """Logits ``(T, B, V)`` for time-major ids ``x`` ``(T, B)``, and the final state."""
        if self.embed is not None:
            inputs = self.embed(x)
        elif self.cell in ("rnn", "gru"):
            inputs = x  # the fused cells look rows of their input weights up themselves
        else:
            inputs = F.one_hot(x, self.vocab).to(self.head.weight.dtype)
        out, state = self.core(inputs, state)
        return self.head(self.drop(out)), state


def detach_state(state):
    """The state cut from the graph of the batch that made it (truncated BPTT)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()
