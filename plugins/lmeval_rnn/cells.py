"""The networks: d2l's recurrent cell with explicit tensors, and torch's GRU and LSTM.

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


class ScratchRNN(nn.Module):
    """d2l 8.5: ``H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)``, stacked ``layers`` deep.

    The parameters are explicit tensors named and initialised as d2l does
    (weights normal * 0.01, biases zero). With one-hot input (``one_hot=True``)
    ``X_t W_xh`` is the row of ``W_xh`` for the token: the same product,
    without building the one-hot matrix.
    """

    def __init__(self, inputs: int, hidden: int, layers: int, dropout: float, one_hot: bool):
        super().__init__()
        self.one_hot = one_hot
        sizes = [inputs] + [hidden] * (layers - 1)
        self.W_xh = nn.ParameterList([nn.Parameter(torch.randn(n, hidden) * 0.01) for n in sizes])
        self.W_hh = nn.ParameterList(
            [nn.Parameter(torch.randn(hidden, hidden) * 0.01) for _ in sizes]
        )
        self.b_h = nn.ParameterList([nn.Parameter(torch.zeros(hidden)) for _ in sizes])
        self.hidden = hidden
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None):
        steps, batch = x.shape[0], x.shape[1]
        if state is None:
            state = x.new_zeros((len(self.W_hh), batch, self.hidden), dtype=self.b_h[0].dtype)
        finals = []
        out = x
        for layer, (w_xh, w_hh, b_h) in enumerate(zip(self.W_xh, self.W_hh, self.b_h, strict=True)):
            if layer == 0 and self.one_hot:
                a = F.embedding(x, w_xh) + b_h
            else:
                if layer > 0:
                    out = self.drop(out)
                a = torch.addmm(b_h, out.reshape(steps * batch, -1), w_xh)
                a = a.view(steps, batch, self.hidden)
            out = TanhRecurrence.apply(a.to(w_hh.dtype), state[layer], w_hh)
            finals.append(out[-1])
        return out, torch.stack(finals)


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
        else:
            kind = nn.GRU if cell == "gru" else nn.LSTM
            self.core = kind(inputs, hidden, layers, dropout=dropout if layers > 1 else 0.0)
            self.head = nn.Linear(hidden, vocab)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state=None):
        """Logits ``(T, B, V)`` for time-major ids ``x`` ``(T, B)``, and the final state."""
        if self.embed is not None:
            inputs = self.embed(x)
        elif self.cell == "rnn":
            inputs = x  # the scratch cell looks up rows of W_xh itself
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
