"""Base class of the triplet losses and the distance helpers they share.

A loss file (one per loss, pytorch-metric-learning style) holds only its formula in
`per_triplet(d_ap, d_an)`; `TripletLoss` does the plumbing: distances from
embeddings, the mean over triplets and the empty-batch case.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

# Above this many elements in the [B, B, D] difference tensor, pairwise distances
# use the (clamped) |x|^2 + |y|^2 - 2 x.y expansion instead of the exact differences.
_DIRECT_PAIRWISE_MAX_ELEMENTS = 1 << 24


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise squared Euclidean distances ||a_i - b_i||^2 of two [T, D] tensors -> [T].

    Computed from the differences, so it is exactly 0 for identical rows and its
    gradient (2 (a - b)) is finite everywhere.
    """
    if a.shape != b.shape:
        raise ValueError(f"squared_distances: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    return (a - b).pow(2).sum(dim=-1)


def pairwise_squared_distances(x: Tensor) -> Tensor:
    """All squared Euclidean distances between the rows of a [B, D] tensor -> [B, B].

    Small inputs (B*B*D up to 2**24 elements) use the exact sum of (x_i - x_j)^2;
    larger ones the expansion |x_i|^2 + |x_j|^2 - 2 x_i.x_j, clamped at 0. Either way
    the result is >= 0, symmetric, exactly 0 on the diagonal, and has a finite
    gradient everywhere, identical rows included (no square root is taken).
    """
    if x.dim() != 2:
        raise ValueError(
            f"pairwise_squared_distances: expected a [B, D] tensor, got {tuple(x.shape)}"
        )
    b, d = x.shape
    if b * b * d <= _DIRECT_PAIRWISE_MAX_ELEMENTS:
        dist = (x.unsqueeze(1) - x.unsqueeze(0)).pow(2).sum(dim=-1)
    else:
        sq = x.pow(2).sum(dim=1)
        dist = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.T)).clamp_min(0.0)
        dist = 0.5 * (dist + dist.T)
    eye = torch.eye(b, dtype=torch.bool, device=x.device)
    return dist.masked_fill(eye, 0.0)


class TripletLoss(torch.nn.Module):
    """Loss over (anchor, positive, negative) triplets, defined on squared Euclidean distances.

    Subclasses set `name` (the registry key, `loss.name` in the config) and implement
    `per_triplet`, the formula alone. `forward` takes embeddings, `from_distances`
    takes distances (for miners that already hold a distance matrix); both return
    the mean over triplets, and 0.0 (still attached to the graph) for no triplets.
    """

    name: ClassVar[str]

    def per_triplet(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """Loss of each triplet from its anchor-positive and anchor-negative squared
        distances (both shape [T]) -> shape [T]."""
        raise NotImplementedError(f"{type(self).__name__} must implement per_triplet")

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Mean loss over the triplets given as three [T, D] embedding tensors."""
        if not (anchor.shape == positive.shape == negative.shape):
            raise ValueError(
                f"{type(self).__name__}: anchor, positive and negative shapes differ: "
                f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
            )
        if anchor.shape[0] == 0:
            return (anchor.sum() + positive.sum() + negative.sum()) * 0.0
        return self.from_distances(
            squared_distances(anchor, positive), squared_distances(anchor, negative)
        )

    def from_distances(self, d_ap: Tensor, d_an: Tensor) -> Tensor:
        """Mean of `per_triplet(d_ap, d_an)`; 0.0 (attached to the graph) when empty."""
        if d_ap.shape != d_an.shape:
            raise ValueError(
                f"{type(self).__name__}: d_ap and d_an shapes differ: "
                f"{tuple(d_ap.shape)} vs {tuple(d_an.shape)}"
            )
        if d_ap.numel() == 0:
            return (d_ap.sum() + d_an.sum()) * 0.0
        return self.per_triplet(d_ap, d_an).mean()

    def extra_repr(self) -> str:
        return f"name={self.name!r}"
