"""Contrastive loss (Hadsell, Chopra, LeCun 2006, "Dimensionality reduction by learning
an invariant mapping") on pairs: same-scenario pairs are pulled together, other pairs
pushed beyond a margin, and ignored once they are beyond it."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from trafficsiam.losses.base import PairLoss, check_positive, squared_distances

# sqrt'(d^2) = 1 / (2 d) is infinite at d = 0 (a negative pair with identical
# embeddings): the distance is taken from d^2 floored here (|gradient| <= 5e3).
_MIN_SQUARED_DISTANCE = 1e-8


class ContrastiveLoss(PairLoss):
    """L = y d^2 + (1 - y) max(margin - d, 0)^2, d = Euclidean distance, y = 1 for a
    same-scenario pair.

    The default margin 1.0 is about a third of the sigmoid cube's diagonal (sqrt(8) for
    N = 8): far enough to keep scenarios apart, reachable by every pair.
    """

    name: ClassVar[str] = "contrastive"

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = check_positive("loss.margin", margin, "1.0")

    def per_pair(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        d2 = squared_distances(x1, x2)
        d = d2.clamp_min(_MIN_SQUARED_DISTANCE).sqrt()
        return same * d2 + (1.0 - same) * (self.margin - d).clamp_min(0.0).pow(2)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, margin={self.margin:g}"
