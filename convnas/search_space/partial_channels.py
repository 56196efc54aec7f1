"""Partial channel connections for the DARTS supernet (PC-DARTS: Xu et al., "PC-DARTS: Partial
Channel Connections for Memory-Efficient Architecture Search", ICLR 2020).

On every edge only the first ``C // K`` channels go through the MixedOp; the others bypass it
(max-pooled on stride-2 edges), then the two parts are concatenated and the channels shuffled so
that the next edge samples other channels. Edge normalisation weights every edge of a node by
``softmax(beta)`` over the node's incoming edges; the derivation ranks edges by
``softmax(beta) * softmax(alpha)``. The edge weight multiplies the candidate weights and the
bypass, which is the same sum as weighting the edge's output but keeps no full-width tensor for
backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convnas.errors import ConfigError
from convnas.operators import attach_shared
from convnas.search_space.supernet import ArchState, MixedOp

__all__ = ["PartialEdge", "channel_shuffle", "partial_width", "shuffle_permutation"]


def partial_width(channels: int, k: int) -> int:
    """Channels that go through the MixedOp of an edge of ``channels`` channels.

    Raises:
        ConfigError: ``k`` is not an int >= 1 or leaves no channel (``channels < k``).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"must be an int >= 1, but got {k!r}", key="partial_channels")
    if channels < k:
        raise ConfigError(
            f"must be <= the narrowest edge's channels ({channels}) so that every edge keeps at "
            f"least one channel, but got {k}",
            key="partial_channels",
        )
    return channels // k


def shuffle_permutation(channels: int, groups: int) -> list[int]:
    """Source channel of every output channel of :func:`channel_shuffle`.

    With ``channels % groups == 0`` this is the ShuffleNet / PC-DARTS shuffle (channel
    ``g * (C / groups) + j`` moves to ``j * groups + g``); otherwise the same rule with groups of
    ``C // groups`` channels and the remainder dealt last.
    """
    m = max(channels // groups, 1)
    return sorted(range(channels), key=lambda c: (c % m, c // m))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``x`` (N, C, H, W) across ``groups`` groups."""
    n, c, h, w = x.shape
    if c % groups == 0:
        return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
    index = torch.tensor(shuffle_permutation(c, groups), device=x.device)
    return x.index_select(1, index)


class PartialEdge(nn.Module):
    """One PC-DARTS edge: a MixedOp on ``C // K`` channels, a bypass for the rest, a shuffle.

    Args:
        mixed: the MixedOp over candidates built for ``C // K`` channels.
        channels: the edge's channels C.
        k: the partial-channel factor K.
        stride: the edge's stride (2: the bypass is max-pooled).
        group: the key of the node's edge logits in ``state.betas``.
        index: this edge's position among the node's incoming edges.
        state: the supernet's architecture state.
    """

    _state: ArchState

    def __init__(
        self,
        mixed: MixedOp,
        *,
        channels: int,
        k: int,
        stride: int,
        group: str,
        index: int,
        state: ArchState,
    ) -> None:
        super().__init__()
        self.mixed = mixed
        self.channels, self.k, self.part = channels, k, partial_width(channels, k)
        self.group, self.index = group, index
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True) if stride == 2 else None
        attach_shared(self, "_state", state)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}, group={self.group!r}, index={self.index}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self._state
        scale = None
        if state.mode in ("weighted", "gumbel"):
            scale = F.softmax(state.betas[self.group], dim=-1)[self.index]
        y = self.mixed(x[:, : self.part], scale)
        rest = x[:, self.part :]
        if self.pool is not None:
            rest = self.pool(rest)
        if scale is not None:
            rest = rest * scale
        return channel_shuffle(torch.cat([y, rest], dim=1), self.k)
