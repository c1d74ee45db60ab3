"""Hinge loss on pairs with the mean absolute distance, a common Siamese baseline."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from trafficsiam.losses.base import PairLoss, check_positive


class HingePairLoss(PairLoss):
    """L = max(margin - (1 - 2y) d, 0), d = mean |x1 - x2| over the N coordinates, y = 1
    for a same-scenario pair.

    A same-scenario pair costs margin + d (a constant pull towards d = 0); another pair
    costs margin - d until it is `margin` apart, then nothing. With sigmoid embeddings
    d lies in [0, 1]; the default margin 0.5 asks for half of that.
    """

    name: ClassVar[str] = "hinge"

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = check_positive("loss.margin", margin, "0.5")

    def per_pair(self, x1: Tensor, x2: Tensor, same: Tensor) -> Tensor:
        d = (x1 - x2).abs().mean(dim=-1)
        return (self.margin - (1.0 - 2.0 * same) * d).clamp_min(0.0)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, margin={self.margin:g}"
