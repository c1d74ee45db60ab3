"""Additive angular margin softmax (ArcFace, Deng et al. 2019)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from trafficsiam.losses.base import MarginSoftmaxLoss


class AAMSoftmaxLoss(MarginSoftmaxLoss):
    """Cross-entropy of s cos(theta_y + m) for the record's scenario y, s cos(theta_j)
    for the others; theta = angle between the embedding and a learnable scenario weight.

    Where theta_y + m would pass pi (cos(theta_y + m) stops decreasing), the target logit
    continues as s (cos theta_y - m sin m), as in the reference implementation, so the
    loss keeps pushing the record towards its own scenario.
    """

    name: ClassVar[str] = "aam-softmax"

    def __init__(self, n_classes: int, embedding_dim: int, scale: float = 16.0,
                 margin: float = 0.2) -> None:
        super().__init__(n_classes, embedding_dim, scale, margin)
        self._cos_m, self._sin_m = math.cos(margin), math.sin(margin)
        self._threshold = math.cos(math.pi - margin)
        self._fallback = math.sin(math.pi - margin) * margin

    def target_logit(self, cos: Tensor) -> Tensor:
        sin = (1.0 - cos.pow(2)).clamp_min(1e-12).sqrt()
        shifted = cos * self._cos_m - sin * self._sin_m  # cos(theta + m)
        return torch.where(cos > self._threshold, shifted, cos - self._fallback)
