"""Additive margin softmax (CosFace, Wang et al. 2018), the sibling of aam-softmax."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from trafficsiam.losses.base import MarginSoftmaxLoss


class AMSoftmaxLoss(MarginSoftmaxLoss):
    """Cross-entropy of s (cos theta_y - m) for the record's scenario y, s cos theta_j for
    the others; theta = angle between the embedding and a learnable scenario weight."""

    name: ClassVar[str] = "am-softmax"

    def __init__(self, n_classes: int, embedding_dim: int, scale: float = 16.0,
                 margin: float = 0.25) -> None:
        super().__init__(n_classes, embedding_dim, scale, margin)

    def target_logit(self, cos: Tensor) -> Tensor:
        return cos - self.margin
