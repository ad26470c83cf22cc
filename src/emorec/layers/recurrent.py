"""A (bi)GRU with variational recurrent dropout, stepped in Python so the dropout is honest.

PyTorch's ``nn.GRU`` has no recurrent dropout (its ``dropout`` acts between stacked layers).
:class:`VariationalGRU` implements the GRU equations of ``nn.GRU`` (same gates, same
``reset_after`` form, same initialisation) and, in training, multiplies the previous hidden
state by one Bernoulli mask per sequence and direction, drawn once and reused at every time
step, before the recurrent matrix (Gal & Ghahramani 2016; what Keras' ``recurrent_dropout``
does)::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr (m * h_{t-1}) + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz (m * h_{t-1}) + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn (m * h_{t-1}) + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}          # the carried state itself is not dropped

Padding: on a padded step the state is frozen (``h_t = h_{t-1}``) and the output is 0, and the
backward direction reads each sequence reversed within its own length, so a clip's outputs and
final state are those it gets alone. In eval mode (or with ``recurrent_dropout=0``) it computes
exactly what ``nn.GRU`` computes with the same weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from emorec.layers.conv_block import prefix_lengths
from emorec.layers.masking import apply_time_mask, exporting_graph, lengths_from_mask, run_rnn

__all__ = ["VariationalGRU", "reverse_padded"]


def reverse_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reverse each row of ``x : [B x T x ...]`` within its real length (``mask : Bool[B x T]``).

    Padded frames stay where they are, so applying it twice gives ``x`` back.
    """
    b, t = mask.shape
    lengths = lengths_from_mask(mask)  # (B,)
    steps = torch.arange(t, device=x.device).expand(b, t)  # (B, T)
    index = torch.where(steps < lengths[:, None], lengths[:, None] - 1 - steps, steps)  # (B, T)
    index = index.view(b, t, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class VariationalGRU(nn.Module):
    """One (bi)GRU layer with variational recurrent dropout; batch-first and masked.

    ``x : [B x T x input_size]``, ``mask : Bool[B x T]`` ->
    ``(out [B x T x hidden_size * dirs], h_n [dirs x B x hidden_size])``, ``out`` zero on padded
    frames. Parameters ``weight_ih [dirs x 3H x I]``, ``weight_hh [dirs x 3H x H]``,
    ``bias_ih``/``bias_hh [dirs x 3H]`` hold the gates in ``nn.GRU``'s order (r, z, n).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        bidirectional: bool = True,
        recurrent_dropout: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bidirectional = bidirectional
        self.recurrent_dropout = recurrent_dropout
        dirs = 2 if bidirectional else 1
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(dirs, 3 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(dirs, 3 * h, h))
        self.bias_ih = nn.Parameter(torch.empty(dirs, 3 * h))
        self.bias_hh = nn.Parameter(torch.empty(dirs, 3 * h))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)  # as nn.GRU
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def dropout_mask(self, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        """The per-sequence mask ``[dirs x B x H]`` (scaled by ``1 / (1 - p)``), or ``None``
        when no recurrent dropout applies (eval mode or ``p = 0``)."""
        p = self.recurrent_dropout
        if not self.training or p == 0.0:
            return None
        keep = torch.full(
            (self.num_directions, batch, self.hidden_size),
            1.0 - p,
            dtype=like.dtype,
            device=like.device,
        )
        return torch.bernoulli(keep) / (1.0 - p)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if exporting_graph() and not self.training:
            return self._padded(x, mask)
        if (not self.training or self.recurrent_dropout == 0.0) and x.size(1) > 0:
            return self._fused(x, mask)
        return self._loop(x, mask)

    def _loop(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The GRU stepped in Python, with the recurrent dropout mask when training."""
        b, t, _ = x.shape
        h_size = self.hidden_size
        inputs = [x] if not self.bidirectional else [x, reverse_padded(x, mask)]
        xs = torch.stack(inputs)  # (D, B, T, I)
        gates_x = (
            torch.einsum("dbti,dgi->dbtg", xs, self.weight_ih) + self.bias_ih[:, None, None, :]
        )  # (D, B, T, 3H)
        drop = self.dropout_mask(b, x)  # (D, B, H) or None
        w_hh_t = self.weight_hh.transpose(1, 2)  # (D, H, 3H)
        b_hh = self.bias_hh[:, None, :]  # (D, 1, 3H)
        h = x.new_zeros(self.num_directions, b, h_size)  # (D, B, H)
        real = mask[None, :, :, None]  # (1, B, T, 1): reversal keeps real frames first
        outs = []
        for step in range(t):
            h_in = h * drop if drop is not None else h
            gates_h = torch.baddbmm(b_hh, h_in, w_hh_t)  # (D, B, 3H)
            xr, xz, xn = gates_x[:, :, step].chunk(3, dim=-1)  # (D, B, H) each
            hr, hz, hn = gates_h.chunk(3, dim=-1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h_new = n + z * (h - n)  # (1 - z) * n + z * h
            h = torch.where(real[:, :, step], h_new, h)  # frozen on padded steps
            outs.append(h)
        if not outs:
            return x.new_zeros(b, 0, h_size * self.num_directions), h
        out = torch.stack(outs, dim=2)  # (D, B, T, H)
        directions = [out[0]] if not self.bidirectional else [out[0], reverse_padded(out[1], mask)]
        out = torch.cat(directions, dim=-1)  # (B, T, D*H)
        return apply_time_mask(out, mask), h

    def _fused(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Without recurrent dropout (eval mode, or ``p = 0``) the equations are ``nn.GRU``'s: run
        its kernel on the packed real frames with this module's parameters (several times faster
        than the Python loop at inference on a CPU). A row without real frames keeps a zero
        state."""
        if prefix_lengths(mask) is None:
            return self._loop(x, mask)  # holes: the loop freezes the state on them
        params = {}
        for d in range(self.num_directions):
            suffix = "_reverse" if d else ""
            params.update(
                {
                    f"weight_ih_l0{suffix}": self.weight_ih[d],
                    f"weight_hh_l0{suffix}": self.weight_hh[d],
                    f"bias_ih_l0{suffix}": self.bias_ih[d],
                    f"bias_hh_l0{suffix}": self.bias_hh[d],
                }
            )
        out, h = run_rnn(self._kernel(), x, mask, params)  # (B, T, H*dirs), (D, B, H)
        empty = ~mask.any(dim=1)  # (B,): run_rnn ran them on one zero frame
        if empty.any():
            h = h.masked_fill(empty[None, :, None], 0.0)
        return out, h

    def _padded(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eval on padded rows with prefix masks (no packing, which graph exporters lack): each
        direction runs ``nn.GRU``'s kernel over the whole padded length; the backward one reads each
        row reversed within its length, so real frames come first and padding cannot reach them."""
        outs = []
        h0 = x.new_zeros(1, x.size(0), self.hidden_size)
        for d in range(self.num_directions):
            weights = [self.weight_ih[d], self.weight_hh[d], self.bias_ih[d], self.bias_hh[d]]
            source = x if d == 0 else reverse_padded(x, mask)
            # nn.GRU's own kernel (what its forward calls), one layer, one direction, batch first
            # (B, T, H)
            out, _ = torch._VF.gru(source, h0, weights, True, 1, 0.0, False, False, True)
            outs.append(out if d == 0 else reverse_padded(out, mask))
        out = apply_time_mask(torch.cat(outs, dim=-1), mask)  # (B, T, D*H)
        # final states: not traced
        return out, out.new_zeros(self.num_directions, x.size(0), self.hidden_size)

    def _kernel(self) -> nn.GRU:
        """An ``nn.GRU`` of this shape whose parameters are replaced at each call (kept out of
        the module tree, so the state dict and ``.to()`` see only this module's own tensors)."""
        kernel = self.__dict__.get("_gru_kernel")
        if kernel is None:
            kernel = nn.GRU(
                self.input_size,
                self.hidden_size,
                batch_first=True,
                bidirectional=self.bidirectional,
                device="meta",
            )
            self.__dict__["_gru_kernel"] = kernel
        return kernel

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, bidirectional={self.bidirectional}, "
            f"recurrent_dropout={self.recurrent_dropout}"
        )
